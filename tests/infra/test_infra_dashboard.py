"""Issue 11: each environment has one dashboard built from the service's own metrics (namespace
`Batchgate`, names in contract.Metric, webhooks included) and its alarms."""
from __future__ import annotations

import json

import pytest
from infra_helpers import one, render, resources

from batchgate.contract import Metric


def _body(template) -> str:
    _, dashboard = one(template, "AWS::CloudWatch::Dashboard")
    return render(dashboard["Properties"]["DashboardBody"])


@pytest.fixture(scope="module")
def dev(synth):
    return synth("dev").templates["batchgate-dev-service"]


def test_the_dashboard_reads_every_service_metric_in_its_namespace(dev):
    body = _body(dev)
    names = [v for k, v in vars(Metric).items() if k.isupper() and isinstance(v, str)
             and k not in ("NAMESPACE", "SERVICE", "BATCHES_ENDED")]  # ended: BatchDuration's sample count
    assert len(names) == 16
    for name in names:
        assert f'MetricName=\\"{name}\\"' in body or f'"{name}"' in body, name
    assert "{Batchgate,service,upstream,model}" in body and '"Batchgate"' in body
    # the webhook widgets read their metrics by name, as the webhook sender emits them
    assert '"Batchgate","WebhookDeliveries","service","batchgate"' in body


def test_the_dashboard_shows_every_alarm_and_the_aws_metrics(dev):
    body = json.loads(_body(dev))
    alarm_widgets = [w for w in body["widgets"] if w["type"] == "alarm"]
    (widget,) = alarm_widgets
    # 4 service-wide, 2 per function (10 of them) and the webhooks DLQ
    assert len(widget["properties"]["alarms"]) == len(resources(dev, "AWS::CloudWatch::Alarm")) == 25
    text = json.dumps(body)
    for namespace in ("AWS/SQS", "AWS/States", "AWS/ApiGateway", "AWS/Lambda"):
        assert f'"{namespace}"' in text
    assert any(k.startswith("OperationsDashboardUrl") for k in dev["Outputs"])


def test_local_mode_has_the_dashboard_without_alarm_widgets(synth):
    local = synth("local").templates["batchgate-local-service"]
    body = json.loads(_body(local))
    assert not [w for w in body["widgets"] if w["type"] == "alarm"]
    assert "LinesSent" in json.dumps(body)

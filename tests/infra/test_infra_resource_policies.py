"""Resource policies, evaluated for the principals that must get through them (issue 8): moto enforces
none of them, so a policy that shuts out API Gateway, a function or the bucket's emptier would pass
every other test. Uses local mode's IAM evaluator (functions/batchgate/local/iam.py) on the dev templates;
the SNS topic's policy (CloudWatch alarms publishing) is in test_infra_alarms.py."""
from __future__ import annotations

import pytest
from infra_helpers import functions_by_handler, one, render, render_policy, resources

from batchgate_local import iam
from infra.constructs.api import HANDLERS, OPEN_ROUTES, ROUTES


def _allowed(statements, principal: str, action: str, resource: str, tls: bool = True, **context) -> bool:
    ctx = {"aws:SecureTransport": "true" if tls else "false", **context}
    return iam.evaluate(render_policy(statements), iam.Request(action, resource, tuple(ctx.items())), principal)[0]


def _denied(statements, principal: str, action: str, resource: str, tls: bool = True) -> bool:
    """Explicitly denied by the resource policy (an identity policy cannot then allow it)."""
    request = iam.Request(action, resource, (("aws:SecureTransport", "true" if tls else "false"),))
    return any(s["Effect"] == "Deny" and iam.statement_matches(s, request, principal)
               for s in render_policy(statements))


@pytest.fixture(scope="module")
def dev(synth):
    return synth("dev").templates


def test_the_bucket_lets_the_functions_in_over_tls_only_and_its_emptier_delete(dev):
    stateful = dev["batchgate-dev-stateful"]
    _, policy = one(stateful, "AWS::S3::BucketPolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    obj = "<Bucket.Arn>/files/tenant/file-1"
    role = "arn:aws:iam::123456789012:role/batchgate-dev-service-ApiFilesRole"
    # Same-account roles get in by their identity policies; the bucket policy must not deny them.
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert not _denied(statements, role, action, obj), action
        assert _denied(statements, role, action, obj, tls=False), action
    assert not _denied(statements, role, "s3:ListBucket", "<Bucket.Arn>")
    # `cdk destroy` empties the dev bucket with the auto-delete provider's role.
    emptier = render({"Fn::GetAtt": ["CustomS3AutoDeleteObjectsCustomResourceProviderRole3B1BD092", "Arn"]})
    assert _allowed(statements, emptier, "s3:DeleteObject", obj)
    assert _allowed(statements, emptier, "s3:ListBucket", "<Bucket.Arn>")
    assert not _allowed(statements, role, "s3:DeleteObject", obj)   # the policy grants nobody else


@pytest.mark.parametrize("queue", ["ChunkQueue", "ChunkDeadLetterQueue"])
def test_the_queues_let_the_worker_and_lambdas_poller_in_over_tls_only(dev, queue):
    stateful = dev["batchgate-dev-stateful"]
    (policy,) = [r for r in resources(stateful, "AWS::SQS::QueuePolicy").values()
                 if r["Properties"]["Queues"] == [{"Ref": queue}]]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    worker = "arn:aws:iam::123456789012:role/batchgate-dev-service-ChunksWorkerRole"
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:SendMessage"):
        assert not _denied(statements, worker, action, f"<{queue}.Arn>"), action
        assert _denied(statements, worker, action, f"<{queue}.Arn>", tls=False), action


def _route_arn(method: str, path: str) -> str:
    concrete = "/".join("id-1" if part.startswith("{") else part for part in path.split("/"))
    return (f"arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:<{{api}}>/<{{stage}}>/"
            f"{method}/v1/{concrete}")


def test_api_gateway_may_invoke_each_route_s_function_and_no_other(dev):
    service = dev["batchgate-dev-service"]
    api_id, _ = one(service, "AWS::ApiGateway::RestApi")
    stage_id, _ = one(service, "AWS::ApiGateway::Stage")
    functions = functions_by_handler(service)
    function_ids = {name: next(lid for lid, r in resources(service, "AWS::Lambda::Function").items()
                               if r is functions[handler]) for name, handler in HANDLERS.items()}
    statements = [{"Effect": "Allow", "Principal": {"Service": p["Principal"]}, "Action": p["Action"],
                   "Resource": p["FunctionName"], "Condition": {"ArnLike": {"AWS:SourceArn": p["SourceArn"]}}}
                  for p in (r["Properties"] for r in resources(service, "AWS::Lambda::Permission").values())]

    def may_invoke(function: str, source: str) -> bool:
        source = source.replace("{api}", api_id).replace("{stage}", stage_id)
        return _allowed(statements, "apigateway.amazonaws.com", "lambda:InvokeFunction",
                        f"<{function_ids[function]}.Arn>", **{"AWS:SourceArn": source})

    for path, methods, target in [*ROUTES, *OPEN_ROUTES]:
        for method in methods:
            for name in ("files", "uploads", "batches"):
                assert may_invoke(name, _route_arn(method, path)) == (name == target), (method, path, name)
    authorizer_id, _ = one(service, "AWS::ApiGateway::Authorizer")
    authorizer_source = (f"arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:<{{api}}>/"
                         f"authorizers/<{authorizer_id}>")
    assert may_invoke("authorizer", authorizer_source)
    assert not may_invoke("files", authorizer_source)
    # Another principal, or another API, gets nothing.
    assert not _allowed(statements, "events.amazonaws.com", "lambda:InvokeFunction",
                        f"<{function_ids['files']}.Arn>", **{"AWS:SourceArn": _route_arn("GET", "files")})

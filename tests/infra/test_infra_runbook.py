"""Issue 11: docs/runbook.md says, for every alarm the stacks define, what it means, what to look at and
what to run; and each alarm's description (what its notification shows) names its runbook section."""
from __future__ import annotations

import re

import pytest
from infra_helpers import resources

from infra.paths import ROOT

RUNBOOK = (ROOT / "docs/runbook.md").read_text()
# The construct an alarm belongs to prefixes its logical id; CDK appends an 8-hex hash.
LOGICAL_ID = re.compile(r"^(?:Alarms)?(?P<name>[A-Za-z]+?)[0-9A-F]{8}$")


def sections() -> dict[str, str]:
    """Alarm name -> the runbook section (its title as an alarm description names it) that covers it.
    `## <Function>Errors (A, B)` covers AErrors and BErrors."""
    covered: dict[str, str] = {}
    for title, body in re.findall(r"^## ([^\n]+)\n(.*?)(?=^## |\Z)", RUNBOOK, flags=re.S | re.M):
        title = title.replace("&lt;", "<").replace("&gt;", ">").strip()
        generic = re.fullmatch(r"<Function>(\w+) \(([\w, ]+)\)", title)
        if generic:
            for fn in generic.group(2).split(", "):
                covered[fn + generic.group(1)] = f"<Function>{generic.group(1)}"
        elif re.fullmatch(r"\w+", title):
            covered[title] = title
        else:
            continue
        for part in ("**Means**", "**Look at**", "**Run**"):
            assert part in body, (title, part)
    return covered


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_alarm_has_a_runbook_section_that_its_description_names(synth, env):
    covered = sections()
    alarms = {}
    for template in synth(env).templates.values():
        for lid, alarm in resources(template, "AWS::CloudWatch::Alarm").items():
            match = LOGICAL_ID.match(lid)
            assert match, lid
            alarms[match.group("name")] = alarm["Properties"]["AlarmDescription"]
    assert len(alarms) == 25
    assert set(alarms) == set(covered), "runbook sections and alarms differ"
    for name, description in alarms.items():
        assert f"Runbook: docs/runbook.md, {covered[name]}." in description, (name, description)

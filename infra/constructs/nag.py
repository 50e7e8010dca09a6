"""cdk-nag 3 acknowledgments: every one names the finding it accepts and says why."""
from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, reason: str, *rule_ids: str) -> None:
    """Accept findings on `scope` and everything under it (cdk-nag 3 has no prefix matching:
    `AwsSolutions-IAM5[Resource::*]` and `AwsSolutions-IAM5[Action::s3:*]` are separate ids)."""
    Validations.of(scope).acknowledge(*(Acknowledgment(id=rule_id, reason=reason) for rule_id in rule_ids))

"""IAM in local mode: each in-process function's AWS calls are authorized against its own role.

moto does not enforce IAM, so a missing permission would pass locally and stop every batch on AWS
(issue 8). `IamGuard` closes that gap for the functions Batchgate deploys:

- after the stacks are deployed, it reads each function's role policies back from moto's IAM (where
  CloudFormation left them with every intrinsic resolved);
- `InProcessLambdas.invoke` (and the SQS pollers, which act as Lambda's event source mapping with the
  function's role) run each invocation `as_function(...)`;
- a hook on every boto3 client the functions use (`batchgate.aws.add_client_hook`) turns each API call
  into the IAM requests AWS would authorize (`requests_for`: action, resource ARN, condition keys),
  evaluates them with the policy language's rules (`evaluate`) and answers a denied call with the
  service's own AccessDenied error before it reaches moto, as AWS would;
- S3 answers a GET/HEAD of a missing key with 403 unless the caller may `s3:ListBucket` the bucket
  (for that check the request carries no `s3:prefix`), so the guard turns moto's 404 into that 403;
- every decision is recorded (`CallLog`): the tests fail on any denied call and on any grant that no
  call used (tests/conftest.py), so each function holds exactly the permissions it uses.

Calls made outside a function (the tests, the CLI, local mode's own setup) are not checked.
"""
from __future__ import annotations

import contextvars
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

# -- the policy language ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One IAM authorization: what AWS evaluates for (part of) an API call."""
    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()   # condition keys present in the request

    def key(self, name: str) -> str | None:
        return dict(self.context).get(name)


def _listify(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _like(pattern: str, value: str, case: bool = True) -> bool:
    """IAM wildcards: `*` any run of characters, `?` one character (no character classes)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


_NEGATED = {"StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike", "StringNotEqualsIgnoreCase"}
_OPERATORS = {
    "StringEquals": lambda a, w: a == w, "StringNotEquals": lambda a, w: a == w,
    "StringEqualsIgnoreCase": lambda a, w: a.lower() == w.lower(),
    "StringNotEqualsIgnoreCase": lambda a, w: a.lower() == w.lower(),
    "StringLike": lambda a, w: _like(w, a), "StringNotLike": lambda a, w: _like(w, a),
    "ArnEquals": lambda a, w: _like(w, a), "ArnLike": lambda a, w: _like(w, a),
    "ArnNotEquals": lambda a, w: _like(w, a), "ArnNotLike": lambda a, w: _like(w, a),
    "Bool": lambda a, w: a.lower() == w.lower(),
}


def conditions_hold(condition: dict, context: dict[str, str]) -> bool:
    """Every operator block, every key, any of its values (single-valued keys only). A key absent
    from the request fails a positive operator and passes a negated one; `...IfExists` passes."""
    for op, pairs in condition.items():
        base, if_exists = (op[:-8], True) if op.endswith("IfExists") else (op, False)
        if base not in _OPERATORS:
            raise NotImplementedError(f"condition operator {op} is not emulated")
        negated = base in _NEGATED
        for key, wanted in pairs.items():
            actual = context.get(key)
            if actual is None:
                if not (if_exists or negated):
                    return False
                continue
            hit = any(_OPERATORS[base](str(actual), str(w)) for w in _listify(wanted))
            if hit == negated:
                return False
    return True


def _principal_matches(principal: Any, who: str | None) -> bool:
    if who is None:            # an identity policy: the statement has no principal
        return principal is None
    if principal in ("*", {"AWS": "*"}):
        return True
    return isinstance(principal, dict) and any(who in _listify(v) for v in principal.values())


def statement_matches(statement: dict, request: Request, principal: str | None = None) -> bool:
    if not _principal_matches(statement.get("Principal"), principal):
        return False
    if "Action" in statement:
        if not any(_like(a, request.action, case=False) for a in _listify(statement["Action"])):
            return False
    elif any(_like(a, request.action, case=False) for a in _listify(statement.get("NotAction", []))):
        return False
    if "Resource" in statement:
        if not any(_like(r, request.resource) for r in _listify(statement["Resource"])):
            return False
    elif any(_like(r, request.resource) for r in _listify(statement.get("NotResource", []))):
        return False
    return conditions_hold(statement.get("Condition") or {}, dict(request.context))


def evaluate(statements: list[dict], request: Request, principal: str | None = None) -> tuple[bool, list[int]]:
    """(allowed, the indices of the Allow statements that match). An explicit Deny wins; otherwise
    some Allow must match; otherwise the implicit deny."""
    if any(s.get("Effect") == "Deny" and statement_matches(s, request, principal) for s in statements):
        return False, []
    allows = [i for i, s in enumerate(statements)
              if s.get("Effect") == "Allow" and statement_matches(s, request, principal)]
    return bool(allows), allows


# -- API calls as IAM requests ---------------------------------------------------------------------

_PREFIX = {"stepfunctions": "states", "lambda": "lambda", "events": "events"}
# Operations authorized under another action's name (the Service Authorization Reference).
_S3_ACTION = {"HeadObject": "GetObject", "ListObjectsV2": "ListBucket", "ListObjects": "ListBucket",
              "HeadBucket": "ListBucket", "CreateMultipartUpload": "PutObject", "UploadPart": "PutObject",
              "CompleteMultipartUpload": "PutObject", "ListParts": "ListMultipartUploadParts",
              "ListMultipartUploads": "ListBucketMultipartUploads", "DeleteObjects": "DeleteObject",
              "GetObjectTagging": "GetObjectTagging", "PutObjectTagging": "PutObjectTagging"}
_SQS_ACTION = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
               "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}
# DynamoDB authorizes a transaction as its parts (there is no TransactWriteItems action).
_TRANSACT_PARTS = {"ConditionCheck": "ConditionCheckItem", "Put": "PutItem", "Update": "UpdateItem",
                   "Delete": "DeleteItem", "Get": "GetItem"}


@dataclass(frozen=True)
class Where:
    region: str
    account: str
    state_machine_arn: str = ""

    def arn(self, service: str, rest: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{rest}"


def _s3(operation: str, params: dict, where: Where) -> list[Request]:
    bucket = params.get("Bucket", "")
    action = "s3:" + _S3_ACTION.get(operation, operation)
    if action in ("s3:ListBucket", "s3:ListBucketMultipartUploads"):
        context = (("s3:prefix", params["Prefix"]),) if "Prefix" in params else ()
        return [Request(action, f"arn:aws:s3:::{bucket}", context)]
    if operation == "DeleteObjects":
        return [Request(action, f"arn:aws:s3:::{bucket}/{o['Key']}") for o in params["Delete"]["Objects"]]
    requests = [Request(action, f"arn:aws:s3:::{bucket}/{params.get('Key', '')}")]
    if operation in ("CopyObject", "UploadPartCopy"):
        source = params["CopySource"]
        if isinstance(source, str):
            source_bucket, _, source_key = unquote(source).lstrip("/").partition("/")
        else:
            source_bucket, source_key = source["Bucket"], source["Key"]
        requests = [Request("s3:PutObject", requests[0].resource),
                    Request("s3:GetObject", f"arn:aws:s3:::{source_bucket}/{source_key}")]
    if params.get("Tagging") and operation in ("PutObject", "CreateMultipartUpload", "CopyObject"):
        requests.append(Request("s3:PutObjectTagging", requests[0].resource))  # tags set on write
    return requests


def _table(name: str, where: Where) -> str:
    return name if name.startswith("arn:") else where.arn("dynamodb", f"table/{name}")


def _dynamodb(operation: str, params: dict, where: Where) -> list[Request]:
    if operation in ("TransactWriteItems", "TransactGetItems"):
        out = []
        for item in params["TransactItems"]:
            (kind, part), = item.items()
            out.append(Request("dynamodb:" + _TRANSACT_PARTS[kind], _table(part["TableName"], where)))
        return out
    if operation in ("BatchWriteItem", "BatchGetItem"):
        return [Request("dynamodb:" + operation, _table(t, where)) for t in params["RequestItems"]]
    resource = _table(params["TableName"], where)
    if params.get("IndexName"):
        resource += f"/index/{params['IndexName']}"
    return [Request("dynamodb:" + operation, resource)]


def _queue_arn(url: str, where: Where) -> str:
    account, name = urlparse(url).path.strip("/").split("/")[-2:]
    return f"arn:aws:sqs:{where.region}:{account}:{name}"


def _sqs(operation: str, params: dict, where: Where) -> list[Request]:
    action = "sqs:" + _SQS_ACTION.get(operation, operation)
    if "QueueUrl" in params:
        return [Request(action, _queue_arn(params["QueueUrl"], where))]
    return [Request(action, where.arn("sqs", params.get("QueueName", "*")))]


def _states(operation: str, params: dict, where: Where) -> list[Request]:
    if "executionArn" in params:
        resource = params["executionArn"]
    elif "stateMachineArn" in params:
        resource = params["stateMachineArn"]
    else:  # SendTask*: the token names no resource; CDK grants them on the state machine
        resource = where.state_machine_arn
    return [Request("states:" + operation, resource)]


def _events(operation: str, params: dict, where: Where) -> list[Request]:
    buses = {e.get("EventBusName") or "default" for e in params.get("Entries", [])} or {"default"}
    return [Request("events:" + operation,
                    b if b.startswith("arn:") else where.arn("events", f"event-bus/{b}")) for b in sorted(buses)]


def _ssm(operation: str, params: dict, where: Where) -> list[Request]:
    name = params.get("Name", "")
    return [Request("ssm:" + operation, where.arn("ssm", "parameter/" + name.lstrip("/")))]


def _secrets(operation: str, params: dict, where: Where) -> list[Request]:
    secret = params.get("SecretId", "")
    return [Request("secretsmanager:" + operation,
                    secret if secret.startswith("arn:") else where.arn("secretsmanager", f"secret:{secret}-??????"))]


def _lambda(operation: str, params: dict, where: Where) -> list[Request]:
    name = params.get("FunctionName", "")
    action = "lambda:InvokeFunction" if operation == "Invoke" else "lambda:" + operation
    return [Request(action, name if name.startswith("arn:") else where.arn("lambda", f"function:{name}"))]


_MAPPERS = {"s3": _s3, "dynamodb": _dynamodb, "sqs": _sqs, "stepfunctions": _states, "events": _events,
            "ssm": _ssm, "secretsmanager": _secrets, "lambda": _lambda}


def requests_for(service: str, operation: str, params: dict, where: Where) -> list[Request]:
    """The IAM requests AWS authorizes for one API call (`service` is botocore's service name)."""
    mapper = _MAPPERS.get(service)
    if mapper is None:
        raise NotImplementedError(f"local IAM does not know how AWS authorizes {service}:{operation}")
    return mapper(operation, params, where)


# -- the guard -------------------------------------------------------------------------------------

# The function whose role the current thread's (or task's) AWS calls use.
_CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("batchgate_local_function", default=None)


@contextmanager
def as_function(function: str) -> Iterator[None]:
    """AWS calls made in this block (this thread, and tasks and `to_thread`s it starts) use the
    role of `function` (a logical id)."""
    token = _CURRENT.set(function)
    try:
        yield
    finally:
        _CURRENT.reset(token)


@dataclass
class Role:
    """A function's identity: its logical id, role name and policy statements (resolved)."""
    function: str
    role_name: str
    statements: list[dict]
    policy_of: list[str]   # policy name of each statement


@dataclass
class CallLog:
    """What the guard decided, across every LocalService of this process (the suites read it)."""
    # (function logical id, policy, action pattern, resource pattern) -> calls that grant allowed
    used: dict[tuple, int] = field(default_factory=dict)
    # every grant a deployed role held, keyed like `used`
    granted: set[tuple] = field(default_factory=set)
    denied: list[str] = field(default_factory=list)
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def unused(self) -> list[tuple]:
        return sorted(g for g in self.granted if g not in self.used)

    def report(self) -> dict:
        return {"calls": self.calls, "denied": sorted(set(self.denied)),
                "used": sorted([*k, n] for k, n in self.used.items()), "unused": self.unused()}


LOG = CallLog()
# Used by the Lambda runtime on the function's behalf, never by its code: not expected in the log.
RUNTIME_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}

_ERRORS = {  # service -> (HTTP status, error code) AWS answers for a denied call
    "s3": (403, "AccessDenied"), "sqs": (403, "AccessDenied"), "dynamodb": (400, "AccessDeniedException"),
    "stepfunctions": (400, "AccessDeniedException"), "events": (400, "AccessDeniedException"),
    "ssm": (400, "AccessDeniedException"), "secretsmanager": (400, "AccessDeniedException"),
    "lambda": (403, "AccessDeniedException"),
}


def _denial(service: str, role: Role, request: Request) -> tuple[Any, dict]:
    """What a client sees for a denied call: the parsed error botocore raises as ClientError."""
    status, code = _ERRORS.get(service, (403, "AccessDenied"))
    message = (f"User: arn:aws:sts::assumed-role/{role.role_name}/{role.function} is not authorized to "
               f"perform: {request.action} on resource: {request.resource} because no identity-based "
               f"policy allows the {request.action} action")
    return _FakeHttp(status), {"Error": {"Code": code, "Message": message},
                               "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}}}


class _FakeHttp:
    def __init__(self, status: int):
        self.status_code = status
        self.headers: dict = {}
        self.content = b""
        self.raw = None


class IamGuard:
    """Installed by LocalService after deploy (`aws.add_client_hook(guard.register)`); LocalService.stop
    sets `active` to False and removes the hook."""

    def __init__(self, roles: dict[str, Role], where: Where, log: CallLog = LOG,
                 normalize: dict[str, str] | None = None):
        self.roles = roles            # function logical id -> Role
        self.where = where
        self.log = log
        self.active = True
        self._revoked: tuple[str, str] | None = None
        self._revoked_denied: list[str] = []
        # physical names -> logical ids, so grants of different deployments compare
        self._normalize = sorted((normalize or {}).items(), key=lambda kv: -len(kv[0]))
        for role in {id(r): r for r in roles.values()}.values():
            for i, s in enumerate(role.statements):
                if s.get("Effect") != "Allow":
                    continue
                for action in _listify(s.get("Action", [])):
                    if action in RUNTIME_ACTIONS:
                        continue
                    for resource in _listify(s.get("Resource", [])):
                        log.granted.add(self._grant_key(role, i, action, resource))

    def _grant_key(self, role: Role, index: int, action: str, resource: str) -> tuple:
        for physical, logical in self._normalize:
            resource = resource.replace(physical, "{" + logical + "}")
        return (role.function, role.policy_of[index], action, resource)

    @contextmanager
    def revoked(self, function: str, action: str) -> Iterator[list[str]]:
        """`function` (a logical id prefix) loses `action` while the block runs, as if an operator had
        edited its role; the calls denied meanwhile go to the yielded list, not to the suite's log."""
        role = next(r for r in self.roles.values() if r.function.startswith(function))
        saved = role.statements
        role.statements = [{**s, "Action": [a for a in _listify(s.get("Action", [])) if a != action]}
                           for s in saved]
        self._revoked, denied = (role.function, action), []
        self._revoked_denied = denied
        try:
            yield denied
        finally:
            role.statements, self._revoked = saved, None

    def _role(self) -> Role | None:
        name = _CURRENT.get()
        return self.roles.get(name) if (name and self.active) else None

    # -- botocore hooks --------------------------------------------------------------------------

    def register(self, client) -> None:
        events = client.meta.events
        events.register("before-parameter-build", self._before_parameter_build)
        events.register("before-call", self._before_call)
        events.register("after-call.s3.GetObject", self._after_get)
        events.register("after-call.s3.HeadObject", self._after_get)

    def _before_parameter_build(self, params: dict, model, context: dict, **_) -> None:
        role = self._role()
        if role is None:
            return
        service = model.service_model.service_name
        requests = requests_for(service, model.name, params, self.where)
        denied = None
        with self.log.lock:
            self.log.calls += 1
            for request in requests:
                allowed, by = evaluate(role.statements, request)
                if not allowed:
                    denied = denied or request
                    what = (f"{role.function}: {request.action} on {request.resource}"
                            + (f" {dict(request.context)}" if request.context else ""))
                    revoked = self._revoked == (role.function, request.action)
                    (self._revoked_denied if revoked else self.log.denied).append(what)
                    continue
                for i in by:
                    s = role.statements[i]
                    for action in _listify(s.get("Action", [])):
                        if not _like(action, request.action, case=False):
                            continue
                        for resource in _listify(s.get("Resource", [])):
                            if _like(resource, request.resource):
                                key = self._grant_key(role, i, action, resource)
                                self.log.used[key] = self.log.used.get(key, 0) + 1
        context["batchgate_iam"] = (role, service, denied, params.get("Bucket"))
        if denied is not None and context.get("is_presign_request"):
            # A presigned URL is signed with the role's credentials: AWS refuses it when it is used.
            from botocore.exceptions import ClientError
            raise ClientError(_denial(service, role, denied)[1], model.name)

    def _before_call(self, model, context: dict, **_):
        decided = context.get("batchgate_iam")
        if not decided or decided[2] is None:
            return None
        role, service, denied, _bucket = decided
        return _denial(service, role, denied)

    def _after_get(self, http_response, parsed: dict, model, context: dict, **_) -> None:
        """S3: without s3:ListBucket on the bucket, a missing key is AccessDenied (403), not 404."""
        decided = context.get("batchgate_iam")
        if not decided or decided[2] is not None:
            return
        code = (parsed.get("Error") or {}).get("Code")
        if code not in ("NoSuchKey", "404", "NotFound"):
            return
        role, _service, _denied, bucket = decided
        allowed, _ = evaluate(role.statements, Request("s3:ListBucket", f"arn:aws:s3:::{bucket}"))
        if not allowed:
            parsed["Error"] = {"Code": "AccessDenied" if model.name == "GetObject" else "403",
                               "Message": "Access Denied" if model.name == "GetObject" else "Forbidden"}
            parsed.setdefault("ResponseMetadata", {})["HTTPStatusCode"] = 403
            http_response.status_code = 403


def load_roles(function_names: dict[str, str], region: str) -> dict[str, Role]:
    """function logical id -> name: each function's role statements, read from moto's IAM."""
    import boto3

    lam = boto3.client("lambda", region_name=region)
    iam = boto3.client("iam", region_name=region)
    roles: dict[str, Role] = {}
    for logical_id, name in function_names.items():
        role_name = lam.get_function_configuration(FunctionName=name)["Role"].rsplit("/", 1)[1]
        statements, policy_of = [], []
        for policy in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
            document = iam.get_role_policy(RoleName=role_name, PolicyName=policy)["PolicyDocument"]
            for s in _listify(document["Statement"]):
                statements.append(s)
                policy_of.append(_logical_policy_name(policy))
        for attached in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]:
            meta = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
            document = iam.get_policy_version(PolicyArn=attached["PolicyArn"],
                                              VersionId=meta["DefaultVersionId"])["PolicyVersion"]["Document"]
            for s in _listify(document["Statement"]):
                statements.append(s)
                policy_of.append(attached["PolicyName"])
        roles[logical_id] = Role(logical_id, role_name, statements, policy_of)
    return roles


def _logical_policy_name(name: str) -> str:
    """CDK names policies `<Path>Policy<hash>`; the hash varies with the template, the path does not."""
    return re.sub(r"[0-9A-F]{8}$", "", name)


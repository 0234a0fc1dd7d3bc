"""Read template.yaml and build its storage resources in emulated AWS (moto).

The local stack and the integration tests both start from here, so the tables,
buckets, queues and secrets they use are the ones the template declares, with the
template's own properties: infrastructure and tests cannot drift apart.

`provision` talks to AWS through boto3 only. Under `moto.mock_aws` the calls are
intercepted in-process; with `endpoint_url` they go to a moto server.
"""

from __future__ import annotations

import importlib.util
import json
import re
import secrets
import string
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.exceptions import ClientError

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_REGION = "us-east-1"
# moto's default account: ARNs built here match the ones moto returns.
LOCAL_ACCOUNT_ID = "123456789012"
DEFAULT_STACK_NAME = "datasources-local"
# Documented default for local mode only; a deployed stack generates its key.
DEV_JWT_SECRET = "local-dev-jwt-secret-change-me-0123456789"  # noqa: S105 - public by design, local only
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

Handler = Callable[[dict[str, Any], Any], Any]


# --------------------------------------------------------------------------- YAML


class _CfnLoader(yaml.SafeLoader):
    """A safe YAML loader that reads CloudFormation short tags as their long form."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        # `!GetAtt A.B` is the short form of `Fn::GetAtt: [A, B]`.
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: str | Path = "template.yaml") -> dict[str, Any]:
    """Parse a CloudFormation/SAM template, short tags included, into plain data."""
    template_path = Path(path)
    if not template_path.is_absolute() and not template_path.exists():
        template_path = REPO_ROOT / template_path
    with template_path.open(encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(data, dict) or "Resources" not in data:
        raise ValueError(f"{template_path} is not a CloudFormation template")
    return data


# --------------------------------------------------------------------------- intrinsics


class _NoValue:
    """`AWS::NoValue`: the property or list item it stands for is removed."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


class UnresolvedReference(LookupError):
    """A Ref/GetAtt names something the local stack did not create."""


@dataclass
class Resolver:
    """Evaluates intrinsic functions against parameters and provisioned resources."""

    template: Mapping[str, Any]
    stack_name: str = DEFAULT_STACK_NAME
    parameters: Mapping[str, Any] = field(default_factory=dict)
    refs: Mapping[str, Any] = field(default_factory=dict)
    attrs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def parameter_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, spec in (self.template.get("Parameters") or {}).items():
            if name in self.parameters:
                raw = self.parameters[name]
            elif "Default" in spec:
                raw = spec["Default"]
            else:
                continue
            kind = str(spec.get("Type", "String"))
            if kind == "CommaDelimitedList" or kind.startswith("List<"):
                values[name] = [part.strip() for part in str(raw).split(",")] if raw != "" else []
            else:
                # CloudFormation hands every scalar parameter over as a string.
                values[name] = _scalar_to_string(raw)
        return values

    def condition(self, name: str) -> bool:
        conditions = self.template.get("Conditions") or {}
        if name not in conditions:
            raise UnresolvedReference(f"unknown condition {name!r}")
        return bool(self.resolve(conditions[name]))

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": LOCAL_REGION,
            "AWS::AccountId": LOCAL_ACCOUNT_ID,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": (
                f"arn:aws:cloudformation:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:"
                f"stack/{self.stack_name}/00000000-0000-0000-0000-000000000000"
            ),
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        params = self.parameter_values()
        if name in params:
            return params[name]
        if name in self.refs:
            return self.refs[name]
        raise UnresolvedReference(f"Ref {name!r}: not a parameter or a provisioned resource")

    def get_att(self, resource: str, attribute: str) -> Any:
        try:
            return self.attrs[resource][attribute]
        except KeyError:
            raise UnresolvedReference(f"GetAtt {resource}.{attribute}: not provisioned") from None

    def sub(self, spec: Any) -> str:
        if isinstance(spec, list):
            text, variables = spec[0], {k: self.resolve(v) for k, v in spec[1].items()}
        else:
            text, variables = spec, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                # `${!Literal}` is how a template writes a literal `${Literal}`.
                return "${" + name[1:] + "}"
            if name in variables:
                return _scalar_to_string(variables[name])
            if "." in name and not name.startswith("AWS::"):
                resource, _, attribute = name.partition(".")
                return _scalar_to_string(self.get_att(resource, attribute))
            return _scalar_to_string(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, str(text))

    def resolve(self, value: Any) -> Any:
        """Return `value` with every intrinsic function evaluated."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            function = self._functions().get(key)
            if function is not None:
                return function(arg)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def _functions(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": lambda arg: self.ref(arg),
            "Fn::GetAtt": lambda arg: self.get_att(*_split_get_att(arg)),
            "Fn::Sub": self.sub,
            "Fn::If": lambda arg: self.resolve(arg[1] if self.condition(arg[0]) else arg[2]),
            "Fn::Equals": lambda arg: self._as_text(arg[0]) == self._as_text(arg[1]),
            "Fn::Not": lambda arg: not self.resolve(arg[0]),
            "Fn::And": lambda arg: all(self.resolve(item) for item in arg),
            "Fn::Or": lambda arg: any(self.resolve(item) for item in arg),
            "Condition": self.condition,
            "Fn::Join": lambda arg: str(arg[0]).join(
                _scalar_to_string(item) for item in self.resolve(arg[1])
            ),
            "Fn::Select": lambda arg: self.resolve(arg[1])[int(self.resolve(arg[0]))],
            "Fn::Split": lambda arg: str(self.resolve(arg[1])).split(str(arg[0])),
            "Fn::FindInMap": self._find_in_map,
        }

    def _as_text(self, value: Any) -> Any:
        resolved = self.resolve(value)
        return resolved if isinstance(resolved, list) else _scalar_to_string(resolved)

    def _find_in_map(self, arg: list[Any]) -> Any:
        name, first, second = (self.resolve(item) for item in arg[:3])
        return self.template["Mappings"][name][first][second]


def _split_get_att(arg: Any) -> tuple[str, str]:
    if isinstance(arg, str):
        resource, _, attribute = arg.partition(".")
        return resource, attribute
    return str(arg[0]), str(arg[1])


def _scalar_to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------- provisioning


@dataclass
class Provisioned:
    """One resource created locally: what `Ref` and `GetAtt` return for it."""

    type: str
    ref: str
    attrs: dict[str, str]


@dataclass
class LocalResources:
    """The local names of the template's storage resources."""

    table_name: str
    bucket_name: str
    queue_url: str
    dlq_url: str
    jwt_secret_arn: str | None
    by_logical_id: dict[str, Provisioned]
    stack_name: str = DEFAULT_STACK_NAME
    endpoint_url: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    def resolver(self, template: Mapping[str, Any]) -> Resolver:
        return Resolver(
            template,
            stack_name=self.stack_name,
            parameters=self.parameters,
            refs={lid: item.ref for lid, item in self.by_logical_id.items()},
            attrs={lid: item.attrs for lid, item in self.by_logical_id.items()},
        )


class _Provisioner:
    def __init__(
        self,
        session: boto3.Session,
        template: Mapping[str, Any],
        stack_name: str,
        endpoint_url: str | None,
        parameters: Mapping[str, Any],
        secret_values: Mapping[str, str],
    ) -> None:
        self.session = session
        self.template = template
        self.stack_name = stack_name
        self.endpoint_url = endpoint_url
        self.secret_values = secret_values
        self.resolver = Resolver(template, stack_name=stack_name, parameters=parameters)
        self.created: dict[str, Provisioned] = {}
        self._creators: dict[str, Callable[[str, dict[str, Any]], Provisioned]] = {
            "AWS::DynamoDB::Table": self._table,
            "AWS::S3::Bucket": self._bucket,
            "AWS::S3::BucketPolicy": self._bucket_policy,
            "AWS::SQS::Queue": self._queue,
            "AWS::SecretsManager::Secret": self._secret,
            # Triggers and events (moto implements Scheduler, EventBridge rules with
            # SQS targets, and S3's EventBridge notifications).
            "AWS::Scheduler::ScheduleGroup": self._schedule_group,
            "AWS::IAM::Role": self._role,
            "AWS::Events::Rule": self._rule,
            "AWS::SQS::QueuePolicy": self._queue_policy,
        }

    def client(self, service: str) -> Any:
        return self.session.client(
            service,  # type: ignore[call-overload]
            region_name=LOCAL_REGION,
            endpoint_url=self.endpoint_url,
        )

    def run(self) -> dict[str, Provisioned]:
        resources = self.template["Resources"]
        wanted = {
            lid: spec
            for lid, spec in resources.items()
            if spec.get("Type") in self._creators
            and ("Condition" not in spec or self.resolver.condition(spec["Condition"]))
        }
        for lid in _dependency_order(wanted):
            spec = wanted[lid]
            # Resolve against what exists so far: dependencies were created first.
            self.resolver.refs = {k: v.ref for k, v in self.created.items()}
            self.resolver.attrs = {k: v.attrs for k, v in self.created.items()}
            properties = self.resolver.resolve(spec.get("Properties") or {})
            self.created[lid] = self._creators[spec["Type"]](lid, properties)
        return self.created

    def _default_name(self, logical_id: str) -> str:
        return f"{self.stack_name}-{logical_id}"

    def _table(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        ddb = self.client("dynamodb")
        name = props.get("TableName") or self._default_name(logical_id)
        request: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        for key in ("ProvisionedThroughput", "TableClass", "DeletionProtectionEnabled"):
            if key in props:
                request[key] = props[key]
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if key in props:
                request[key] = props[key]
        if "SSESpecification" in props:
            sse = props["SSESpecification"]
            request["SSESpecification"] = {
                "Enabled": bool(sse.get("SSEEnabled", False)),
                **({"SSEType": sse["SSEType"]} if "SSEType" in sse else {}),
                **({"KMSMasterKeyId": sse["KMSMasterKeyId"]} if "KMSMasterKeyId" in sse else {}),
            }
        if "StreamSpecification" in props:
            request["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": props["StreamSpecification"]["StreamViewType"],
            }
        if props.get("Tags"):
            request["Tags"] = props["Tags"]
        try:
            description = ddb.create_table(**request)["TableDescription"]
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceInUseException":
                raise
            description = ddb.describe_table(TableName=name)["Table"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        pitr = props.get("PointInTimeRecoverySpecification")
        if pitr and pitr.get("PointInTimeRecoveryEnabled"):
            ddb.update_continuous_backups(
                TableName=name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
        attrs = {"Arn": description["TableArn"]}
        if description.get("LatestStreamArn"):
            attrs["StreamArn"] = description["LatestStreamArn"]
        return Provisioned("AWS::DynamoDB::Table", name, attrs)

    def _bucket(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        s3 = self.client("s3")
        # Bucket names are lower case; CloudFormation lower-cases the ones it makes too.
        name = (props.get("BucketName") or self._default_name(logical_id)).lower()
        try:
            s3.create_bucket(Bucket=name)
        except ClientError as error:
            if error.response["Error"]["Code"] not in {
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            }:
                raise
        if "BucketEncryption" in props:
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [
                        _encryption_rule(rule)
                        for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
                    ]
                },
            )
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(
                Bucket=name,
                PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"],
            )
        if "OwnershipControls" in props:
            s3.put_bucket_ownership_controls(
                Bucket=name, OwnershipControls=props["OwnershipControls"]
            )
        if "VersioningConfiguration" in props:
            s3.put_bucket_versioning(
                Bucket=name,
                VersioningConfiguration={"Status": props["VersioningConfiguration"]["Status"]},
            )
        if "LifecycleConfiguration" in props:
            rules = [_lifecycle_rule(rule) for rule in props["LifecycleConfiguration"]["Rules"]]
            s3.put_bucket_lifecycle_configuration(
                Bucket=name, LifecycleConfiguration={"Rules": rules}
            )
        if props.get("Tags"):
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": props["Tags"]})
        if (props.get("NotificationConfiguration") or {}).get("EventBridgeConfiguration"):
            s3.put_bucket_notification_configuration(
                Bucket=name,
                NotificationConfiguration={"EventBridgeConfiguration": {}},
            )
        attrs = {
            "Arn": f"arn:aws:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{LOCAL_REGION}.amazonaws.com",
        }
        return Provisioned("AWS::S3::Bucket", name, attrs)

    def _bucket_policy(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        document = dict(props["PolicyDocument"])
        # moto enforces bucket policies but cannot evaluate aws:SecureTransport (and a
        # moto server is plain HTTP on loopback anyway): a TLS-only Deny would refuse
        # every request. Those statements are left out locally; the rest is applied.
        document["Statement"] = [
            statement for statement in document["Statement"] if not _denies_plain_http(statement)
        ]
        if document["Statement"]:
            self.client("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(document))
        return Provisioned("AWS::S3::BucketPolicy", logical_id, {})

    def _queue(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        sqs = self.client("sqs")
        fifo = bool(props.get("FifoQueue"))
        name = props.get("QueueName") or self._default_name(logical_id)
        if fifo and not name.endswith(".fifo"):
            name += ".fifo"
        attributes: dict[str, str] = {}
        for key in (
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DelaySeconds",
            "MaximumMessageSize",
            "ReceiveMessageWaitTimeSeconds",
            "KmsMasterKeyId",
            "KmsDataKeyReusePeriodSeconds",
            "SqsManagedSseEnabled",
            "FifoQueue",
            "ContentBasedDeduplication",
        ):
            if key in props:
                attributes[key] = _scalar_to_string(props[key])
        for key in ("RedrivePolicy", "RedriveAllowPolicy"):
            if key in props:
                # The API takes the policy as a JSON string; maxReceiveCount stays a number.
                attributes[key] = json.dumps(props[key])
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        return Provisioned("AWS::SQS::Queue", url, {"Arn": arn, "QueueName": name, "QueueUrl": url})

    def _secret(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        client = self.client("secretsmanager")
        name = props.get("Name") or f"{self.stack_name}/{logical_id}"
        if logical_id in self.secret_values:
            value = self.secret_values[logical_id]
        elif "SecretString" in props:
            value = props["SecretString"]
        else:
            value = _generate_secret_string(props.get("GenerateSecretString") or {})
        request: dict[str, Any] = {"Name": name, "SecretString": value}
        if props.get("Description"):
            request["Description"] = props["Description"]
        if props.get("Tags"):
            request["Tags"] = props["Tags"]
        try:
            arn = client.create_secret(**request)["ARN"]
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceExistsException":
                raise
            arn = client.describe_secret(SecretId=name)["ARN"]
        return Provisioned("AWS::SecretsManager::Secret", arn, {"Id": arn, "Name": name})

    def _schedule_group(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        client = self.client("scheduler")
        name = props.get("Name") or self._default_name(logical_id)
        try:
            arn = client.create_schedule_group(Name=name)["ScheduleGroupArn"]
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConflictException":
                raise
            arn = client.get_schedule_group(Name=name)["Arn"]
        return Provisioned("AWS::Scheduler::ScheduleGroup", name, {"Arn": arn})

    def _role(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        iam = self.client("iam")
        name = props.get("RoleName") or self._default_name(logical_id)[:64]
        try:
            role = iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]),
            )["Role"]
        except ClientError as error:
            if error.response["Error"]["Code"] != "EntityAlreadyExists":
                raise
            role = iam.get_role(RoleName=name)["Role"]
        for policy in props.get("Policies") or []:
            iam.put_role_policy(
                RoleName=name,
                PolicyName=policy["PolicyName"],
                PolicyDocument=json.dumps(policy["PolicyDocument"]),
            )
        return Provisioned("AWS::IAM::Role", name, {"Arn": role["Arn"], "RoleId": role["RoleId"]})

    def _rule(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        events = self.client("events")
        name = props.get("Name") or self._default_name(logical_id)[:64]
        bus = props.get("EventBusName") or "default"
        arn = events.put_rule(
            Name=name,
            EventBusName=bus,
            EventPattern=json.dumps(props["EventPattern"]),
            State=props.get("State", "ENABLED"),
            Description=props.get("Description", ""),
        )["RuleArn"]
        targets = [{"Id": t["Id"], "Arn": t["Arn"]} for t in props.get("Targets") or []]
        if targets:
            events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
        return Provisioned("AWS::Events::Rule", name, {"Arn": arn})

    def _queue_policy(self, logical_id: str, props: dict[str, Any]) -> Provisioned:
        sqs = self.client("sqs")
        for url in props.get("Queues") or []:
            sqs.set_queue_attributes(
                QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])}
            )
        return Provisioned("AWS::SQS::QueuePolicy", logical_id, {})


def _denies_plain_http(statement: Mapping[str, Any]) -> bool:
    condition = statement.get("Condition") or {}
    return statement.get("Effect") == "Deny" and (condition.get("Bool") or {}).get(
        "aws:SecureTransport"
    ) in {"false", False}


def _encryption_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """CloudFormation's `ServerSideEncryptionByDefault` is the API's `Apply...` key."""
    out = {key: value for key, value in rule.items() if key != "ServerSideEncryptionByDefault"}
    if "ServerSideEncryptionByDefault" in rule:
        out["ApplyServerSideEncryptionByDefault"] = rule["ServerSideEncryptionByDefault"]
    return out


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """Translate a CloudFormation lifecycle rule into the S3 API's shape."""
    out: dict[str, Any] = {"Status": rule["Status"]}
    if "Id" in rule:
        out["ID"] = rule["Id"]
    out["Filter"] = {"Prefix": rule.get("Prefix", "")}
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "NoncurrentVersionExpiration" in rule:
        out["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
        }
    if "NoncurrentVersionExpirationInDays" in rule:
        out["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": int(rule["NoncurrentVersionExpirationInDays"])
        }
    if "AbortIncompleteMultipartUpload" in rule:
        out["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(
                rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
            )
        }
    return out


def _generate_secret_string(spec: Mapping[str, Any]) -> str:
    """What Secrets Manager's GenerateSecretString would make, from the same options."""
    alphabet = ""
    if not spec.get("ExcludeLowercase"):
        alphabet += string.ascii_lowercase
    if not spec.get("ExcludeUppercase"):
        alphabet += string.ascii_uppercase
    if not spec.get("ExcludeNumbers"):
        alphabet += string.digits
    if not spec.get("ExcludePunctuation"):
        alphabet += "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
    if spec.get("IncludeSpace"):
        alphabet += " "
    excluded = set(str(spec.get("ExcludeCharacters", "")))
    alphabet = "".join(ch for ch in alphabet if ch not in excluded)
    length = int(spec.get("PasswordLength", 32))
    value = "".join(secrets.choice(alphabet) for _ in range(length))
    if "GenerateStringKey" in spec:
        document = json.loads(spec.get("SecretStringTemplate", "{}"))
        document[spec["GenerateStringKey"]] = value
        return json.dumps(document)
    return value


def _references(value: Any) -> set[str]:
    """Names that `value` refers to through Ref, GetAtt or Sub."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= _references(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            elif key == "Fn::GetAtt":
                found.add(_split_get_att(item)[0])
            elif key == "Fn::Sub":
                text = item[0] if isinstance(item, list) else item
                for name in re.findall(r"\$\{([^}!][^}]*)\}", str(text)):
                    found.add(name.split(".")[0])
                if isinstance(item, list):
                    found |= _references(item[1])
            else:
                found |= _references(item)
    return found


def _dependency_order(resources: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Logical ids ordered so that each comes after the resources it refers to."""
    deps: dict[str, set[str]] = {}
    for lid, spec in resources.items():
        depends_on = spec.get("DependsOn") or []
        if isinstance(depends_on, str):
            depends_on = [depends_on]
        names = _references(spec.get("Properties") or {}) | set(depends_on)
        deps[lid] = {name for name in names if name in resources and name != lid}
    ordered: list[str] = []
    remaining = dict(deps)
    while remaining:
        ready = sorted(lid for lid, needs in remaining.items() if needs <= set(ordered))
        if not ready:
            raise ValueError(f"circular references between {sorted(remaining)}")
        ordered.extend(ready)
        for lid in ready:
            del remaining[lid]
    return ordered


def provision(
    session_or_none: boto3.Session | None = None,
    *,
    template_path: str | Path = "template.yaml",
    stack_name: str = DEFAULT_STACK_NAME,
    endpoint_url: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    secret_values: Mapping[str, str] | None = None,
) -> LocalResources:
    """Create the template's tables, buckets, queues and secrets; return their local names.

    `secret_values` pins the value of a generated secret by logical id: the local stack
    stores its dev JWT key in `JwtSigningSecret`, so tokens it mints verify whether the
    code reads `JWT_SECRET` or `JWT_SECRET_ARN`.
    """
    template = load_template(template_path)
    session = session_or_none or boto3.Session(
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=LOCAL_REGION,
    )
    created = _Provisioner(
        session,
        template,
        stack_name,
        endpoint_url,
        parameters or {},
        secret_values or {},
    ).run()

    def ref_of(logical_id: str) -> str:
        if logical_id not in created:
            raise UnresolvedReference(f"template.yaml declares no {logical_id} to provision")
        return created[logical_id].ref

    secret = created.get("JwtSigningSecret")
    return LocalResources(
        table_name=ref_of("DataTable"),
        bucket_name=ref_of("LandingBucket"),
        queue_url=ref_of("SyncQueue"),
        dlq_url=ref_of("SyncDeadLetterQueue"),
        jwt_secret_arn=secret.ref if secret else None,
        by_logical_id=created,
        stack_name=stack_name,
        endpoint_url=endpoint_url,
        parameters=dict(parameters or {}),
    )


# --------------------------------------------------------------------------- functions


@dataclass(frozen=True)
class FunctionSpec:
    """What the local stack needs to run one AWS::Serverless::Function in-process."""

    logical_id: str
    code_uri: str
    handler: str
    timeout: int
    memory_size: int


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    logical_id: str
    code_uri: str
    handler: str
    timeout: int = 3
    memory_size: int = 128


@dataclass(frozen=True)
class SqsTrigger:
    logical_id: str
    code_uri: str
    handler: str
    queue_logical_id: str
    batch_size: int
    report_batch_item_failures: bool
    timeout: int
    memory_size: int
    # MaximumBatchingWindowInSeconds: how long the poller gathers messages for one batch.
    batching_window: int = 0


def functions(template: Mapping[str, Any]) -> dict[str, FunctionSpec]:
    """Every serverless function, with Globals applied."""
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    params = Resolver(template)
    specs: dict[str, FunctionSpec] = {}
    for lid, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties") or {}

        def setting(key: str, default: Any, props: Mapping[str, Any] = props) -> Any:
            return params.resolve(props.get(key, globals_.get(key, default)))

        specs[lid] = FunctionSpec(
            logical_id=lid,
            code_uri=str(props["CodeUri"]).rstrip("/"),
            handler=str(setting("Handler", "app.handler")),
            timeout=int(setting("Timeout", 3)),
            memory_size=int(setting("MemorySize", 128)),
        )
    return specs


def _events(template: Mapping[str, Any], lid: str, kind: str) -> Iterable[dict[str, Any]]:
    props = template["Resources"][lid].get("Properties") or {}
    for event in (props.get("Events") or {}).values():
        if event.get("Type") == kind:
            yield event.get("Properties") or {}


def routes(template: Mapping[str, Any]) -> list[Route]:
    """The API routes the template declares (method, path template, function)."""
    found = []
    for lid, spec in functions(template).items():
        for event in _events(template, lid, "Api"):
            found.append(
                Route(
                    method=str(event["Method"]).upper(),
                    path=str(event["Path"]),
                    logical_id=lid,
                    code_uri=spec.code_uri,
                    handler=spec.handler,
                    timeout=spec.timeout,
                    memory_size=spec.memory_size,
                )
            )
    return found


def sqs_functions(template: Mapping[str, Any]) -> list[SqsTrigger]:
    """The functions an SQS queue triggers, with their event source settings."""
    found = []
    for lid, spec in functions(template).items():
        for event in _events(template, lid, "SQS"):
            queue = event["Queue"]
            if isinstance(queue, dict) and "Fn::GetAtt" in queue:
                queue_lid = _split_get_att(queue["Fn::GetAtt"])[0]
            elif isinstance(queue, dict) and "Ref" in queue:
                queue_lid = str(queue["Ref"])
            else:
                raise ValueError(f"{lid}: SQS event Queue must reference a queue in the template")
            found.append(
                SqsTrigger(
                    logical_id=lid,
                    code_uri=spec.code_uri,
                    handler=spec.handler,
                    queue_logical_id=queue_lid,
                    batch_size=int(event.get("BatchSize", 10)),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (event.get("FunctionResponseTypes") or []),
                    timeout=spec.timeout,
                    memory_size=spec.memory_size,
                    batching_window=int(event.get("MaximumBatchingWindowInSeconds", 0)),
                )
            )
    return found


def function_environment(
    template: Mapping[str, Any],
    resources: LocalResources,
    logical_id: str,
    *,
    overrides: Mapping[str, str] | None = None,
    jwt_secret: str = DEV_JWT_SECRET,
) -> dict[str, str]:
    """The function's environment as Lambda would set it, pointed at the local resources.

    Globals' variables, then the function's own, with every reference resolved; then
    the local-mode settings; then `overrides`.
    """
    resolver = resources.resolver(template)
    globals_env = (
        ((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}
    ).get("Variables") or {}
    props = template["Resources"][logical_id].get("Properties") or {}
    own_env = (props.get("Environment") or {}).get("Variables") or {}
    env: dict[str, str] = {}
    for name, value in {**globals_env, **own_env}.items():
        resolved = resolver.resolve(value)
        if resolved is not NO_VALUE:
            env[name] = _scalar_to_string(resolved)
    env.update(
        {
            "LOCAL_MODE": "true",
            "JWT_SECRET": jwt_secret,
            # No X-Ray daemon here: the tracer would only warn on every segment.
            "POWERTOOLS_TRACE_DISABLED": "true",
            "AWS_REGION": LOCAL_REGION,
            "AWS_DEFAULT_REGION": LOCAL_REGION,
            **FAKE_CREDENTIALS,
        }
    )
    if resources.endpoint_url:
        # boto3 sends every service to this endpoint (the moto server).
        env["AWS_ENDPOINT_URL"] = resources.endpoint_url
    env.update(overrides or {})
    return env


_LOAD_LOCK = threading.RLock()


def load_handler(
    code_uri: str, handler: str = "app.handler", *, root: str | Path | None = None
) -> Handler:
    """Import `<code_uri>/app.py` under a unique module name and return its handler.

    Seven functions each have an `app.py`; importing them by file path under names
    like `functions_connect_sources_app` keeps them from replacing one another in
    `sys.modules`. `shared/` goes on `sys.path`, as the layer's `python/` is in Lambda.
    """
    base = Path(root) if root is not None else REPO_ROOT
    shared = str(base / "shared")
    if shared not in sys.path:
        sys.path.insert(0, shared)
    module_file, _, function_name = handler.rpartition(".")
    path = base / code_uri / f"{module_file.replace('.', '/')}.py"
    module_name = "_".join([*Path(code_uri).parts, *module_file.split(".")])
    # One import at a time: a second thread must not see the module half-initialised.
    with _LOAD_LOCK:
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or spec.loader is None or not path.exists():
                raise FileNotFoundError(f"no handler module at {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                # A failed cold start must not leave a half-imported module behind.
                del sys.modules[module_name]
                raise
    function = getattr(module, function_name)
    if not callable(function):
        raise TypeError(f"{path}:{function_name} is not callable")
    return function


@dataclass
class FakeLambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    timeout_seconds: float
    memory_limit_in_mb: int = 128
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    identity: Any = None
    client_context: Any = None
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"{time.strftime('%Y/%m/%d')}/[$LATEST]{self.aws_request_id.replace('-', '')}"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's Timeout, as Lambda reports them."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def lambda_context(stack_name: str, logical_id: str, timeout: float, memory: int) -> Any:
    """A fresh context for one invocation of `logical_id`."""
    return FakeLambdaContext(
        function_name=f"{stack_name}-{logical_id}",
        timeout_seconds=timeout,
        memory_limit_in_mb=memory,
    )

"""Build template.yaml's storage resources in emulated AWS (moto).

The local stack and the integration tests both start from here, so the tables,
buckets, queues and secrets they use are the ones the template declares, with the
template's own properties: infrastructure and tests cannot drift apart.

`provision` talks to AWS through boto3 only. Under `moto.mock_aws` the calls are
intercepted in-process; with `endpoint_url` they go to a moto server.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from local import DEFAULT_STACK_NAME, FAKE_CREDENTIALS, LOCAL_REGION
from local.cfn import (
    Resolver,
    UnresolvedReference,
    dependency_order,
    load_template,
    scalar_to_string,
)


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
        for lid in dependency_order(wanted):
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
                attributes[key] = scalar_to_string(props[key])
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

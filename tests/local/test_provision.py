"""The local stack builds template.yaml's resources in moto as the template declares
them, and gives each function the environment Lambda would, pointed at them.
"""

from __future__ import annotations

import json
from typing import Any

import boto3

from local.functions import function_environment
from local.provision import LocalResources, provision
from local.tokens import DEV_JWT_SECRET
from tests.support.template import TEMPLATE_PATH


def test_provisioning_creates_the_table_as_the_template_declares(
    emulated_aws: LocalResources,
) -> None:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    table = ddb.describe_table(TableName=emulated_aws.table_name)["Table"]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSEDescription"]["Status"] == "ENABLED"
    ttl = ddb.describe_time_to_live(TableName=emulated_aws.table_name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    backups = ddb.describe_continuous_backups(TableName=emulated_aws.table_name)
    pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"


def test_provisioning_creates_the_bucket_private_and_encrypted(
    emulated_aws: LocalResources,
) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    assert emulated_aws.bucket_name == "datasources-local-landingbucket"
    block = s3.get_public_access_block(Bucket=emulated_aws.bucket_name)
    assert set(block["PublicAccessBlockConfiguration"].values()) == {True}
    rules = s3.get_bucket_encryption(Bucket=emulated_aws.bucket_name)[
        "ServerSideEncryptionConfiguration"
    ]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert s3.get_bucket_versioning(Bucket=emulated_aws.bucket_name)["Status"] == "Enabled"
    # moto cannot tell TLS from plain HTTP: the template's TLS-only Deny must not be
    # applied locally, or it would refuse every request.
    s3.put_object(Bucket=emulated_aws.bucket_name, Key="probe.txt", Body=b"ok")
    body = s3.get_object(Bucket=emulated_aws.bucket_name, Key="probe.txt")["Body"].read()
    assert body == b"ok"


def test_provisioning_wires_the_queue_to_its_dead_letter_queue(
    emulated_aws: LocalResources,
) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    attrs = sqs.get_queue_attributes(QueueUrl=emulated_aws.queue_url, AttributeNames=["All"])[
        "Attributes"
    ]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=emulated_aws.dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    assert attrs["VisibilityTimeout"] == "5400"
    assert json.loads(attrs["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": 3,
    }


def test_provisioning_is_repeatable_and_stores_the_pinned_jwt_key(
    emulated_aws: LocalResources,
) -> None:
    again = provision(template_path=TEMPLATE_PATH)
    assert again.queue_url == emulated_aws.queue_url
    assert again.jwt_secret_arn == emulated_aws.jwt_secret_arn
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    assert emulated_aws.jwt_secret_arn is not None
    value = secrets.get_secret_value(SecretId=emulated_aws.jwt_secret_arn)["SecretString"]
    assert value == "s3cr3t"


def test_function_environment_points_at_the_local_resources(
    template: dict[str, Any], emulated_aws: LocalResources
) -> None:
    env = function_environment(template, emulated_aws, "ConnectSourcesFunction")
    assert env["TABLE_NAME"] == emulated_aws.table_name
    assert env["BUCKET_NAME"] == emulated_aws.bucket_name
    assert env["QUEUE_URL"] == emulated_aws.queue_url
    assert env["SECRET_PREFIX"] == "datasources-local/sources"
    assert env["JWT_SECRET_ARN"] == emulated_aws.jwt_secret_arn
    assert env["LOCAL_MODE"] == "true"
    assert env["JWT_SECRET"] == DEV_JWT_SECRET
    assert "AWS_ENDPOINT_URL" not in env  # in-process moto: no endpoint to point at

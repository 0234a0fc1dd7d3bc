"""The cold-start baseline: a handler that imports only boto3 and json.

It makes the DynamoDB call the list function makes (a Query of the tenant's sources)
and answers in the same shape, so its cold start is the floor a Python Lambda on
boto3 pays: the interpreter's imports, one client, one round trip.
"""

import json
import os

import boto3

_TABLE = os.environ["TABLE_NAME"]
_client = boto3.client("dynamodb")


def handler(event, context):  # type: ignore[no-untyped-def]
    response = _client.query(
        TableName=_TABLE,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
        ExpressionAttributeValues={
            ":pk": {"S": "ORG#acme#WS#ws_demo#SCOPE#user#OWNER#user-1"},
            ":prefix": {"S": "SOURCE#"},
        },
        Limit=50,
    )
    body = {"status": "success", "data": response.get("Items", [])}
    return {"statusCode": 200, "body": json.dumps(body)}

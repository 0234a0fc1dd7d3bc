"""Every endpoint through its real handler and `events/` sample, against emulated AWS.

File sources are used for the flows that reach a source, since their connector needs
only S3; database and API connectors have their own suites.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Stack, mint

CSV = b"id,name,amount,updated_at\n" + b"".join(
    f"{i},name-{i},{i * 1.25},2024-01-{1 + i % 28:02d}T10:00:00Z\n".encode() for i in range(1, 41)
)


def file_source(
    stack: Stack, name: str = "orders", key: str = "uploads/acme/orders.csv"
) -> dict[str, Any]:
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=CSV)
    return {
        "type": "file",
        "name": name,
        "connection_config": {"url": f"s3://{stack.bucket}/{key}"},
    }


def connect(
    stack: Stack, *sources: dict[str, Any], token: str | None = None, scope: str = "user"
) -> Any:
    return stack.call("connect", body={"scope": scope, "sources": list(sources)}, token=token)


def source_secrets(stack: Stack, *, include_deleted: bool = False) -> list[dict[str, Any]]:
    """The sources' secrets (the stack also holds its JWT signing secret)."""
    listed = stack.secrets.list_secrets(IncludePlannedDeletion=include_deleted)["SecretList"]
    return [s for s in listed if "/sources/" in s["Name"]]


DB_SOURCE = {
    "type": "database",
    "name": "customer_db",
    "connection_config": {
        "host": "db.example.com",
        "port": 5432,
        "database": "customers",
        "username": "user",
        "password": "planted-password-1",
    },
    "metadata": {"description": "Customer database connection"},
}
API_SOURCE = {
    "type": "api",
    "name": "sales_api",
    "connection_config": {"base_url": "https://api.sales.com", "api_key": "planted-api-key-2"},
}


# ------------------------------------------------------------------ connect


def test_connect_saves_the_published_example_and_masks_secrets(stack: Stack) -> None:
    response = connect(stack, DB_SOURCE, API_SOURCE)
    assert response.status_code == 201, response.body
    assert response.body["status"] == "success"
    sources = response.data["connected_sources"]
    assert [s["name"] for s in sources] == ["customer_db", "sales_api"]
    assert sources[0]["connection_config"]["password"] == "********"
    assert sources[1]["connection_config"]["api_key"] == "********"
    text = json.dumps(response.body)
    assert "planted-password-1" not in text and "planted-api-key-2" not in text
    # The secret went to Secrets Manager under the app's prefix, never into DynamoDB.
    names = [s["Name"] for s in source_secrets(stack)]
    assert len(names) == 2 and all("/acme/src_" in n for n in names)
    items = stack.ddb.scan(TableName=stack.resources.table_name)["Items"]
    assert "planted-password-1" not in json.dumps(items)
    for source in sources:
        assert set(source) >= {
            "id",
            "name",
            "type",
            "scope",
            "connection_config",
            "metadata",
            "created_at",
            "updated_at",
            "created_by",
            "last_sync",
        }


def test_connect_with_a_duplicate_name_is_409_naming_it_and_saves_nothing(stack: Stack) -> None:
    assert connect(stack, DB_SOURCE).status_code == 201
    response = connect(stack, API_SOURCE, DB_SOURCE)
    assert response.status_code == 409
    assert "customer_db" in response.body["message"]
    listed = stack.call("list", query={"scope": "user"}).data
    assert [s["name"] for s in listed] == ["customer_db"]
    # The secret created for the refused request was removed again (atomic connect).
    assert len(source_secrets(stack)) == 1


def test_the_same_name_is_fine_in_another_scope_or_user(stack: Stack) -> None:
    assert connect(stack, DB_SOURCE).status_code == 201
    assert connect(stack, DB_SOURCE, scope="organization").status_code == 201
    assert connect(stack, DB_SOURCE, token=mint(sub="user-2")).status_code == 201


@pytest.mark.parametrize(
    ("raw_body", "status"),
    [
        ("{not json", 400),
        ("[1, 2]", 400),
        (json.dumps({"sources": []}), 422),
        (json.dumps({"sources": [{"type": "ftp", "name": "x", "connection_config": {}}]}), 422),
        (json.dumps({"scope": "team", "sources": [DB_SOURCE]}), 422),
        (json.dumps({"sources": [DB_SOURCE], "surprise": True}), 422),
        (json.dumps({"sources": [{**DB_SOURCE, "name": "../etc"}]}), 422),
        (json.dumps({"sources": [{k: v for k, v in DB_SOURCE.items() if k != "name"}]}), 422),
        (json.dumps({"sources": [DB_SOURCE] * 30}), 422),
        (json.dumps({"sources": [DB_SOURCE], "pad": "x" * 300_000}), 413),
    ],
)
def test_bad_connect_bodies_get_a_clear_error_and_change_nothing(
    stack: Stack, raw_body: str, status: int
) -> None:
    response = stack.call("connect", raw_body=raw_body)
    assert response.status_code == status, response.body
    assert response.body["status"] == "error" and response.body["message"]
    assert "planted-password-1" not in json.dumps(response.body)
    assert stack.call("list", query={"scope": "user"}).data == []


def test_validation_errors_list_each_problem_by_location(stack: Stack) -> None:
    bad = {**DB_SOURCE, "connection_config": {**DB_SOURCE["connection_config"], "port": 99999}}
    response = stack.call("connect", body={"sources": [bad]})
    assert response.status_code == 422
    locations = [e["loc"] for e in response.data["errors"]]
    assert any(loc.endswith("connection_config.port") for loc in locations)


@pytest.mark.parametrize("workspace_id", ["bad workspace", "a" * 65, "ws#1", "-leading"])
def test_a_bad_workspace_id_is_422(stack: Stack, workspace_id: str) -> None:
    response = stack.call("list", query={"scope": "user"}, workspace_id=workspace_id)
    assert response.status_code == 422


# ------------------------------------------------------------------ auth


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Token abc"}],
)
def test_missing_or_malformed_tokens_are_401_on_every_endpoint(
    stack: Stack, headers: dict[str, str]
) -> None:
    for endpoint in Stack.ENDPOINTS:
        response = stack.call(endpoint, headers=headers, path={"job_id": "job_" + "0" * 20})
        assert response.status_code == 401, (endpoint, response.body)
        assert "Traceback" not in json.dumps(response.body)


def test_expired_token_is_401(stack: Stack) -> None:
    import time

    token = mint(exp=int(time.time()) - 3600)
    assert stack.call("list", query={}, token=token).status_code == 401


def test_a_viewer_cannot_write_and_a_member_cannot_write_organization_scope(stack: Stack) -> None:
    viewer = mint(sub="v", role="viewer")
    member = mint(sub="m", role="member")
    assert connect(stack, DB_SOURCE, token=viewer).status_code == 403
    assert connect(stack, DB_SOURCE, token=member, scope="organization").status_code == 403
    assert stack.call("cleanup", body={}, token=viewer).status_code == 403
    assert stack.call("sync", body={}, token=viewer).status_code == 403
    assert connect(stack, DB_SOURCE, token=member).status_code == 201
    assert stack.call("list", query={"scope": "user"}, token=viewer).status_code == 200


def test_another_users_or_organizations_source_is_404_like_an_unknown_id(stack: Stack) -> None:
    source_id = connect(stack, file_source(stack)).data["connected_sources"][0]["id"]
    never = "src_" + "0" * 20
    for token in (mint(sub="user-2"), mint(org="other-org")):
        for sid in (source_id, never):
            schema = stack.call("schema", query={"source_id": sid, "scope": "user"}, token=token)
            assert schema.status_code == 404
            sync = stack.call("sync", body={"source_ids": [sid]}, token=token)
            assert sync.status_code == 404
        cleanup = stack.call("cleanup", body={"source_ids": [source_id]}, token=token)
        assert cleanup.data["deleted_count"] == 0 and cleanup.data["not_found"] == [source_id]
    assert stack.call("schema", query={"source_id": source_id}).status_code == 200


# ------------------------------------------------------------------ list


def test_list_pages_with_next_token_and_filters_by_type(stack: Stack) -> None:
    sources = [{**DB_SOURCE, "name": f"db-{i}"} for i in range(5)] + [API_SOURCE]
    assert connect(stack, *sources).status_code == 201
    seen: list[str] = []
    token = None
    for _ in range(10):
        query = {"scope": "user", "limit": "2"}
        if token:
            query["next_token"] = token
        page = stack.call("list", query=query)
        assert page.status_code == 200 and len(page.data) <= 2
        seen += [s["name"] for s in page.data]
        token = page.body["next_token"]
        if not token:
            break
    assert sorted(seen) == sorted(s["name"] for s in sources)
    apis = stack.call("list", query={"scope": "user", "type": "api"}).data
    assert [s["name"] for s in apis] == ["sales_api"]


def test_a_next_token_of_another_tenant_is_refused(stack: Stack) -> None:
    connect(stack, *[{**DB_SOURCE, "name": f"db-{i}"} for i in range(3)])
    token = stack.call("list", query={"limit": "1"}).body["next_token"]
    other = stack.call("list", query={"limit": "1", "next_token": token}, token=mint(org="evil"))
    assert other.status_code == 400


def test_list_with_an_unknown_scope_is_422(stack: Stack) -> None:
    assert stack.call("list", query={"scope": "everyone"}).status_code == 422


# ------------------------------------------------------------------ test-connection and schema


def test_test_connection_on_a_readable_file_reports_success(stack: Stack) -> None:
    source = file_source(stack)
    response = stack.call(
        "test", body={"source_config": {k: source[k] for k in ("type", "connection_config")}}
    )
    assert response.status_code == 200, response.body
    assert response.data["reachable"] is True and response.data["latency_ms"] >= 0


def test_test_connection_on_a_missing_object_says_which_stage_failed(stack: Stack) -> None:
    config = {"type": "file", "connection_config": {"url": f"s3://{stack.bucket}/missing.csv"}}
    response = stack.call("test", body={"source_config": config})
    assert response.status_code == 400
    assert response.body["status"] == "error" and response.data["stage"]


def test_schema_of_a_file_source(stack: Stack) -> None:
    source_id = connect(stack, file_source(stack)).data["connected_sources"][0]["id"]
    response = stack.call("schema", query={"source_id": source_id, "scope": "user"})
    assert response.status_code == 200
    table = response.data["tables"][0]
    types = {c["name"]: c["type"] for c in table["columns"]}
    assert types == {
        "id": "integer",
        "name": "string",
        "amount": "decimal",
        "updated_at": "timestamp_tz",
    }
    assert table["cursor_field"] == "updated_at"


def test_schema_without_source_id_is_422(stack: Stack) -> None:
    assert stack.call("schema", query={"scope": "user"}).status_code == 422


# ------------------------------------------------------------------ sync, status, cleanup


def test_sync_writes_parquet_parts_and_a_manifest_then_status_reports_it(stack: Stack) -> None:
    source_id = connect(stack, file_source(stack)).data["connected_sources"][0]["id"]
    response = stack.call(
        "sync", body={"source_ids": [source_id], "sync_options": {"batch_size": 15}}
    )
    assert response.status_code == 200, response.body
    job = response.data
    assert job["status"] == "completed" and job["records_processed"] == 40
    stream = job["sources"][0]["streams"][0]
    assert stream["parts"] == 3 and stream["records"] == 40
    prefix = f"org=acme/workspace=ws_demo/source={source_id}/stream=orders/job={job['job_id']}/"
    keys = sorted(stack.objects(prefix))
    assert keys[0] == f"{prefix}_manifest.json" and len(keys) == 4
    # Part keys carry the seq and the run (attempt) that wrote them.
    assert [k.removeprefix(prefix)[:11] for k in keys[1:]] == [f"part-0000{i}-" for i in range(3)]
    rows = stack.read_parts(prefix + "part-")
    assert sorted(r["id"] for r in rows) == list(range(1, 41))
    manifest = json.loads(
        stack.s3.get_object(Bucket=stack.bucket, Key=f"{prefix}_manifest.json")["Body"].read()
    )
    assert manifest["record_count"] == 40 and len(manifest["files"]) == 3
    status = stack.call("status", path={"job_id": job["job_id"]}, query={"scope": "user"})
    assert status.status_code == 200 and status.data["status"] == "completed"
    listed = stack.call("list", query={}).data[0]
    assert listed["last_sync"]["job_id"] == job["job_id"] and listed["last_sync"]["records"] == 40


def test_sync_of_a_database_source_without_a_reachable_server_fails_clearly(stack: Stack) -> None:
    source_id = connect(stack, DB_SOURCE).data["connected_sources"][0]["id"]
    response = stack.call("sync", body={"source_ids": [source_id]})
    assert response.status_code in (400, 422)
    assert response.body["status"] == "error"
    assert "planted-password-1" not in json.dumps(response.body)


def test_status_of_an_unknown_or_foreign_job_is_404(stack: Stack) -> None:
    source_id = connect(stack, file_source(stack)).data["connected_sources"][0]["id"]
    job_id = stack.call("sync", body={"source_ids": [source_id]}).data["job_id"]
    assert stack.call("status", path={"job_id": "job_" + "1" * 20}).status_code == 404
    assert stack.call("status", path={"job_id": "../../x"}).status_code == 404
    assert (
        stack.call("status", path={"job_id": job_id}, token=mint(sub="user-2")).status_code == 404
    )
    assert stack.call("status", path={"job_id": job_id}, token=mint(org="other")).status_code == 404


def test_cleanup_deletes_items_secrets_and_state_and_reports_not_found(stack: Stack) -> None:
    created = connect(stack, DB_SOURCE, file_source(stack)).data["connected_sources"]
    file_id = created[1]["id"]
    stack.call("sync", body={"source_ids": [file_id]})
    never = "src_" + "f" * 20
    response = stack.call("cleanup", body={"source_ids": [created[0]["id"], file_id, never]})
    assert response.status_code == 200
    assert response.data["deleted_count"] == 2
    assert sorted(response.data["deleted_source_ids"]) == sorted([created[0]["id"], file_id])
    assert response.data["not_found"] == [never]
    assert stack.call("list", query={}).data == []
    items = stack.ddb.scan(TableName=stack.resources.table_name)["Items"]
    kinds = {i.get("kind", {}).get("S") for i in items}
    assert kinds <= {"job", "unit"}, kinds  # jobs stay as history until their TTL
    secrets = source_secrets(stack, include_deleted=True)
    assert len(secrets) == 1 and all("DeletedDate" in s for s in secrets)


def test_cleanup_without_ids_deletes_every_source_of_the_scope_only(stack: Stack) -> None:
    connect(stack, DB_SOURCE)
    connect(stack, API_SOURCE, scope="organization")
    response = stack.call("cleanup", body={"scope": "user"})
    assert response.data["deleted_count"] == 1
    assert [s["name"] for s in stack.call("list", query={"scope": "organization"}).data] == [
        "sales_api"
    ]


def test_unsupported_yet_never_fakes_success(stack: Stack) -> None:
    # Whatever connectors exist, an API source pointing nowhere reachable is an error,
    # never a fabricated success.
    config = {"type": "api", "connection_config": {"base_url": "https://127.0.0.1:1/x"}}
    stack.configure(LOCAL_MODE="false")
    response = stack.call("test", body={"source_config": config})
    assert response.body["status"] == "error"


def test_a_file_source_cannot_read_another_tenants_part_of_the_landing_bucket(stack: Stack) -> None:
    # Organization "acme" synced data; "evil" points a file source at acme's folder.
    source_id = connect(stack, file_source(stack)).data["connected_sources"][0]["id"]
    stack.call("sync", body={"source_ids": [source_id]})
    victim = f"s3://{stack.bucket}/org=acme/workspace=ws_demo/source={source_id}/"
    evil = mint(sub="mallory", org="evil")
    for url in (victim, f"s3://{stack.bucket}/uploads/acme/orders.csv"):
        config = {"type": "file", "connection_config": {"url": url, "format": "parquet"}}
        response = stack.call("test", body={"source_config": config}, token=evil)
        assert response.status_code == 400 and response.data["stage"] == "permission"
        # Connect refuses it too, so nothing is saved that a later sync could read.
        saved = stack.call("connect", body={"sources": [{**config, "name": "steal"}]}, token=evil)
        assert saved.status_code == 400 and saved.data["stage"] == "permission"
    # The owner may read its own synced data back as a source.
    own = {
        "type": "file",
        "connection_config": {"url": victim, "format": "parquet", "pattern": "**/*.parquet"},
    }
    assert stack.call("test", body={"source_config": own}).status_code == 200


def _page_token(key: object) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


@pytest.mark.parametrize(
    "sk",
    [None, [], {}, 1, 1.5, True, "NAME#orders", "SOURCE#src_x", "SOURCE#src_" + "0" * 20 + "\n"],
    ids=repr,
)
def test_a_next_token_whose_sk_is_not_a_source_key_is_400(stack: Stack, sk: object) -> None:
    connect(stack, *[{**DB_SOURCE, "name": f"db-{i}"} for i in range(2)])
    pk = json.loads(base64_decode(stack.call("list", query={"limit": "1"}).body["next_token"]))[
        "pk"
    ]
    response = stack.call("list", query={"next_token": _page_token({"pk": pk, "sk": sk})})
    assert response.status_code == 400, response.body
    assert response.data == {"code": "bad_request"}


@pytest.mark.parametrize(
    "raw",
    [
        '{"pk": ' + "[" * 700 + "]" * 700 + ', "sk": "x"}',
        "[" * 1500,
        '{"pk": NaN, "sk": Infinity}',
        '{"pk": "a", "sk": "b", "sk": "SOURCE#src_00000000000000000000"}',
        "null",
    ],
    ids=["deep", "unclosed", "non-finite", "duplicate key", "null"],
)
def test_a_deep_or_non_finite_next_token_is_400(stack: Stack, raw: str) -> None:
    import base64

    token = base64.urlsafe_b64encode(raw.encode()).decode()
    assert len(token) <= 2048
    response = stack.call("list", query={"next_token": token})
    assert response.status_code == 400, response.body


def base64_decode(token: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))

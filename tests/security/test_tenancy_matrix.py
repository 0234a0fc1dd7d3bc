"""Tenancy matrix (OWASP API1, BOLA): every endpoint, two organizations, two users in one
organization, each role, both scopes, through the real handlers.

The promise: nobody sees, syncs, reads the schema of or deletes another user's
`user`-scope source or anything of another organization; the answer is the one an id
that never existed gets (404, same code, same message but for the id); a viewer never
writes; only an admin writes in `organization` scope.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import Response, Stack, mint

ACME, GLOBEX = "acme", "globex"
# "alice" exists in both organizations: the organization, not the user id, separates them.
ACTORS = {
    "owner": {"sub": "alice", "org": ACME, "role": "member"},
    "member": {"sub": "bob", "org": ACME, "role": "member"},
    "admin": {"sub": "carol", "org": ACME, "role": "admin"},
    "viewer": {"sub": "victor", "org": ACME, "role": "viewer"},
    "other_org_admin": {"sub": "alice", "org": GLOBEX, "role": "admin"},
}
NEVER_SOURCE = "src_" + "0" * 20
NEVER_JOB = "job_" + "0" * 20
CSV = b"id,name,updated_at\n1,a,2024-01-01T00:00:00Z\n2,b,2024-01-02T00:00:00Z\n"


def token(actor: str) -> str:
    return mint(**ACTORS[actor])


@dataclass
class World:
    """One source and one finished sync job per scope, all in organization acme."""

    stack: Stack
    user_source: str  # alice's, user scope
    org_source: str  # acme's, organization scope (created by the admin)
    user_job: str
    org_job: str

    def source(self, scope: str) -> str:
        return self.user_source if scope == "user" else self.org_source

    def job(self, scope: str) -> str:
        return self.user_job if scope == "user" else self.org_job


def file_source(stack: Stack, org: str, name: str) -> dict[str, Any]:
    key = f"uploads/{org}/{name}.csv"
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=CSV)
    return {
        "type": "file",
        "name": name,
        "connection_config": {"url": f"s3://{stack.bucket}/{key}"},
    }


def connect(stack: Stack, actor: str, scope: str, source: dict[str, Any]) -> Response:
    return stack.call("connect", body={"scope": scope, "sources": [source]}, token=token(actor))


@pytest.fixture
def world(stack: Stack) -> World:
    user = connect(stack, "owner", "user", file_source(stack, ACME, "alices"))
    org = connect(stack, "admin", "organization", file_source(stack, ACME, "shared"))
    assert user.status_code == org.status_code == 201, (user.body, org.body)
    user_id = user.data["connected_sources"][0]["id"]
    org_id = org.data["connected_sources"][0]["id"]
    user_job = stack.call("sync", body={"source_ids": [user_id]}, token=token("owner"))
    org_job = stack.call(
        "sync",
        body={"scope": "organization", "source_ids": [org_id]},
        token=token("admin"),
    )
    assert user_job.status_code == org_job.status_code == 200, (user_job.body, org_job.body)
    return World(stack, user_id, org_id, user_job.data["job_id"], org_job.data["job_id"])


def shape(response: Response, object_id: str) -> tuple[int, Any, str]:
    """What a caller can tell from a response, with the id it asked about blanked out."""
    code = (response.data or {}).get("code") if isinstance(response.data, dict) else None
    return response.status_code, code, response.body["message"].replace(object_id, "<id>")


def check_matrix(expected: dict[tuple[str, str], int], actual: dict[tuple[str, str], int]) -> None:
    wrong = {k: (actual[k], v) for k, v in expected.items() if actual[k] != v}
    assert not wrong, f"(actor, scope): (got, expected) -> {wrong}"


# Who may read what: the owner alone in user scope, the whole organization in its scope.
READERS = {
    "user": {"owner"},
    "organization": {"owner", "member", "admin", "viewer"},
}


def test_list_shows_a_source_only_to_those_who_may_see_it(world: World) -> None:
    for scope in ("user", "organization"):
        for actor in ACTORS:
            response = world.stack.call("list", query={"scope": scope}, token=token(actor))
            assert response.status_code == 200, (actor, scope, response.body)
            ids = {s["id"] for s in response.data}
            visible = world.source(scope) in ids
            assert visible == (actor in READERS[scope]), (actor, scope, ids)


def test_schema_of_an_invisible_source_is_the_404_of_an_id_that_never_existed(
    world: World,
) -> None:
    actual: dict[tuple[str, str], int] = {}
    for scope in ("user", "organization"):
        source_id = world.source(scope)
        for actor in ACTORS:
            query = {"source_id": source_id, "scope": scope}
            response = world.stack.call("schema", query=query, token=token(actor))
            actual[(actor, scope)] = response.status_code
            if response.status_code == 404:
                never = world.stack.call(
                    "schema", query={**query, "source_id": NEVER_SOURCE}, token=token(actor)
                )
                assert shape(response, source_id) == shape(never, NEVER_SOURCE)
    expected = {
        (actor, scope): 200 if actor in READERS[scope] else 404
        for scope in ("user", "organization")
        for actor in ACTORS
    }
    check_matrix(expected, actual)


def test_sync_status_of_an_invisible_job_is_the_404_of_a_job_that_never_existed(
    world: World,
) -> None:
    actual: dict[tuple[str, str], int] = {}
    for scope in ("user", "organization"):
        job_id = world.job(scope)
        for actor in ACTORS:
            response = world.stack.call(
                "status", path={"job_id": job_id}, query={"scope": scope}, token=token(actor)
            )
            actual[(actor, scope)] = response.status_code
            if response.status_code == 404:
                never = world.stack.call(
                    "status", path={"job_id": NEVER_JOB}, query={"scope": scope}, token=token(actor)
                )
                assert shape(response, job_id) == shape(never, NEVER_JOB)
            else:
                assert response.data["job_id"] == job_id
    expected = {
        (actor, scope): 200 if actor in READERS[scope] else 404
        for scope in ("user", "organization")
        for actor in ACTORS
    }
    check_matrix(expected, actual)


# Writes: a viewer never (403, whatever the id); a member in user scope, on its own
# sources only; organization scope needs admin. Another tenant's id is a 404.
SYNC_EXPECTED = {
    ("owner", "user"): 200,
    ("member", "user"): 404,
    ("admin", "user"): 404,
    ("viewer", "user"): 403,
    ("other_org_admin", "user"): 404,
    ("owner", "organization"): 403,
    ("member", "organization"): 403,
    ("admin", "organization"): 200,
    ("viewer", "organization"): 403,
    ("other_org_admin", "organization"): 404,
}


def test_sync_of_another_tenants_source_is_404_and_writes_follow_the_role_rules(
    world: World,
) -> None:
    actual: dict[tuple[str, str], int] = {}
    for (actor, scope), _ in SYNC_EXPECTED.items():
        source_id = world.source(scope)
        body = {"scope": scope, "source_ids": [source_id]}
        response = world.stack.call("sync", body=body, token=token(actor))
        actual[(actor, scope)] = response.status_code
        if response.status_code == 404:
            never = world.stack.call(
                "sync", body={**body, "source_ids": [NEVER_SOURCE]}, token=token(actor)
            )
            assert shape(response, source_id) == shape(never, NEVER_SOURCE)
            assert response.data["not_found"] == [source_id]
    check_matrix(SYNC_EXPECTED, actual)


def test_cleanup_never_deletes_another_tenants_source_and_reports_it_as_never_existing(
    world: World,
) -> None:
    # Cleanup answers per id: a foreign id lands in `not_found`, exactly like an unknown one.
    expected = {k: v for k, v in SYNC_EXPECTED.items() if v != 200}
    actual: dict[tuple[str, str], int] = {}
    for actor, scope in expected:
        source_id = world.source(scope)
        response = world.stack.call(
            "cleanup", body={"scope": scope, "source_ids": [source_id]}, token=token(actor)
        )
        actual[(actor, scope)] = response.status_code
        if response.status_code == 200:
            assert response.data["deleted_count"] == 0
            assert response.data["not_found"] == [source_id]
            never = world.stack.call(
                "cleanup", body={"scope": scope, "source_ids": [NEVER_SOURCE]}, token=token(actor)
            )
            assert never.status_code == 200 and never.data["not_found"] == [NEVER_SOURCE]
            assert shape(response, source_id) == shape(never, NEVER_SOURCE)
    check_matrix({k: (200 if v == 404 else v) for k, v in expected.items()}, actual)
    # "Everything in my scope" from another user or organization does not reach it either.
    for actor, scope in (
        ("member", "user"),
        ("admin", "user"),
        ("other_org_admin", "user"),
        ("other_org_admin", "organization"),
    ):
        everything = world.stack.call("cleanup", body={"scope": scope}, token=token(actor))
        assert everything.status_code == 200, everything.body
        assert world.source(scope) not in everything.data["deleted_source_ids"]
    # Both sources survived every attempt; their owners can still read and delete them.
    for scope, actor in (("user", "owner"), ("organization", "admin")):
        schema = world.stack.call(
            "schema", query={"source_id": world.source(scope), "scope": scope}, token=token(actor)
        )
        assert schema.status_code == 200
        deleted = world.stack.call(
            "cleanup",
            body={"scope": scope, "source_ids": [world.source(scope)]},
            token=token(actor),
        )
        assert deleted.data["deleted_source_ids"] == [world.source(scope)]


def test_connect_follows_the_role_rules_in_both_scopes(stack: Stack) -> None:
    expected = {
        ("owner", "user"): 201,
        ("member", "user"): 201,
        ("admin", "user"): 201,
        ("viewer", "user"): 403,
        ("other_org_admin", "user"): 201,
        ("owner", "organization"): 403,
        ("member", "organization"): 403,
        ("admin", "organization"): 201,
        ("viewer", "organization"): 403,
        ("other_org_admin", "organization"): 201,
    }
    actual = {}
    for actor, scope in expected:
        org = str(ACTORS[actor]["org"])
        response = connect(stack, actor, scope, file_source(stack, org, f"{actor}_{scope}"))
        actual[(actor, scope)] = response.status_code
    check_matrix(expected, actual)


def test_a_source_is_invisible_from_another_scope_or_workspace(world: World) -> None:
    owner = token("owner")
    for query, workspace in (
        ({"source_id": world.user_source, "scope": "organization"}, "ws_demo"),
        ({"source_id": world.org_source, "scope": "user"}, "ws_demo"),
        ({"source_id": world.user_source, "scope": "user"}, "ws_other"),
    ):
        response = world.stack.call("schema", query=query, token=owner, workspace_id=workspace)
        assert response.status_code == 404, (query, workspace)
    listed = world.stack.call("list", query={"scope": "user"}, token=owner, workspace_id="ws_other")
    assert listed.data == []


def test_test_connection_cannot_read_another_organizations_uploads(stack: Stack) -> None:
    # test-connection reads nothing stored, so every role may use it, but a file source
    # in the service's own bucket is confined to the caller's organization.
    file_source(stack, ACME, "private")
    config = {
        "type": "file",
        "connection_config": {"url": f"s3://{stack.bucket}/uploads/{ACME}/private.csv"},
    }
    for actor in ACTORS:
        response = stack.call("test", body={"source_config": config}, token=token(actor))
        if ACTORS[actor]["org"] == ACME:
            assert response.status_code == 200, (actor, response.body)
        else:
            assert response.status_code == 400, response.body
            assert response.data["stage"] == "permission"


# ---------------------------------------------------------------------------------------
# Data read back from the landing bucket through `file` sources.
#
# The lake's keys name organization, workspace and source, not scope or owner, so a file
# source may read synced data only through the folder of one source its reader can see
# with the API's own lookups: a user-scope source (and a caller's test-connection) sees
# its owner's user-scope sources and the organization's; an organization-scope source
# sees the organization's only. Uploads: `uploads/<organization>/`.


@dataclass
class Lake:
    """World plus the admin's own user-scope source, each synced once."""

    world: World
    admin_source: str

    @property
    def stack(self) -> Stack:
        return self.world.stack

    def folder(self, data: str) -> str:
        source = {
            "alice_user": self.world.user_source,
            "carol_user": self.admin_source,
            "org": self.world.org_source,
        }[data]
        return f"s3://{self.stack.bucket}/org={ACME}/workspace=ws_demo/source={source}/"


# Which actors' reach covers each data set: its owner alone, or the whole organization.
LAKE_DATA = {"alice_user": {"owner"}, "carol_user": {"admin"}, "org": set(READERS["organization"])}


@pytest.fixture
def lake(world: World) -> Lake:
    made = connect(world.stack, "admin", "user", file_source(world.stack, ACME, "carols"))
    assert made.status_code == 201, made.body
    admin_source = made.data["connected_sources"][0]["id"]
    synced = world.stack.call("sync", body={"source_ids": [admin_source]}, token=token("admin"))
    assert synced.data["status"] == "completed", synced.body
    return Lake(world, admin_source)


def lake_config(url: str, pattern: str = "**/*.parquet", **extra: Any) -> dict[str, Any]:
    return {"type": "file", "connection_config": {"url": url, "pattern": pattern, **extra}}


def refused(response: Response) -> bool:
    return response.status_code == 400 and response.data.get("stage") == "permission"


def test_test_connection_reads_back_only_synced_data_its_caller_can_see(lake: Lake) -> None:
    # Every role x user-scope data (own / another's) and organization-scope data.
    actual: dict[tuple[str, str], int] = {}
    for actor in ACTORS:
        for data in LAKE_DATA:
            config = lake_config(lake.folder(data))
            response = lake.stack.call("test", body={"source_config": config}, token=token(actor))
            actual[(actor, data)] = response.status_code
            if response.status_code == 200:
                assert response.data["details"]["objects"] == 1, response.body
            else:
                assert refused(response), (actor, data, response.body)
    expected = {
        (actor, data): 200 if actor in readers else 400
        for actor in ACTORS
        for data, readers in LAKE_DATA.items()
    }
    check_matrix(expected, actual)


# (actor, scope of the new source) -> the data sets it may sync; viewers never write.
SYNC_READS = {
    ("owner", "user"): {"alice_user", "org"},
    ("member", "user"): {"org"},
    ("admin", "user"): {"carol_user", "org"},
    # What an organization-scope source syncs is visible to everyone in the organization,
    # so no user's private data may flow into it, not even its creator's.
    ("admin", "organization"): {"org"},
    ("other_org_admin", "user"): set(),
    ("other_org_admin", "organization"): set(),
}


def test_file_sources_sync_back_only_data_their_owner_may_read(lake: Lake) -> None:
    rows = {(r["id"], r["name"]) for r in [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    actual: dict[tuple[str, str, str], int] = {}
    expected: dict[tuple[str, str, str], int] = {}
    for (actor, scope), readable in SYNC_READS.items():
        for data in LAKE_DATA:
            source = {"name": f"{actor}_{scope}_{data}", **lake_config(lake.folder(data))}
            made = connect(lake.stack, actor, scope, source)
            expected[(actor, scope, data)] = 200 if data in readable else 400
            if made.status_code != 201:
                assert refused(made), (actor, scope, data, made.body)
                actual[(actor, scope, data)] = made.status_code
                continue
            source_id = made.data["connected_sources"][0]["id"]
            synced = lake.stack.call(
                "sync", body={"scope": scope, "source_ids": [source_id]}, token=token(actor)
            )
            actual[(actor, scope, data)] = synced.status_code
            assert synced.data["status"] == "completed", synced.body
            assert synced.data["records_processed"] == 2
            org = ACTORS[actor]["org"]
            read = lake.stack.read_parts(f"org={org}/workspace=ws_demo/source={source_id}/")
            assert {(r["id"], r["name"]) for r in read} == rows
    wrong = {k: (actual[k], v) for k, v in expected.items() if actual[k] != v}
    assert not wrong, f"(actor, scope, data): (got, expected) -> {wrong}"
    # Viewers cannot connect anything; the role rule answers before the lake rule.
    viewer = connect(lake.stack, "viewer", "user", {"name": "v", **lake_config(lake.folder("org"))})
    assert viewer.status_code == 403


def test_bob_cannot_sync_alices_user_scope_rows(lake: Lake) -> None:
    # Given alice's synced user-scope data in a workspace bob can use,
    # when bob points a file source at it (her folder, or around it with a pattern),
    # then connect and test-connection refuse, and none of her rows reach bob's lake.
    bucket, alice = lake.stack.bucket, lake.world.user_source
    attempts = [
        lake_config(lake.folder("alice_user")),
        lake_config(f"s3://{bucket}/org={ACME}/workspace=ws_demo/", f"source={alice}/**/*.parquet"),
        lake_config(f"s3://{bucket}/org={ACME}/", "**/*.parquet"),
        lake_config(f"s3://{bucket}/", f"org={ACME}/**/*.parquet"),
        lake_config(f"{lake.folder('org')}../source={alice}/"),
        lake_config(
            lake.folder("alice_user"),
            credentials={"aws_access_key_id": "AKIAMADEUP", "aws_secret_access_key": "made-up"},
        ),
    ]
    for i, config in enumerate(attempts):
        tested = lake.stack.call("test", body={"source_config": config}, token=token("member"))
        assert refused(tested), (i, tested.body)
        made = connect(lake.stack, "member", "user", {"name": f"steal{i}", **config})
        assert refused(made), (i, made.body)
    # The lake holds the three synced sources' folders and nothing bob made.
    sources = {lake.world.user_source, lake.world.org_source, lake.admin_source}
    folders = {k.split("/")[2] for k in lake.stack.objects(f"org={ACME}/workspace=ws_demo/")}
    assert folders == {f"source={s}" for s in sources}
    bobs = lake.stack.call("list", query={"scope": "user"}, token=token("member"))
    assert bobs.data == []


def test_a_saved_source_reaching_into_private_data_is_refused_at_schema_and_sync(
    lake: Lake,
) -> None:
    # A source saved before this rule existed (written straight to the table) is checked
    # again whenever it is opened.
    from datasources.dal import sources as sources_dal
    from datasources.dal.keys import Tenant
    from datasources.dal.sources import SourceRecord
    from datasources.models.common import Scope

    bob = Tenant(ACME, "ws_demo", Scope.USER, "bob")
    stolen = SourceRecord(
        id="src_" + "b" * 20,
        name="old",
        type="file",
        scope="user",
        connection_config=lake_config(lake.folder("alice_user"))["connection_config"],
        metadata={},
        created_at="2024-01-01T00:00:00.000Z",
        updated_at="2024-01-01T00:00:00.000Z",
        created_by="bob",
    )
    sources_dal.create_sources(bob, [stolen])
    schema = lake.stack.call("schema", query={"source_id": stolen.id}, token=token("member"))
    assert refused(schema), schema.body
    synced = lake.stack.call("sync", body={"source_ids": [stolen.id]}, token=token("member"))
    assert refused(synced), synced.body
    assert lake.stack.objects(f"org={ACME}/workspace=ws_demo/source={stolen.id}/") == []


def test_a_source_loses_its_read_back_when_the_data_it_reads_stops_being_visible(
    lake: Lake,
) -> None:
    # Given bob's source reading the organization's synced data, queued for the worker,
    stack = lake.stack
    made = connect(stack, "member", "user", {"name": "reader", **lake_config(lake.folder("org"))})
    assert made.status_code == 201, made.body
    reader = made.data["connected_sources"][0]["id"]
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    queued = stack.call("sync", body={"source_ids": [reader]}, token=token("member"))
    assert queued.status_code == 202, queued.body
    # when the admin deletes the organization's source,
    deleted = stack.call(
        "cleanup",
        body={"scope": "organization", "source_ids": [lake.world.org_source]},
        token=token("admin"),
    )
    assert deleted.data["deleted_count"] == 1
    # then the worker, schema and a new sync all refuse to read its folder.
    message = stack.receive(1)[0]
    for attempt in (1, 2, 3):
        message["Attributes"]["ApproximateReceiveCount"] = str(attempt)
        failures = stack.deliver(message)["batchItemFailures"]
        # Retried twice; at the last attempt the worker fails the unit and hands the
        # message to the dead-letter queue itself.
        assert bool(failures) == (attempt < 3)
    status = stack.call("status", path={"job_id": queued.data["job_id"]}, token=token("member"))
    assert status.data["status"] == "failed", status.body
    assert "landing bucket" in json.dumps(status.data)
    assert stack.objects(f"org={ACME}/workspace=ws_demo/source={reader}/") == []
    schema = stack.call("schema", query={"source_id": reader}, token=token("member"))
    assert refused(schema), schema.body
    stack.configure(SYNC_TIME_BUDGET_SECONDS=20)
    again = stack.call("sync", body={"source_ids": [reader]}, token=token("member"))
    assert refused(again), again.body


def test_a_viewer_cannot_enumerate_manifests(lake: Lake) -> None:
    # A pattern over a broad prefix once listed every manifest of the organization.
    bucket = lake.stack.bucket
    for url, pattern in (
        (f"s3://{bucket}/org={ACME}/", "**/_manifest.json"),
        (f"s3://{bucket}/org={ACME}/workspace=ws_demo/", "**/_manifest.json"),
        (f"s3://{bucket}/", "org=acme/**/_manifest.json"),
        (f"s3://{bucket}/", "**/_manifest.json"),
        (lake.folder("alice_user"), "**/_manifest.json"),
    ):
        config = lake_config(url, pattern, format="json")
        response = lake.stack.call("test", body={"source_config": config}, token=token("viewer"))
        assert refused(response), (url, pattern, response.body)
    # The organization's own source folder is the viewer's to read: one manifest there.
    config = lake_config(lake.folder("org"), "**/_manifest.json", format="json")
    response = lake.stack.call("test", body={"source_config": config}, token=token("viewer"))
    assert response.status_code == 200 and response.data["details"]["objects"] == 1


def test_made_up_credentials_do_not_lift_the_landing_bucket_confinement(stack: Stack) -> None:
    # Given globex's upload, when an acme member names it with credentials of its own,
    # then the landing bucket's rule still applies; acme's own upload stays readable.
    file_source(stack, GLOBEX, "secret-plans")
    file_source(stack, ACME, "mine")
    made_up = {"aws_access_key_id": "AKIAMADEUP00000000", "aws_secret_access_key": "made-up"}
    for url in (
        f"s3://{stack.bucket}/uploads/{GLOBEX}/secret-plans.csv",
        f"s3://{stack.bucket}/uploads/",
        f"s3://{stack.bucket}/uploads/{ACME}/../{GLOBEX}/secret-plans.csv",
    ):
        config = {"type": "file", "connection_config": {"url": url, "credentials": made_up}}
        tested = stack.call("test", body={"source_config": config}, token=token("member"))
        assert refused(tested), (url, tested.body)
        made = connect(stack, "member", "user", {"name": "theirs", **config})
        assert refused(made), (url, made.body)
    own = {
        "type": "file",
        "connection_config": {
            "url": f"s3://{stack.bucket}/uploads/{ACME}/mine.csv",
            "credentials": made_up,
        },
    }
    assert stack.call("test", body={"source_config": own}, token=token("member")).status_code == 200


def test_an_s3_url_with_keys_before_the_bucket_is_refused(stack: Stack) -> None:
    # `s3://KEY:SECRET@<landing>/...` must neither dodge the landing-bucket comparison
    # nor be stored: it is refused before anything is read or saved.
    file_source(stack, GLOBEX, "plans")
    for netloc in (f"AKIAMADEUP:made-up@{stack.bucket}", f"{stack.bucket}:443"):
        url = f"s3://{netloc}/uploads/{GLOBEX}/plans.csv"
        config = {"type": "file", "connection_config": {"url": url}}
        tested = stack.call("test", body={"source_config": config}, token=token("member"))
        assert tested.status_code == 422, tested.body
        assert "credentials" in tested.body["message"] and "made-up" not in str(tested.body)
        made = connect(stack, "member", "user", {"name": "keys", **config})
        assert made.status_code == 422, made.body

"""Tenancy matrix (OWASP API1, BOLA): every endpoint, two organizations, two users in one
organization, each role, both scopes, through the real handlers.

The promise: nobody sees, syncs, reads the schema of or deletes another user's
`user`-scope source or anything of another organization; the answer is the one an id
that never existed gets (404, same code, same message but for the id); a viewer never
writes; only an admin writes in `organization` scope.
"""

from __future__ import annotations

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

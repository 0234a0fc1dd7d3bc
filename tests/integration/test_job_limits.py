"""A sync's source count is bounded by what one job-creating transaction can hold."""

from __future__ import annotations

import pytest

from tests.conftest import Stack


def test_a_job_of_the_most_sources_a_sync_covers_fits_in_its_transaction(stack: Stack) -> None:
    from datasources.dal import jobs as jobs_dal
    from datasources.dal.jobs import JobRecord
    from datasources.dal.keys import Tenant, source_sk
    from datasources.dal.table import table
    from datasources.errors import StorageError
    from datasources.models.common import Scope
    from datasources.sync.engine import MAX_SOURCES_PER_JOB

    tenant = Tenant("acme", "ws_job_limits", Scope.USER, "user-1")
    ids = [f"src_{i:020x}" for i in range(MAX_SOURCES_PER_JOB + 1)]
    for source_id in ids:
        table().put_item(Item={"pk": tenant.pk, "sk": source_sk(source_id)})

    def job(job_id: str, source_ids: list[str]) -> JobRecord:
        return JobRecord(
            job_id=job_id,
            status="queued",
            source_ids=source_ids,
            options={},
            created_at="2026-12-02T10:00:00.000Z",
            created_by="user-1",
        )

    at_the_limit = job("job_000000000000000000a1", ids[:MAX_SOURCES_PER_JOB])
    jobs_dal.create_job(tenant, at_the_limit, lease_seconds=60, expires_at=0)
    assert jobs_dal.get_job(tenant, at_the_limit.job_id) is not None

    # One source more does not fit in DynamoDB's transaction (moto enforces its 100 items).
    over = job("job_000000000000000000a2", ids[-1:] + ids[:MAX_SOURCES_PER_JOB])
    with pytest.raises(StorageError):
        jobs_dal.create_job(tenant, over, lease_seconds=60, expires_at=0)

"""POST /schedule and GET /schedules: per-source schedules and upload triggers."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import unquote, urlsplit

from datasources.auth import Principal
from datasources.config import get_settings
from datasources.dal import schedules as schedules_dal
from datasources.dal import sources as sources_dal
from datasources.dal.keys import tenant_for
from datasources.dal.schedules import ScheduleChange
from datasources.dal.sources import SourceRecord
from datasources.errors import SourceNotFound, ValidationFailed
from datasources.ids import now_iso
from datasources.models.responses import SchedulesData, ScheduleView
from datasources.models.schedule_expression import (
    ON_UPLOAD,
    is_timed,
    next_run,
    parse_expression,
)
from datasources.models.schedules import ScheduleRequest, SchedulesQuery


def schedule_view(source: SourceRecord, now: dt.datetime | None = None) -> ScheduleView | None:
    """A source's schedule as the API shows it, or None when it has none."""
    config = source.schedule
    if not config:
        return None
    next_run_at = None
    if config["schedule"] != ON_UPLOAD and config["enabled"] and not source.schedule_paused:
        anchor = _parse_time(config["updated_at"])
        fire = next_run(
            parse_expression(config["schedule"]),
            config["timezone"],
            now or dt.datetime.now(dt.UTC),
            anchor=anchor,
        )
        next_run_at = _format_time(fire) if fire else None
    return ScheduleView(
        source_id=source.id,
        schedule=config["schedule"],
        timezone=config["timezone"],
        sync_options=config["sync_options"],
        enabled=config["enabled"],
        max_consecutive_failures=config["max_consecutive_failures"],
        next_run_at=next_run_at,
        last_run=source.schedule_last_run,
        consecutive_failures=source.schedule_failures,
        paused_reason=source.schedule_paused,
        updated_at=config["updated_at"],
    )


def set_schedules(
    principal: Principal, workspace_id: str, request: ScheduleRequest
) -> SchedulesData:
    """Set (or with `schedule: null` remove) the schedule of every listed source, or none.

    Scheduler is changed first, one schedule per source, and put back as it was if a
    later step fails; the DynamoDB transaction that records every source's schedule
    comes last. So a request either takes effect for all its sources or for none.
    """
    from datasources.aws import scheduler

    principal.require_write(request.scope)
    tenant = tenant_for(principal, workspace_id, request.scope)
    found = sources_dal.get_sources(tenant, request.source_ids)
    missing = [sid for sid in dict.fromkeys(request.source_ids) if sid not in found]
    if missing:
        raise SourceNotFound(
            f"data source not found: {', '.join(missing)}", details={"not_found": missing}
        )
    sources = [found[sid] for sid in dict.fromkeys(request.source_ids)]
    config: dict[str, Any] | None = None
    if request.schedule is not None:
        config = {
            "schedule": request.schedule,
            "timezone": request.timezone,
            "sync_options": request.sync_options.model_dump(),
            "enabled": request.enabled,
            "max_consecutive_failures": request.max_consecutive_failures,
            "updated_at": now_iso(),
        }
    changes = []
    for source in sources:
        index = None
        if config is not None and config["schedule"] == ON_UPLOAD:
            index = _upload_index(source, tenant.organization)
        changes.append(
            ScheduleChange(
                source_id=source.id,
                config=config,
                upload_index=index,
                had_upload_index=_is_upload(source.schedule),
            )
        )

    done: list[SourceRecord] = []
    try:
        for source in sources:
            if config is not None and config["schedule"] != ON_UPLOAD:
                scheduler.put_schedule(tenant.pk, source.id, config)
            elif is_timed(source.schedule):
                scheduler.delete_schedule(source.id)
            done.append(source)
        schedules_dal.set_schedules(tenant, changes)
    except Exception:
        for source in done:
            _restore(tenant, source)
        raise
    updated = sources_dal.get_sources(tenant, [s.id for s in sources])
    views = [schedule_view(updated[s.id]) for s in sources if s.id in updated]
    return SchedulesData(schedules=[v for v in views if v is not None])


def list_schedules(principal: Principal, workspace_id: str, query: SchedulesQuery) -> SchedulesData:
    """Every schedule of the caller's sources in a scope."""
    tenant = tenant_for(principal, workspace_id, query.scope)
    now = dt.datetime.now(dt.UTC)
    views = (schedule_view(s, now) for s in sources_dal.iter_all_sources(tenant))
    return SchedulesData(schedules=[v for v in views if v is not None])


def _restore(tenant: Any, source: SourceRecord) -> None:
    """Put a source's Scheduler schedule back as its item still describes it."""
    from datasources.aws import scheduler

    try:
        if is_timed(source.schedule):
            assert source.schedule is not None
            scheduler.put_schedule(tenant.pk, source.id, source.schedule)
        else:
            scheduler.delete_schedule(source.id)
    except Exception:  # noqa: BLE001 - the original error is the one to report
        from datasources.observability import logger

        logger.exception("could not restore a schedule", extra={"source_id": source.id})


def _upload_index(source: SourceRecord, organization: str) -> dict[str, Any]:
    """`on_upload` is for file sources under uploads/{organization}/ of the landing bucket."""
    bucket = get_settings().bucket_name
    config = source.connection_config
    url = str(config.get("url") or "") if source.type == "file" else ""
    parts = urlsplit(url)
    key = unquote(parts.path.lstrip("/"))
    prefix = f"uploads/{organization}/"
    if (
        source.type != "file"
        or parts.scheme != "s3"
        or parts.netloc != bucket
        or config.get("credentials")
        or not key.startswith(prefix)
        or ".." in key.split("/")
    ):
        raise ValidationFailed(
            f"on_upload needs a file source under s3://{bucket}/{prefix} "
            f"(source {source.id} is not one)",
            details={
                "errors": [
                    {
                        "loc": "schedule",
                        "msg": "on_upload not valid for this source",
                        "type": "value_error",
                    }
                ],
                "source_id": source.id,
            },
        )
    return {"source_id": source.id, "url": url, "pattern": config.get("pattern") or None}


def _is_upload(config: dict[str, Any] | None) -> bool:
    return bool(config) and config is not None and config.get("schedule") == ON_UPLOAD


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

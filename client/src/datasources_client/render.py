"""What the command line prints: tables (rich), JSON, and sync progress.

Progress on a terminal is a live display redrawn in place; anywhere else (a pipe, a CI
log) it is one plain line per change, so logs stay readable.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from datasources_client.models import Preview, Schedule, Schema, Source, StreamProgress, SyncJob


def make_console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        # A pipe has no width: keep lines whole rather than wrapping them at 80.
        console = Console(stderr=stderr, highlight=False, width=200, no_color=True)
    return console


def print_json(console: Console, data: Any) -> None:
    # Plain print: no markup, no highlighting, no wrapping of long strings.
    console.file.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    console.file.flush()


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def sources_table(sources: list[Source]) -> Table:
    table = Table("id", "name", "type", "scope", "created", "last sync")
    for s in sources:
        last = s.last_sync or {}
        last_text = f"{last.get('status', '')} {last.get('finished_at') or ''}".strip()
        table.add_row(s.id, s.name, s.type, s.scope, s.created_at, last_text or "-")
    return table


def schema_tables(schema: Schema) -> list[Table]:
    tables = []
    for t in schema.tables:
        title = f"{t.name} ({t.kind}"
        if t.row_count_estimate is not None:
            title += f", ~{t.row_count_estimate:,} rows"
        title += f", cursor: {t.cursor_field or '-'})"
        table = Table("column", "type", "native type", "nullable", "key", title=title)
        for c in t.columns:
            key = "pk" if c.name in t.primary_key else ""
            table.add_row(c.name, c.type, c.native_type, "yes" if c.nullable else "no", key)
        tables.append(table)
    return tables


def preview_table(preview: Preview) -> Table:
    table = Table(*[f"{c.name}\n{c.type}" for c in preview.columns], title=preview.stream)
    for row in preview.rows:
        cells = []
        for c in preview.columns:
            value = row.get(c.name)
            cells.append(Text("null", style="dim") if value is None else Text(str(value)))
        table.add_row(*cells)
    return table


def streams_table(job: SyncJob) -> Table:
    table = Table("source", "stream", "status", "records", "parts", "bytes")
    # The output location is what people copy: wrapped, never cut with an ellipsis.
    table.add_column("output", overflow="fold")
    for s in job.streams:
        table.add_row(
            s.source_id,
            s.stream,
            s.status,
            f"{s.records:,}",
            str(s.parts),
            human_bytes(s.bytes),
            s.output,
        )
    return table


def schedules_table(schedules: list[Schedule]) -> Table:
    table = Table("source", "schedule", "timezone", "enabled", "next run", "last run", "paused")
    for s in schedules:
        last = (s.last_run or {}).get("status", "-")
        table.add_row(
            s.source_id,
            s.schedule or "(none)",
            s.timezone,
            "yes" if s.enabled else "no",
            s.next_run_at or "-",
            str(last),
            s.paused_reason or "-",
        )
    return table


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class ProgressView:
    """Shows a job while it runs: records so far, records/s, each stream, elapsed time."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self._first: tuple[float, int] | None = None
        self._last_line = ""

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=4, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def update(self, job: SyncJob) -> None:
        now = time.time()
        if self._first is None:
            self._first = (now, job.records_processed)
        started = _parse_time(job.raw.get("started_at")) or _parse_time(job.raw.get("created_at"))
        elapsed = max(0.0, now - (started or self._first[0]))
        since, base = self._first
        # The rate over what this watch has seen, else over the job's life so far.
        rate = (
            (job.records_processed - base) / (now - since)
            if now - since >= 1 and job.records_processed > base
            else (job.records_processed / elapsed if elapsed >= 1 else 0.0)
        )
        if self.live is not None:
            self.live.update(self._renderable(job, rate, elapsed))
            return
        streams = " ".join(f"{s.stream}={s.status}:{s.records}" for s in job.streams)
        line = f"{job.status} records={job.records_processed} streams: {streams}"
        if line != self._last_line:  # a plain line only when something changed
            self._last_line = line
            self.console.file.write(
                f"[{elapsed:7.1f}s] {job.job_id} {job.status} "
                f"records={job.records_processed} rate={rate:.0f}/s streams: {streams}\n"
            )
            self.console.file.flush()

    @staticmethod
    def _renderable(job: SyncJob, rate: float, elapsed: float) -> Group:
        header = Text.assemble(
            (f"{job.job_id} ", "bold"),
            (job.status, "cyan"),
            f"  {job.records_processed:,} records  {rate:,.0f} records/s  ",
            f"elapsed {int(elapsed) // 60}:{int(elapsed) % 60:02d}",
        )
        table = Table("stream", "status", "records", box=None)
        for s in job.streams:
            table.add_row(s.stream, _status_text(s), f"{s.records:,}")
        return Group(header, table)


def _status_text(stream: StreamProgress) -> Text:
    style = {"completed": "green", "failed": "red", "cancelled": "yellow"}.get(stream.status, "")
    return Text(stream.status, style=style)

"""`datasources`: the Data Sources API on the command line, over `Client`.

Exit codes (also in `datasources --help`):
  0  success; for a sync or job status, only when the job is completed
  1  the API answered with an error, or could not be reached
  2  usage error: bad options, a missing setting, an unusable source file
  3  the sync job failed
  4  the sync job was cancelled
  5  the sync job was still running when the command returned (no --wait/--follow)
  130  interrupted (Ctrl-C): watching stopped, the sync goes on
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from datasources_client import render
from datasources_client.client import Client
from datasources_client.errors import (
    ApiError,
    BadRequest,
    ClientError,
    ConfigurationError,
    ValidationFailed,
)
from datasources_client.models import Schedule, SyncJob
from datasources_client.sources_file import (
    SourceFileError,
    describe_validation_errors,
    load_source_config,
    load_sources,
)

EXIT_OK = 0
EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_FAILED = 3
EXIT_CANCELLED = 4
EXIT_RUNNING = 5
EXIT_INTERRUPTED = 130
JOB_EXIT = {"completed": EXIT_OK, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}
WORKSPACE_ENV = "DATASOURCES_WORKSPACE"


class Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise Exit(code)


class Options:
    """The options every command takes, and what they imply."""

    def __init__(self, workspace: str | None, scope: str, output: str) -> None:
        if not workspace:
            fail(f"no workspace: pass -w/--workspace or set {WORKSPACE_ENV}", EXIT_USAGE)
        self.workspace = workspace
        self.scope = scope
        self.output = output
        self.json = output == "json"
        self.out = render.make_console()
        # With --output json stdout holds only the API's data; progress goes to stderr.
        self.progress = render.make_console(stderr=self.json)

    def client(self) -> Client:
        try:
            return Client()
        except ConfigurationError as exc:
            fail(str(exc), EXIT_USAGE)


def common(command: Callable[..., Any]) -> Callable[..., Any]:
    """-w/--workspace, --scope and -o/--output on a command; API errors to exit codes."""

    @click.option(
        "-w",
        "--workspace",
        envvar=WORKSPACE_ENV,
        metavar="WS",
        help=f"Workspace id (default: ${WORKSPACE_ENV}).",
    )
    @click.option(
        "--scope",
        type=click.Choice(["user", "organization"]),
        default="user",
        show_default=True,
        help="Sources of the caller (user) or of the whole organization.",
    )
    @click.option(
        "-o",
        "--output",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="json prints exactly the API's data (pipe it into jq).",
    )
    @functools.wraps(command)
    def run(workspace: str | None, scope: str, output: str, **kwargs: Any) -> None:
        options = Options(workspace, scope, output)
        try:
            command(options, **kwargs)
        except ApiError as exc:
            report_api_error(exc)
        except ClientError as exc:
            fail(str(exc), EXIT_API_ERROR)

    return run


def report_api_error(exc: ApiError, extra_lines: list[str] | None = None) -> NoReturn:
    message = f"{exc.message} (HTTP {exc.status}, {exc.code}"
    if isinstance(exc, BadRequest) and exc.stage:
        message += f", stage {exc.stage}"
    if exc.request_id:
        message += f", request id {exc.request_id}"
    click.echo(f"error: {message})", err=True)
    for line in extra_lines or []:
        click.echo(f"  {line}", err=True)
    raise Exit(EXIT_API_ERROR)


@click.group(
    epilog="Exit codes: 0 success (for syncs: completed), 1 API error, 2 usage error, "
    "3 sync failed, 4 sync cancelled, 5 sync still running, 130 interrupted.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="datasources-client")
def cli() -> None:
    """Connect, inspect and sync data sources of the Data Sources API.

    Set DATASOURCES_URL (ends in /api/v1), DATASOURCES_TOKEN and, optionally,
    DATASOURCES_WORKSPACE.
    """


# ---------------------------------------------------------------------- sources


@cli.command()
@common
@click.option(
    "-f",
    "--file",
    "path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML or JSON: `sources:` list, a list, or one source. Secrets as ${ENV_VAR} "
    "or ${file:PATH}.",
)
def connect(options: Options, path: Path) -> None:
    """Connect the sources of a file (all or none)."""
    sources = _load(lambda: load_sources(path))
    try:
        connected = options.client().connect(options.workspace, sources, scope=options.scope)
    except ValidationFailed as exc:
        report_api_error(exc, describe_validation_errors(path, sources, exc.errors, root="sources"))
    if options.json:
        render.print_json(options.out, {"connected_sources": [s.raw for s in connected]})
    else:
        options.out.print(render.sources_table(connected))


@cli.command(name="list")
@common
@click.option("--type", "source_type", type=click.Choice(["database", "api", "file"]))
@click.option("--page-size", default=50, show_default=True, type=click.IntRange(1, 200))
def list_command(options: Options, source_type: str | None, page_size: int) -> None:
    """List every source of the workspace and scope (all pages)."""
    sources = list(
        options.client().list_sources(
            options.workspace, scope=options.scope, type=source_type, page_size=page_size
        )
    )
    if options.json:
        render.print_json(options.out, [s.raw for s in sources])
    else:
        options.out.print(render.sources_table(sources))


@cli.command(name="test")
@common
@click.option(
    "-f", "--file", "path", required=True, type=click.Path(path_type=Path, dir_okay=False)
)
@click.option("--name", help="Which source of the file, when it holds several.")
def test_command(options: Options, path: Path, name: str | None) -> None:
    """Test a source's connection before connecting it."""
    config = _load(lambda: load_source_config(path, name))
    try:
        result = options.client().test_connection(options.workspace, config)
    except ValidationFailed as exc:
        report_api_error(
            exc, describe_validation_errors(path, [config], exc.errors, root="source_config")
        )
    if options.json:
        render.print_json(options.out, result.raw)
        return
    options.out.print(f"reachable in {result.latency_ms:.0f} ms")
    for key, value in result.details.items():
        options.out.print(f"  {key}: {value}")


@cli.command()
@common
@click.argument("source_id")
def schema(options: Options, source_id: str) -> None:
    """Show a source's streams and their columns."""
    result = options.client().schema(options.workspace, source_id, scope=options.scope)
    if options.json:
        render.print_json(options.out, result.raw)
        return
    for table in render.schema_tables(result):
        options.out.print(table)


@cli.command()
@common
@click.argument("source_id")
@click.argument("stream")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100))
def preview(options: Options, source_id: str, stream: str, limit: int) -> None:
    """Show the first rows of one stream, read from the source now."""
    result = options.client().preview(
        options.workspace, source_id, stream, limit=limit, scope=options.scope
    )
    if options.json:
        render.print_json(options.out, result.raw)
        return
    options.out.print(render.preview_table(result))
    note = " (cut short by the response size cap)" if result.truncated else ""
    options.out.print(f"{len(result.rows)} row(s){note}")


@cli.command()
@common
@click.argument("source_ids", nargs=-1, metavar="[SOURCE_ID]...")
@click.option("--all", "all_sources", is_flag=True, help="Delete every source of the scope.")
def cleanup(options: Options, source_ids: tuple[str, ...], all_sources: bool) -> None:
    """Delete sources and cancel their running syncs (their synced data is kept)."""
    if not source_ids and not all_sources:
        fail("name the sources to delete, or pass --all", EXIT_USAGE)
    if source_ids and all_sources:
        fail("pass source ids or --all, not both", EXIT_USAGE)
    result = options.client().cleanup(
        options.workspace, list(source_ids) or None, scope=options.scope
    )
    if options.json:
        render.print_json(options.out, result.raw)
        return
    options.out.print(f"deleted {result.deleted_count}: {' '.join(result.deleted_source_ids)}")
    if result.not_found:
        options.out.print(f"not found: {' '.join(result.not_found)}")
    if result.cancelled_job_ids:
        options.out.print(f"cancelled syncs: {' '.join(result.cancelled_job_ids)}")


# ---------------------------------------------------------------------- syncs


@cli.command()
@common
@click.argument("source_ids", nargs=-1, metavar="[SOURCE_ID]...")
@click.option("--wait", is_flag=True, help="Watch the sync until it ends.")
@click.option("--full-refresh", is_flag=True, help="Read everything, not only what is new.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), help="Records per part.")
@click.option("--stream", "streams", multiple=True, help="Only this stream (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["parquet", "jsonl"]))
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls.")
def sync(
    options: Options,
    source_ids: tuple[str, ...],
    wait: bool,
    full_refresh: bool,
    batch_size: int | None,
    streams: tuple[str, ...],
    fmt: str | None,
    interval: float,
) -> None:
    """Start a sync of some sources (none named: all of the scope)."""
    sync_options: dict[str, Any] = {}
    if full_refresh:
        sync_options["incremental"] = False
    if batch_size:
        sync_options["batch_size"] = batch_size
    if streams:
        sync_options["streams"] = list(streams)
    if fmt:
        sync_options["format"] = fmt
    client = options.client()
    job = client.sync(
        options.workspace, list(source_ids) or None, sync_options=sync_options, scope=options.scope
    )
    if wait and not job.finished and job.job_id:
        job = watch(options, client, job, interval)
    finish(options, job)


@cli.command()
@common
@click.argument("job_id")
@click.option("--follow", is_flag=True, help="Watch the job until it ends.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls.")
def status(options: Options, job_id: str, follow: bool, interval: float) -> None:
    """Show a sync job's progress."""
    client = options.client()
    job = client.sync_status(options.workspace, job_id, scope=options.scope)
    if follow and not job.finished:
        job = watch(options, client, job, interval)
    finish(options, job)


def watch(options: Options, client: Client, job: SyncJob, interval: float) -> SyncJob:
    """Follow a job with a progress display; Ctrl-C stops watching, not the sync."""
    assert job.job_id is not None
    job_id = job.job_id
    try:
        with render.ProgressView(options.progress) as view:
            view.update(job)
            return client.wait_for_sync(
                options.workspace,
                job_id,
                scope=options.scope,
                interval=interval,
                on_update=view.update,
            )
    except KeyboardInterrupt:
        scope = "" if options.scope == "user" else f" --scope {options.scope}"
        click.echo(
            f"\nStopped watching. Sync {job_id} goes on; follow it again with:\n"
            f"  datasources status {job_id} -w {options.workspace}{scope} --follow",
            err=True,
        )
        raise Exit(EXIT_INTERRUPTED) from None


def finish(options: Options, job: SyncJob) -> NoReturn:
    """Print the job (the streams table, or its data) and exit with its status's code."""
    if options.json:
        render.print_json(options.out, job.raw)
    else:
        if job.streams:
            options.out.print(render.streams_table(job))
        line = f"sync {job.job_id}: {job.status}, {job.records_processed:,} records"
        if job.error:
            line += f" — {job.error}"
        options.out.print(line)
        if not job.finished:
            options.out.print(
                f"follow it: datasources status {job.job_id} -w {options.workspace} --follow"
            )
    raise Exit(JOB_EXIT.get(job.status, EXIT_RUNNING))


# ---------------------------------------------------------------------- schedules


@cli.group()
def schedule() -> None:
    """Run syncs by themselves: on a rate, a cron expression, or on upload."""


@schedule.command(name="set")
@common
@click.argument("source_ids", nargs=-1, required=True, metavar="SOURCE_ID...")
@click.option(
    "--every",
    "expression",
    required=True,
    help='"rate(15 minutes)", "cron(0 3 * * ? *)" or "on_upload".',
)
@click.option("--timezone", default="UTC", show_default=True, help="IANA name.")
@click.option("--disabled", is_flag=True, help="Keep the schedule but do not run it.")
@click.option("--full-refresh", is_flag=True)
@click.option("--batch-size", type=click.IntRange(1, 100_000))
def schedule_set(
    options: Options,
    source_ids: tuple[str, ...],
    expression: str,
    timezone: str,
    disabled: bool,
    full_refresh: bool,
    batch_size: int | None,
) -> None:
    """Set the schedule of sources."""
    sync_options: dict[str, Any] = {}
    if full_refresh:
        sync_options["incremental"] = False
    if batch_size:
        sync_options["batch_size"] = batch_size
    schedules = options.client().set_schedule(
        options.workspace,
        list(source_ids),
        expression,
        timezone=timezone,
        sync_options=sync_options or None,
        enabled=not disabled,
        scope=options.scope,
    )
    _print_schedules(options, schedules)


@schedule.command(name="remove")
@common
@click.argument("source_ids", nargs=-1, required=True, metavar="SOURCE_ID...")
def schedule_remove(options: Options, source_ids: tuple[str, ...]) -> None:
    """Remove the schedule of sources."""
    schedules = options.client().set_schedule(
        options.workspace, list(source_ids), None, scope=options.scope
    )
    _print_schedules(options, schedules)


@schedule.command(name="list")
@common
def schedule_list(options: Options) -> None:
    """List the schedules of the workspace and scope."""
    _print_schedules(
        options, options.client().list_schedules(options.workspace, scope=options.scope)
    )


def _print_schedules(options: Options, schedules: list[Schedule]) -> None:
    if options.json:
        render.print_json(options.out, {"schedules": [s.raw for s in schedules]})
        return
    options.out.print(render.schedules_table(schedules))


# ---------------------------------------------------------------------- entry point


def _load(loader: Callable[[], Any]) -> Any:
    try:
        return loader()
    except SourceFileError as exc:
        fail(str(exc), EXIT_USAGE)


def main(argv: list[str] | None = None) -> None:
    """The console script: every outcome becomes one of the documented exit codes."""
    try:
        cli.main(args=argv, prog_name="datasources", standalone_mode=False)
    except Exit as exc:
        sys.exit(exc.code)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE if isinstance(exc, click.UsageError) else EXIT_API_ERROR)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_OK)


if __name__ == "__main__":
    main()

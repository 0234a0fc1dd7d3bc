"""The one table `make bench` prints: every number beside its reference, and the verdicts."""

from __future__ import annotations

from typing import Any

HEADERS = ("section", "subject", "measured", "reference", "ratio", "target", "verdict")


def _judged(targets: dict[str, dict[str, Any]], id_: str) -> tuple[str, str]:
    """(target, verdict) cells of a row: from bench.run.verdicts, or "-" for no target."""
    found = targets.get(id_)
    if found is None:
        return "-", "-"
    return found["bound"], "met" if found["met"] else "NOT MET"


def _rate(leg: dict[str, Any]) -> str:
    return f"{leg['rows_per_s']:,} rows/s, {leg['mb_per_s']} MB/s ({leg['seconds']:.2f} s)"


def rows_of(results: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    targets = {t["id"]: t for t in results["targets"]}
    if "cold_start" in results:
        rows += _startup_rows(results, targets)
    rows += _throughput_rows(results, targets)
    if "memory" in results:
        rows += _memory_rows(results, targets)
    return rows


def _startup_rows(
    results: dict[str, Any], targets: dict[str, dict[str, Any]]
) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    cold = results["cold_start"]
    base = cold["baseline"]
    for name, data in cold.items():
        if name == "baseline":
            continue
        rows.append(
            (
                "cold start (median)",
                f"{name} -> {data['status']}",
                f"{data['cold_ms_median']:.0f} ms (import {data['import_ms_median']:.0f} + "
                f"1st call {data['first_call_ms_median']:.0f})",
                f"baseline {base['cold_ms_median']:.0f} ms",
                f"{data['ratio_to_baseline']:.2f}x",
                *_judged(targets, f"cold:{name}"),
            )
        )
    rows.append(
        (
            "cold start (median)",
            "baseline (boto3+json)",
            f"{base['cold_ms_median']:.0f} ms (import {base['import_ms_median']:.0f} + "
            f"1st call {base['first_call_ms_median']:.0f})",
            "-",
            "1.00x",
            "-",
            "-",
        )
    )
    imports = results["import_time"]
    base_import = imports["baseline"]["total_ms"]
    for name, data in imports.items():
        if name == "baseline":
            continue
        top = ", ".join(f"{pkg} {ms:.0f}" for pkg, ms in list(data["by_package_ms"].items())[:3])
        rows.append(
            (
                "import time (-X importtime, median of 3)",
                name,
                f"{data['total_ms']:.0f} ms; top: {top}",
                f"baseline {base_import:.0f} ms",
                f"{data['total_ms'] / base_import:.2f}x",
                "-",
                "-",
            )
        )
    warm = results["warm"]
    base_warm = warm["baseline"]
    for name, data in warm.items():
        rows.append(
            (
                f"warm latency ({data['calls']} calls)",
                f"{name} -> {'/'.join(data['statuses'])}",
                f"p50 {data['p50_ms']:.2f} ms, p99 {data['p99_ms']:.2f} ms",
                f"baseline p50 {base_warm['p50_ms']:.2f} ms" if name != "baseline" else "-",
                f"{data['p50_ratio_to_baseline']:.2f}x",
                "-",
                "-",
            )
        )
    return rows


def _throughput_rows(
    results: dict[str, Any], targets: dict[str, dict[str, Any]]
) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for table, data in results["throughput"].items():
        legs = data["legs"]
        section = f"sync {table} ({data['rows']:,} rows x {data['columns']} cols)"
        share = data["sync_share_of_floor"]
        vs_dlt = data["sync_ratio_to_dlt_connectorx"]
        rows.append(
            (
                section,
                "product sync -> S3 parquet",
                _rate(legs["sync"]),
                f"{data['floor']} " + _rate(legs["floor"]),
                f"{share:.2f}x",
                *_judged(targets, f"floor:{table}"),
            )
        )
        rows.append(
            (
                section,
                "product sync -> S3 parquet",
                _rate(legs["sync"]),
                "dlt connectorx " + _rate(legs["dlt_connectorx"]),
                f"{vs_dlt:.2f}x",
                *_judged(targets, f"dlt:{table}"),
            )
        )
        for leg in ("dlt_pyarrow", "dlt_sqlalchemy"):
            if leg not in legs:
                continue
            read = legs[leg]["rows"]
            part = f" ({read:,} rows)" if read != data["rows"] else ""
            rows.append(
                (
                    section,
                    "product sync -> S3 parquet",
                    _rate(legs["sync"]),
                    f"dlt {leg.removeprefix('dlt_')}{part} " + _rate(legs[leg]),
                    f"{data[f'sync_ratio_to_{leg}']:.2f}x",
                    "-",
                    "-",
                )
            )
        rows.append(
            (
                section,
                "peak RSS: sync / dlt connectorx",
                f"{legs['sync']['peak_rss_mb']:.0f} MiB",
                f"{legs['dlt_connectorx']['peak_rss_mb']:.0f} MiB",
                f"{legs['sync']['peak_rss_mb'] / legs['dlt_connectorx']['peak_rss_mb']:.2f}x",
                "-",
                "-",
            )
        )
    return rows


def _memory_rows(
    results: dict[str, Any], targets: dict[str, dict[str, Any]]
) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    memory = results["memory"]
    rows.append(
        (
            f"memory (batch {memory['batch_size']:,})",
            "sync peak RSS 100k -> 1M rows",
            f"{memory['peak_rss_mb_1m']:.0f} MiB at 1M",
            f"{memory['peak_rss_mb_100k']:.0f} MiB at 100k",
            f"+{memory['growth']:.1%}",
            *_judged(targets, "memory"),
        )
    )
    return rows


def render_table(results: dict[str, Any]) -> str:
    rows = [HEADERS, *rows_of(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    line = "+".join("-" * (w + 2) for w in widths)

    def fmt(row: tuple[str, ...]) -> str:
        return "|".join(f" {cell:<{widths[i]}} " for i, cell in enumerate(row))

    out = [fmt(rows[0]), line]
    previous = rows[1][0] if len(rows) > 1 else ""
    for row in rows[1:]:
        if row[0] != previous:
            out.append(line)
            previous = row[0]
        out.append(fmt(row))
    met = sum(1 for t in results["targets"] if t["met"])
    meta = results["meta"]
    out.append(line)
    out.append(
        f"targets met: {met}/{len(results['targets'])}  |  throughput: best of {meta['reps']}, "
        f"MB = the table's text size at its floor  |  batch size {meta['batch_size']:,}  |  "
        f"run took {meta['duration_s']:.0f} s  |  load avg (1 min) "
        f"{meta['machine']['load_avg_at_start'][0]:.1f} at start, {meta['load_avg_at_end'][0]:.1f} at end"
    )
    return "\n".join(out)

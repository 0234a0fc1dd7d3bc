"""Read `python -X importtime` output: which packages a handler's import spends its time in."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

MARKER = "@@BENCH-IMPORT-START"
PREFIX = "import time:"


@dataclass
class ImportLine:
    self_us: int
    cumulative_us: int
    module: str
    depth: int


def parse(stderr: str) -> list[ImportLine]:
    """The import lines after the marker, i.e. what `import app` itself imported."""
    lines = stderr.splitlines()
    start = lines.index(MARKER) + 1 if MARKER in lines else 0
    parsed: list[ImportLine] = []
    for line in lines[start:]:
        if not line.startswith(PREFIX):
            continue
        try:
            self_us, cumulative_us, name = line[len(PREFIX) :].split("|", 2)
            # One space after the bar, then two per nesting level.
            depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
            parsed.append(ImportLine(int(self_us), int(cumulative_us), name.strip(), depth))
        except ValueError:
            continue  # the header line ("self [us] | cumulative | imported package")
    return parsed


def summarize(lines: list[ImportLine], top: int = 8) -> dict[str, object]:
    """Total, self time by top-level package, and the slowest single modules.

    `app` (the handler module) counts its own module-level code: the baseline creates
    its boto3 client there.
    """
    by_package: dict[str, int] = defaultdict(int)
    for item in lines:
        by_package[item.module.split(".", 1)[0]] += item.self_us
    packages = sorted(by_package.items(), key=lambda kv: kv[1], reverse=True)
    modules = sorted(lines, key=lambda item: item.self_us, reverse=True)
    # The handler module itself is the one depth-0 line; what it imports sits one below.
    root_depth = 1 if any(item.module == "app" and item.depth == 0 for item in lines) else 0
    direct = [item for item in lines if item.depth == root_depth]
    return {
        "total_ms": round(sum(item.self_us for item in lines) / 1000, 1),
        "modules_imported": len(lines),
        "by_package_ms": {name: round(us / 1000, 1) for name, us in packages[:top]},
        "slowest_modules_ms": {
            item.module: round(item.self_us / 1000, 1) for item in modules[:top]
        },
        # What `app` imports directly, with everything under each (the usual entry points).
        "direct_imports_ms": {
            item.module: round(item.cumulative_us / 1000, 1)
            for item in sorted(direct, key=lambda item: item.cumulative_us, reverse=True)[:top]
        },
    }

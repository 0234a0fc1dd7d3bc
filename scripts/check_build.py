"""Check a `sam build` output against Lambda's limits before anything is deployed.

    python scripts/check_build.py .aws-sam/build

Fails (exit 1) when
- a function's code plus all its layers unzip to 250 MB (262,144,000 bytes) or more,
  Lambda's hard limit, which a deploy would only report at the very end;
- a compiled file (ELF: `*.so`, bundled libraries) is not for aarch64: the functions
  run on arm64, and an x86_64 wheel that slipped in would fail at import time;
- an extension module is tagged for another CPython than the runtime's (3.13).

Prints one line per function with its size and headroom. Needs only PyYAML (to read
the built template); ELF headers are read directly, no `file` command.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Literal

LAMBDA_UNZIPPED_LIMIT = 262_144_000
EM_AARCH64 = 183
ELF_MAGIC = b"\x7fELF"
RUNTIME_TAG = "cpython-313"
MB = 1024 * 1024


def tree_size(root: Path) -> int:
    """Bytes of all regular files under `root`, as they would unzip (links not followed)."""
    return sum(
        path.lstat().st_size for path in root.rglob("*") if path.is_file() and not path.is_symlink()
    )


def elf_machine(path: Path) -> int | None:
    """The ELF e_machine of `path`, or None when it is not an ELF file."""
    with path.open("rb") as handle:
        header = handle.read(20)
    if len(header) < 20 or not header.startswith(ELF_MAGIC):
        return None
    # EI_DATA (byte 5): 1 = little endian, 2 = big endian; e_machine is at offset 18.
    byteorder: Literal["little", "big"] = "little" if header[5] == 1 else "big"
    return int.from_bytes(header[18:20], byteorder)


def wrong_binaries(root: Path) -> list[str]:
    """Compiled files under `root` that would not load on arm64 Lambda with Python 3.13."""
    problems = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        machine = elf_machine(path)
        if machine is not None and machine != EM_AARCH64:
            problems.append(f"{path}: ELF machine {machine}, not aarch64 ({EM_AARCH64})")
        match = re.search(r"\.(cpython-\d+)[^/]*\.so$", path.name)
        if match and match.group(1) != RUNTIME_TAG:
            problems.append(f"{path}: built for {match.group(1)}, the runtime is {RUNTIME_TAG}")
    return problems


def _load_yaml(path: Path) -> dict[str, Any]:
    # The built template is written in long form (Ref, Fn::GetAtt), which plain YAML reads.
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise SystemExit(f"{path} is not a template")
    return data


def layer_ids(value: Any) -> list[str]:
    """Logical ids of the layers in a `Layers` list (`Ref: X` items)."""
    return [item["Ref"] for item in value or [] if isinstance(item, dict) and "Ref" in item]


def check(build_dir: Path) -> int:
    template = _load_yaml(build_dir / "template.yaml")
    resources = template["Resources"]
    global_layers = layer_ids(((template.get("Globals") or {}).get("Function") or {}).get("Layers"))

    layer_dirs: dict[str, Path] = {}
    for lid, spec in resources.items():
        if spec.get("Type") == "AWS::Serverless::LayerVersion":
            layer_dirs[lid] = build_dir / str(spec["Properties"]["ContentUri"])
    sizes = {lid: tree_size(path) for lid, path in layer_dirs.items()}

    failures: list[str] = []
    print(f"{'function':<26} {'code MB':>8} {'layers MB':>10} {'total MB':>9} {'headroom MB':>12}")
    for lid, spec in sorted(resources.items()):
        if spec.get("Type") != "AWS::Serverless::Function":
            continue
        props = spec.get("Properties") or {}
        code_dir = build_dir / str(props["CodeUri"])
        code = tree_size(code_dir)
        layers = global_layers + layer_ids(props.get("Layers"))
        missing = [layer for layer in layers if layer not in sizes]
        if missing:
            failures.append(f"{lid}: layers {missing} are not in the build")
        layer_bytes = sum(sizes.get(layer, 0) for layer in layers)
        total = code + layer_bytes
        print(
            f"{lid:<26} {code / MB:>8.1f} {layer_bytes / MB:>10.1f} {total / MB:>9.1f} "
            f"{(LAMBDA_UNZIPPED_LIMIT - total) / MB:>12.1f}  [{', '.join(layers)}]"
        )
        if total >= LAMBDA_UNZIPPED_LIMIT:
            failures.append(
                f"{lid}: {total:,} bytes unzipped with its layers, Lambda's limit is "
                f"{LAMBDA_UNZIPPED_LIMIT:,}"
            )
        failures.extend(wrong_binaries(code_dir))
    for lid, path in sorted(layer_dirs.items()):
        print(f"layer {lid:<20} {sizes[lid] / MB:>8.1f} MB")
        failures.extend(wrong_binaries(path))
        if (path / "python" / "boto3").is_dir() or (path / "python" / "botocore").is_dir():
            # Not fatal: the runtime has them, shipping them costs ~80 MB of the budget.
            print(f"  note: {lid} ships boto3/botocore, which the Lambda runtime already has")

    if failures:
        print(f"\nBUILD CHECK FAILED ({len(failures)} problem(s)):", file=sys.stderr)
        for failure in failures:
            print(f"  - {failure}", file=sys.stderr)
        return 1
    print("\nbuild check passed: every function fits Lambda's 250 MB limit, binaries are aarch64")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("build_dir", nargs="?", default=".aws-sam/build", type=Path)
    args = parser.parse_args(argv)
    if not (args.build_dir / "template.yaml").is_file():
        print(f"{args.build_dir} has no template.yaml: run `sam build` first", file=sys.stderr)
        return 2
    return check(args.build_dir)


if __name__ == "__main__":
    sys.exit(main())

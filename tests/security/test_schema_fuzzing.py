"""Fuzzing (OWASP API8/API9): schemathesis drives openapi.yaml against the local stack over
HTTP with a valid token. No request may end in a 5xx, and every response must match the
documented status codes, content type and schema.

The stack runs as `make dev` runs it (template.yaml on moto, the HTTP gateway, the
worker loop), started through tests/security/loopback_only.py so that the sources the
fuzzer invents can only ever reach loopback. Examples are bounded (FUZZ_EXAMPLES per
operation, fixed seed) to keep the run near a minute on two cores.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.tokens import mint_token
from tests.support.stack_process import running_stack

ROOT = Path(__file__).resolve().parents[2]
JWT_SECRET = "fuzzing-local-stack-secret-0123456789abcdef"
FUZZ_EXAMPLES = 25
FUZZ_SEED = 20261127
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def fuzz_stack() -> Iterator[str]:
    """The local stack on free loopback ports, outbound traffic confined to loopback."""
    with running_stack(
        "tests.security.loopback_only",
        jwt_secret=JWT_SECRET,
        sync_budget_seconds=2,
        log_prefix="fuzz-stack-",
    ) as stack:
        yield stack.root_url


def test_fuzzing_openapi_finds_no_5xx_and_no_undocumented_response(
    fuzz_stack: str, tmp_path: Path
) -> None:
    token = mint_token("fuzzer", "fuzz-org", "admin", secret=JWT_SECRET, ttl_seconds=3600)
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        str(ROOT / "openapi.yaml"),
        "--url",
        fuzz_stack,
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(FUZZ_EXAMPLES),
        "--seed",
        str(FUZZ_SEED),
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--report-dir",
        str(tmp_path),
    ]
    result = subprocess.run(  # the CLI exits non-zero on any failed check
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-12000:]
    # Every operation of openapi.yaml was exercised (a silent no-op run proves nothing).
    import yaml

    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    operations = sum(len(methods) for methods in spec["paths"].values())
    assert f"Tested: {operations}" in output, output[-4000:]
    generated = re.search(r"(\d+) generated", output)
    assert generated and int(generated.group(1)) > operations * FUZZ_EXAMPLES, output[-4000:]

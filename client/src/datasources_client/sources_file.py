"""Source files for `connect -f` and `test -f`: YAML or JSON, secrets from the environment.

A string `${NAME}` (or one holding it) takes the value of the environment variable NAME;
`${file:PATH}` takes the content of a file (PATH relative to the source file), without
its trailing newline. Secrets therefore never need to be typed on the command line or
kept in the file. Messages name variables and files, never their values.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SourceFileError(Exception):
    """A source file that cannot be used; the message is safe to print."""


def load_document(path: Path) -> Any:
    """The parsed file (JSON for .json, else YAML, of which JSON is a subset)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            # Only the position: the offending text could be a secret.
            raise SourceFileError(
                f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
            ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "syntax error"
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SourceFileError(f"{path}: not valid YAML: {problem}{where}") from None


def load_sources(path: Path) -> list[dict[str, Any]]:
    """The sources of a file: `{sources: [...]}`, a list of sources, or one source."""
    document = load_document(path)
    if isinstance(document, dict) and "sources" in document:
        document = document["sources"]
    if isinstance(document, dict):
        document = [document]
    if not isinstance(document, list) or not document:
        raise SourceFileError(
            f"{path}: expected a list of sources (or `sources:` holding one), "
            "each with type, name and connection_config"
        )
    sources: list[dict[str, Any]] = []
    for index, source in enumerate(document):
        if not isinstance(source, dict):
            raise SourceFileError(f"{path}: source #{index + 1} is not a mapping")
        label = _label(source, index)
        sources.append(resolve_references(source, path, label))
    return sources


def load_source_config(path: Path, name: str | None = None) -> dict[str, Any]:
    """One `{type, connection_config}` to test: the file's only source, or the one named."""
    sources = load_sources(path)
    if name is not None:
        chosen = [s for s in sources if s.get("name") == name]
        if not chosen:
            raise SourceFileError(f"{path}: no source named '{name}'")
        source = chosen[0]
    elif len(sources) == 1:
        source = sources[0]
    else:
        names = ", ".join(str(s.get("name")) for s in sources)
        raise SourceFileError(
            f"{path}: holds {len(sources)} sources ({names}); pick one with --name"
        )
    return {k: source[k] for k in ("type", "connection_config") if k in source}


def resolve_references(value: Any, path: Path, label: str) -> Any:
    """`value` with every `${NAME}` / `${file:PATH}` replaced."""
    if isinstance(value, dict):
        return {k: resolve_references(v, path, label) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_references(v, path, label) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        reference = match.group(1).strip()
        if reference.startswith("file:"):
            target = Path(os.path.expanduser(reference[5:].strip()))
            if not target.is_absolute():
                target = path.parent / target
            try:
                return target.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise SourceFileError(
                    f"{path}: {label}: cannot read secret file {target} ({exc.strerror or exc})"
                ) from None
        if not _ENV_NAME.match(reference):
            raise SourceFileError(
                f"{path}: {label}: '${{{reference}}}' is neither ${{ENV_VAR}} nor ${{file:PATH}}"
            )
        if reference not in os.environ:
            raise SourceFileError(f"{path}: {label}: environment variable {reference} is not set")
        return os.environ[reference]

    return _REFERENCE.sub(substitute, value)


def _label(source: dict[str, Any], index: int) -> str:
    name = source.get("name")
    return f"source '{name}'" if isinstance(name, str) and name else f"source #{index + 1}"


def describe_validation_errors(
    path: Path, sources: list[dict[str, Any]], errors: list[dict[str, Any]], *, root: str
) -> list[str]:
    """The server's 422 `errors`, one line each, naming the file and the source.

    `root` is where the sources sit in the request (`sources` for connect,
    `source_config` for test-connection); the server puts the type tag of the config
    model after the index, which is dropped here.
    """
    lines: list[str] = []
    for error in errors:
        parts = str(error.get("loc", "")).split(".")
        label = "request"
        if parts and parts[0] == root:
            parts = parts[1:]
            index = 0
            if root == "sources" and parts and parts[0].isdigit():
                index = int(parts[0])
                parts = parts[1:]
            if index < len(sources):
                label = _label(sources[index], index)
            if parts and parts[0] in ("database", "api", "file"):
                parts = parts[1:]
        field = ".".join(parts) or "(the source)"
        lines.append(f"{path}: {label}: {field}: {error.get('msg', 'invalid')}")
    return lines

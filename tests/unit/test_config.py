"""Settings: each field read from its own upper-case name, set by the template or
defaulted, and read somewhere in the service."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode.cfn_yaml import load as load_cfn

from datasources.config import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
# Read by Powertools itself, not by the settings model.
POWERTOOLS = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"}
# Set by the Lambda runtime or, locally, by the local stack (local/), not by the template.
RUNTIME = {"aws_region", "aws_endpoint_url", "local_mode", "jwt_secret"}


def template_variables() -> dict[str, set[str]]:
    """Every variable template.yaml sets for a function: name -> logical ids ("Globals")."""
    template: Any = load_cfn(str(ROOT / "template.yaml"))
    found: dict[str, set[str]] = {}
    globals_env = template["Globals"]["Function"]["Environment"]["Variables"]
    for name in globals_env:
        found.setdefault(name, set()).add("Globals")
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        variables = ((resource.get("Properties") or {}).get("Environment") or {}).get(
            "Variables"
        ) or {}
        for name in variables:
            found.setdefault(name, set()).add(logical_id)
    return found


def test_each_field_is_read_from_its_name_in_upper_case(monkeypatch: pytest.MonkeyPatch) -> None:
    # A value of each field's type, none equal to its default.
    samples: dict[Any, tuple[str, Any]] = {int: ("41", 41), float: ("4.5", 4.5)}
    lists = {
        "jwt_algorithms": ("RS256, ES256", ["RS256", "ES256"]),
        "allowed_cidrs": ("10.0.0.0/8,192.168.0.0/16", ["10.0.0.0/8", "192.168.0.0/16"]),
    }
    values: dict[str, tuple[str, Any]] = {}
    for name, field in Settings.model_fields.items():
        if field.annotation is bool:
            raw, expected = "true", True
        elif name in lists:
            raw, expected = lists[name]
        else:
            raw, expected = samples.get(field.annotation, (f"set-{name}", f"set-{name}"))
        assert expected != field.get_default(call_default_factory=True), name
        monkeypatch.setenv(env_name(name), raw)
        values[name] = (raw, expected)
    settings = Settings.from_env()
    for name, (_, expected) in values.items():
        assert getattr(settings, name) == expected, name


def test_an_empty_or_unset_variable_keeps_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(env_name(name), raising=False)
    monkeypatch.setenv("JWKS_URL", "")  # the template sets "" for "not configured"
    assert Settings.from_env() == Settings()


def test_every_variable_the_template_sets_is_a_settings_field() -> None:
    fields = {env_name(name) for name in Settings.model_fields}
    unread = set(template_variables()) - fields - POWERTOOLS
    assert not unread, f"template.yaml sets variables no settings field reads: {unread}"


def test_every_field_is_set_by_the_template_or_has_a_default() -> None:
    set_by_template = set(template_variables())
    for name, field in Settings.model_fields.items():
        if env_name(name) in set_by_template or name in RUNTIME:
            continue
        assert not field.is_required(), f"{env_name(name)} is neither set nor defaulted"
    # The resources a deployed function needs come from the stack, never a default.
    for name in ("table_name", "bucket_name", "queue_url", "secret_prefix", "schedule_group"):
        assert env_name(name) in set_by_template, name


def test_every_field_is_read_by_the_service() -> None:
    sources = [
        path.read_text()
        for folder in ("shared/datasources", "functions")
        for path in (ROOT / folder).rglob("*.py")
        if path != ROOT / "shared/datasources/config.py"
    ]
    code = "\n".join(sources)
    for name in Settings.model_fields:
        # `settings.x`, `get_settings().x`, `context.settings.x`: an attribute read.
        assert re.search(rf"settings(\(\))?\.{name}\b", code), f"setting {name} is never read"


def test_the_defaults_are_the_template_defaults() -> None:
    """A setting the template sets from a parameter defaults to that parameter's default
    (local runs and deployed stacks behave alike), and the worker fails a stream at the
    sync queue's own maxReceiveCount."""
    template: Any = load_cfn(str(ROOT / "template.yaml"))
    parameters = template["Parameters"]
    variables = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            props = resource.get("Properties") or {}
            variables.update(((props.get("Environment") or {}).get("Variables")) or {})
    defaults = Settings()
    checked = []
    for variable, value in variables.items():
        if not (isinstance(value, dict) and set(value) == {"Ref"}):
            continue
        parameter = parameters.get(value["Ref"])
        if parameter is None or "Default" not in parameter:
            continue  # a resource, not a parameter
        name = next(n for n in Settings.model_fields if env_name(n) == variable)
        raw = str(parameter["Default"])
        # As from_env reads it: an empty value keeps the default.
        from_template = Settings.model_validate({name: raw} if raw else {})
        assert getattr(from_template, name) == getattr(defaults, name), variable
        checked.append(variable)
    assert "SYNC_TIME_BUDGET_SECONDS" in checked and "JWT_ALGORITHMS" in checked, checked

    redrive = template["Resources"]["SyncQueue"]["Properties"]["RedrivePolicy"]
    assert defaults.max_receives == redrive["maxReceiveCount"]

"""CloudFormation/SAM templates as plain data: the loader and the intrinsic functions.

`load_template` reads template.yaml, short tags (`!Ref`, `!GetAtt`, `!Sub`, ...)
included; `Resolver` evaluates the intrinsic functions against the template's
parameters and the resources provisioned so far; `dependency_order` orders resources
so that each comes after the ones it refers to. No AWS calls here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from local import DEFAULT_STACK_NAME, LOCAL_ACCOUNT_ID, LOCAL_REGION, REPO_ROOT


class _CfnLoader(yaml.SafeLoader):
    """A safe YAML loader that reads CloudFormation short tags as their long form."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        # `!GetAtt A.B` is the short form of `Fn::GetAtt: [A, B]`.
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: str | Path = "template.yaml") -> dict[str, Any]:
    """Parse a CloudFormation/SAM template, short tags included, into plain data."""
    template_path = Path(path)
    if not template_path.is_absolute() and not template_path.exists():
        template_path = REPO_ROOT / template_path
    with template_path.open(encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(data, dict) or "Resources" not in data:
        raise ValueError(f"{template_path} is not a CloudFormation template")
    return data


# --------------------------------------------------------------------------- intrinsics


class _NoValue:
    """`AWS::NoValue`: the property or list item it stands for is removed."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


class UnresolvedReference(LookupError):
    """A Ref/GetAtt names something the local stack did not create."""


@dataclass
class Resolver:
    """Evaluates intrinsic functions against parameters and provisioned resources."""

    template: Mapping[str, Any]
    stack_name: str = DEFAULT_STACK_NAME
    parameters: Mapping[str, Any] = field(default_factory=dict)
    refs: Mapping[str, Any] = field(default_factory=dict)
    attrs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def parameter_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, spec in (self.template.get("Parameters") or {}).items():
            if name in self.parameters:
                raw = self.parameters[name]
            elif "Default" in spec:
                raw = spec["Default"]
            else:
                continue
            kind = str(spec.get("Type", "String"))
            if kind == "CommaDelimitedList" or kind.startswith("List<"):
                values[name] = [part.strip() for part in str(raw).split(",")] if raw != "" else []
            else:
                # CloudFormation hands every scalar parameter over as a string.
                values[name] = scalar_to_string(raw)
        return values

    def condition(self, name: str) -> bool:
        conditions = self.template.get("Conditions") or {}
        if name not in conditions:
            raise UnresolvedReference(f"unknown condition {name!r}")
        return bool(self.resolve(conditions[name]))

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": LOCAL_REGION,
            "AWS::AccountId": LOCAL_ACCOUNT_ID,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": (
                f"arn:aws:cloudformation:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:"
                f"stack/{self.stack_name}/00000000-0000-0000-0000-000000000000"
            ),
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        params = self.parameter_values()
        if name in params:
            return params[name]
        if name in self.refs:
            return self.refs[name]
        raise UnresolvedReference(f"Ref {name!r}: not a parameter or a provisioned resource")

    def get_att(self, resource: str, attribute: str) -> Any:
        try:
            return self.attrs[resource][attribute]
        except KeyError:
            raise UnresolvedReference(f"GetAtt {resource}.{attribute}: not provisioned") from None

    def sub(self, spec: Any) -> str:
        if isinstance(spec, list):
            text, variables = spec[0], {k: self.resolve(v) for k, v in spec[1].items()}
        else:
            text, variables = spec, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                # `${!Literal}` is how a template writes a literal `${Literal}`.
                return "${" + name[1:] + "}"
            if name in variables:
                return scalar_to_string(variables[name])
            if "." in name and not name.startswith("AWS::"):
                resource, _, attribute = name.partition(".")
                return scalar_to_string(self.get_att(resource, attribute))
            return scalar_to_string(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, str(text))

    def resolve(self, value: Any) -> Any:
        """Return `value` with every intrinsic function evaluated."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            function = self._functions().get(key)
            if function is not None:
                return function(arg)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def _functions(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": lambda arg: self.ref(arg),
            "Fn::GetAtt": lambda arg: self.get_att(*split_get_att(arg)),
            "Fn::Sub": self.sub,
            "Fn::If": lambda arg: self.resolve(arg[1] if self.condition(arg[0]) else arg[2]),
            "Fn::Equals": lambda arg: self._as_text(arg[0]) == self._as_text(arg[1]),
            "Fn::Not": lambda arg: not self.resolve(arg[0]),
            "Fn::And": lambda arg: all(self.resolve(item) for item in arg),
            "Fn::Or": lambda arg: any(self.resolve(item) for item in arg),
            "Condition": self.condition,
            "Fn::Join": lambda arg: str(arg[0]).join(
                scalar_to_string(item) for item in self.resolve(arg[1])
            ),
            "Fn::Select": lambda arg: self.resolve(arg[1])[int(self.resolve(arg[0]))],
            "Fn::Split": lambda arg: str(self.resolve(arg[1])).split(str(arg[0])),
            "Fn::FindInMap": self._find_in_map,
        }

    def _as_text(self, value: Any) -> Any:
        resolved = self.resolve(value)
        return resolved if isinstance(resolved, list) else scalar_to_string(resolved)

    def _find_in_map(self, arg: list[Any]) -> Any:
        name, first, second = (self.resolve(item) for item in arg[:3])
        return self.template["Mappings"][name][first][second]


def split_get_att(arg: Any) -> tuple[str, str]:
    if isinstance(arg, str):
        resource, _, attribute = arg.partition(".")
        return resource, attribute
    return str(arg[0]), str(arg[1])


def scalar_to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------- dependencies


def _references(value: Any) -> set[str]:
    """Names that `value` refers to through Ref, GetAtt or Sub."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= _references(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            elif key == "Fn::GetAtt":
                found.add(split_get_att(item)[0])
            elif key == "Fn::Sub":
                text = item[0] if isinstance(item, list) else item
                for name in re.findall(r"\$\{([^}!][^}]*)\}", str(text)):
                    found.add(name.split(".")[0])
                if isinstance(item, list):
                    found |= _references(item[1])
            else:
                found |= _references(item)
    return found


def dependency_order(resources: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Logical ids ordered so that each comes after the resources it refers to."""
    deps: dict[str, set[str]] = {}
    for lid, spec in resources.items():
        depends_on = spec.get("DependsOn") or []
        if isinstance(depends_on, str):
            depends_on = [depends_on]
        names = _references(spec.get("Properties") or {}) | set(depends_on)
        deps[lid] = {name for name in names if name in resources and name != lid}
    ordered: list[str] = []
    remaining = dict(deps)
    while remaining:
        ready = sorted(lid for lid, needs in remaining.items() if needs <= set(ordered))
        if not ready:
            raise ValueError(f"circular references between {sorted(remaining)}")
        ordered.extend(ready)
        for lid in ready:
            del remaining[lid]
    return ordered

"""Shared parameter helpers for tnn_ros nodes: declare with a range, validate on set, apply live.

Every tunable parameter is described once by a :class:`ParamSpec` (name, default, description,
range or choices). :class:`LiveParameters` declares them on a node with a ``ParameterDescriptor``
carrying a ``FloatingPointRange`` / ``IntegerRange`` (so rqt_reconfigure shows sliders), rejects bad
values in the set-parameters callback with a reason (type, range, choices, and an optional
cross-parameter check such as ``min_utilization <= max_utilization``), and hands accepted changes to
the node after they are stored.

Typical use inside a node::

    SPECS = (
        ParamSpec("rate_hz", 10.0, "Publish rate", min_value=0.5, max_value=100.0),
        ParamSpec("strategy", "auto", "Control policy", choices=("manual", "rule", "auto")),
    )
    self.params = LiveParameters(self, SPECS, validate=check_fn, on_change=self._on_params)
    rate = self.params["rate_hz"]

``validate(values) -> str | None`` receives the full proposed value dict (current values updated
with the request) and returns a reason to reject, or None. ``on_change(changed)`` receives the names
and new values that were accepted (after rclpy stored them).
"""

from __future__ import annotations

import math
import pathlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import yaml
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.parameter import Parameter

Validator = Callable[[Mapping[str, Any]], "str | None"]
ChangeHandler = Callable[[Mapping[str, Any]], None]

_TYPE_NAMES = {bool: "bool", int: "integer", float: "double", str: "string"}


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter: its default (which fixes its type), description and constraints.

    ``min_value``/``max_value`` give numeric parameters a slider range (both or neither);
    ``step`` is the slider step (0 = continuous). ``choices`` restricts a string parameter.
    ``read_only`` parameters can only be set at start-up (launch / YAML).
    """

    name: str
    default: Any
    description: str
    min_value: float | int | None = None
    max_value: float | int | None = None
    step: float | int = 0
    choices: tuple[str, ...] | None = None
    read_only: bool = False

    def __post_init__(self) -> None:
        if type(self.default) not in _TYPE_NAMES:
            raise TypeError(f"parameter {self.name!r}: unsupported type {type(self.default).__name__}")
        if (self.min_value is None) != (self.max_value is None):
            raise ValueError(f"parameter {self.name!r}: give both min_value and max_value or neither")
        if self.min_value is not None:
            if not isinstance(self.default, (int, float)) or isinstance(self.default, bool):
                raise ValueError(f"parameter {self.name!r}: a range needs a numeric default")
            if self.min_value > self.max_value:
                raise ValueError(f"parameter {self.name!r}: min_value > max_value")
        if self.choices is not None and not isinstance(self.default, str):
            raise ValueError(f"parameter {self.name!r}: choices need a string default")
        error = self.check(self.default)
        if error:
            raise ValueError(f"default of {error}")

    @property
    def value_type(self) -> type:
        return type(self.default)

    def coerce(self, value: Any) -> Any:
        """Return ``value`` as this parameter's type where that is lossless (int -> double)."""
        if self.value_type is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    def check(self, value: Any) -> str | None:
        """Return why ``value`` is not acceptable for this parameter, or None when it is."""
        value = self.coerce(value)
        if type(value) is not self.value_type:
            return (
                f"{self.name}: expected {_TYPE_NAMES[self.value_type]}, got {type(value).__name__} {value!r}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            return f"{self.name}: must be finite, got {value}"
        if self.min_value is not None and not (self.min_value <= value <= self.max_value):
            return f"{self.name}: {value} outside [{self.min_value}, {self.max_value}]"
        if self.choices is not None and value not in self.choices:
            return f"{self.name}: unknown value {value!r}, expected one of {', '.join(self.choices)}"
        return None

    def descriptor(self) -> ParameterDescriptor:
        """ROS descriptor with description, range / choices and read-only flag."""
        descriptor = ParameterDescriptor(description=self.description, read_only=self.read_only)
        if self.min_value is not None:
            if self.value_type is float:
                descriptor.floating_point_range = [
                    FloatingPointRange(
                        from_value=float(self.min_value),
                        to_value=float(self.max_value),
                        step=float(self.step),
                    )
                ]
            else:
                descriptor.integer_range = [
                    IntegerRange(
                        from_value=int(self.min_value), to_value=int(self.max_value), step=int(self.step)
                    )
                ]
        if self.choices is not None:
            descriptor.additional_constraints = "one of: " + ", ".join(self.choices)
        return descriptor


def check_values(specs: Mapping[str, ParamSpec], values: Mapping[str, Any]) -> str | None:
    """Check each value against its spec; return the first problem (or None)."""
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            continue  # not ours (e.g. use_sim_time): rclpy handles it
        error = spec.check(value)
        if error:
            return error
    return None


class LiveParameters:
    """Declares ``specs`` on ``node``, validates every set request and applies accepted ones live.

    Values are read with ``params["name"]`` or :meth:`as_dict`. Rejections carry a reason that
    ``ros2 param set`` and rqt show to the user.
    """

    def __init__(
        self,
        node: Node,
        specs: Iterable[ParamSpec],
        validate: Validator | None = None,
        on_change: ChangeHandler | None = None,
    ) -> None:
        self._node = node
        self.specs: dict[str, ParamSpec] = {}
        for spec in specs:
            if spec.name in self.specs:
                raise ValueError(f"parameter {spec.name!r} specified twice")
            self.specs[spec.name] = spec
        self._validate = validate
        self._on_change = on_change
        self._values: dict[str, Any] = {}

        self._coerce_overrides()
        declared = node.declare_parameters(
            "", [(spec.name, spec.default, spec.descriptor()) for spec in self.specs.values()]
        )
        for parameter in declared:
            self._values[parameter.name] = parameter.value
        # Start-up values (YAML / launch overrides) get the same checks as live changes.
        error = check_values(self.specs, self._values)
        if error is None and self._validate is not None:
            error = self._validate(self._values)
        if error:
            raise ValueError(f"{node.get_name()}: invalid parameter: {error}")

        node.add_pre_set_parameters_callback(self._coerce_request)
        node.add_on_set_parameters_callback(self._check_request)
        node.add_post_set_parameters_callback(self._store_accepted)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def as_dict(self) -> dict[str, Any]:
        """A copy of every managed parameter's current value."""
        return dict(self._values)

    def _coerce_overrides(self) -> None:
        # YAML "deadline_ms: 50" arrives as an integer; rclpy would refuse it for a double parameter
        # at declare time (the pre-set callback does not run there), so convert it first.
        overrides = getattr(self._node, "_parameter_overrides", None)
        if not isinstance(overrides, dict):
            return
        for name, spec in self.specs.items():
            override = overrides.get(name)
            if override is not None and spec.value_type is float and override.type_ == Parameter.Type.INTEGER:
                overrides[name] = Parameter(name, Parameter.Type.DOUBLE, float(override.value))

    def _coerce_request(self, parameters: list[Parameter]) -> list[Parameter]:
        coerced = []
        for parameter in parameters:
            spec = self.specs.get(parameter.name)
            if spec is not None and spec.value_type is float and parameter.type_ == Parameter.Type.INTEGER:
                parameter = Parameter(parameter.name, Parameter.Type.DOUBLE, float(parameter.value))
            coerced.append(parameter)
        return coerced

    def _check_request(self, parameters: list[Parameter]) -> SetParametersResult:
        proposed = dict(self._values)
        requested = {}
        for parameter in parameters:
            if parameter.name not in self.specs:
                continue
            if parameter.type_ == Parameter.Type.NOT_SET:
                return SetParametersResult(successful=False, reason=f"{parameter.name}: cannot be undeclared")
            requested[parameter.name] = parameter.value
        error = check_values(self.specs, requested)
        if error is None and requested and self._validate is not None:
            proposed.update(requested)
            error = self._validate(proposed)
        if error:
            return SetParametersResult(successful=False, reason=error)
        return SetParametersResult(successful=True)

    def _store_accepted(self, parameters: list[Parameter]) -> None:
        changed = {}
        for parameter in parameters:
            if parameter.name in self.specs:
                self._values[parameter.name] = self.specs[parameter.name].coerce(parameter.value)
                changed[parameter.name] = self._values[parameter.name]
        if changed and self._on_change is not None:
            try:
                self._on_change(changed)
            except Exception as error:  # a failing handler must not take the parameter service down
                self._node.get_logger().error(f"applying parameters {sorted(changed)} failed: {error}")


def node_parameters_from_yaml(
    path: str | pathlib.Path, node_name: str, namespace: str = ""
) -> dict[str, Any]:
    """The ``ros__parameters`` a ROS 2 parameter file gives one node, as a flat ``{name: value}`` dict.

    Matches node keys the way rcl does for ``--ros-args --params-file``: a key is the node's fully
    qualified name, written flat (``/ns/name``) or nested (``ns: {name: ...}``, any depth), with
    ``/**`` standing for any number of namespace levels and ``*`` for one (``/**``, ``/**/name``,
    ``/ns/**``); a bare ``name`` is the node in the root namespace only. Every matching section
    applies, in file order: a later one overrides an earlier one. Nested mappings become dotted
    names (``sim: {capacity_wh: 1}`` -> ``sim.capacity_wh``). Raises ValueError for unreadable files.
    """
    path = pathlib.Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read parameter file: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of node names")
    namespace = "/" + namespace.strip("/") if namespace.strip("/") else ""
    fqn = f"{namespace}/{node_name}"
    values: dict[str, Any] = {}
    for pattern, parameters in _parameter_sections(data):
        if _node_pattern(pattern).fullmatch(fqn):
            values.update(_flatten(parameters))
    return values


def _parameter_sections(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, dict]]:
    """``(node key, ros__parameters)`` in file order; nested keys are joined into one node key."""
    sections = []
    for key, section in data.items():
        if not isinstance(section, dict):
            continue
        parts = prefix + tuple(part for part in str(key).split("/") if part)
        if "ros__parameters" in section:
            sections.append(("/" + "/".join(parts), section["ros__parameters"] or {}))
        else:
            sections.extend(_parameter_sections(section, parts))
    return sections


def _node_pattern(key: str) -> re.Pattern:
    """A node key as a regular expression over fully qualified names (``**``: any depth, ``*``: one)."""
    wildcards = {"**": "(?:/[^/]+)*", "*": "/[^/]+"}
    parts = key.strip("/").split("/")
    return re.compile("".join(wildcards.get(part, "/" + re.escape(part)) for part in parts))


def _flatten(parameters: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in parameters.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def resolve_node_parameters(
    node_name: str,
    namespace: str = "",
    params_file: str | pathlib.Path = "",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Start-up parameters of one node, merged in order (later wins).

    1. the shipped defaults ``config/<node_name>.yaml`` (source tree or installed share), if present;
    2. ``params_file`` (any standard ROS 2 parameter YAML), if given;
    3. ``overrides`` whose value is not None / "" (e.g. ``--backend`` on a command line).

    The one-process bringup and the launch files both use this, so they read the same files.
    """
    from tnn_ros.paths import find_config_file

    values: dict[str, Any] = {}
    try:
        values.update(node_parameters_from_yaml(find_config_file(f"{node_name}.yaml"), node_name, namespace))
    except FileNotFoundError:
        pass
    if params_file:
        if not pathlib.Path(params_file).is_file():
            raise ValueError(f"parameter file {params_file} does not exist")
        values.update(node_parameters_from_yaml(params_file, node_name, namespace))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None and v != ""})
    return values

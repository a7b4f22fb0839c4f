"""Which sections of a ROS 2 parameter file reach a node: ours against rcl's own ``--params-file``.

The reference is rcl itself: the same file is handed to a node with ``--ros-args --params-file``
(``automatically_declare_parameters_from_overrides``) and the parameters it ends up with are what
``node_parameters_from_yaml`` must return for that node name and namespace.
"""

import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.context import Context  # noqa: E402

from tnn_ros.nodes.params import node_parameters_from_yaml, resolve_node_parameters  # noqa: E402

# Parameters every rclpy node has or that rcl adds itself; not from the file.
_BUILTIN = {"use_sim_time", "start_type_description_service"}

FILES = {
    "wildcard": "/**:\n  ros__parameters:\n    a: 1\n    b: 1\n",
    "wildcard_name": "/**/ctl:\n  ros__parameters:\n    a: 2\n",
    "bare_name": "ctl:\n  ros__parameters:\n    a: 3\n",
    "fully_qualified": "/robot/ctl:\n  ros__parameters:\n    a: 4\n",
    "nested_namespace": "robot:\n  ctl:\n    ros__parameters:\n      a: 5\n",
    "nested_slash": "/robot:\n  ctl:\n    ros__parameters:\n      a: 6\n",
    "nested_two_levels": "a1:\n  b1:\n    ctl:\n      ros__parameters:\n        a: 7\n",
    "flat_two_levels": "/a1/b1/ctl:\n  ros__parameters:\n    a: 8\n",
    "nested_values": "/**:\n  ros__parameters:\n    sim:\n      capacity_wh: 9.5\n      name: x\n",
    "other_node": "/**/other:\n  ros__parameters:\n    a: 10\n",
    "later_wildcard_wins": "/robot/ctl:\n  ros__parameters:\n    a: 11\n"
    "/**:\n  ros__parameters:\n    a: 12\n",
    "later_specific_wins": "/**:\n  ros__parameters:\n    a: 13\n    b: 2\n/robot/ctl:\n  ros__parameters:\n"
    "    a: 14\n",
    "namespace_wildcard": "/robot/**:\n  ros__parameters:\n    a: 16\n",
    "one_level_wildcard": "/*/ctl:\n  ros__parameters:\n    a: 17\n",
    "mixed": "/**/ctl:\n  ros__parameters:\n    a: 18\nrobot:\n  ctl:\n    ros__parameters:\n      b: 3\n"
    "ctl:\n  ros__parameters:\n    c: 4\n",
}
NAMESPACES = ["", "/robot", "/a1/b1"]


def _rcl_parameters(path, node_name, namespace):
    context = Context()
    rclpy.init(context=context, args=["params_reference", "--ros-args", "--params-file", str(path)])
    try:
        node = rclpy.create_node(
            node_name,
            namespace=namespace or "/",
            context=context,
            automatically_declare_parameters_from_overrides=True,
        )
        try:
            return {name: node.get_parameter(name).value for name in node._parameters if name not in _BUILTIN}
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


@pytest.mark.parametrize("name", sorted(FILES))
def test_sections_reaching_a_node_are_the_ones_rcl_applies(tmp_path, name):
    path = tmp_path / f"{name}.yaml"
    path.write_text(FILES[name])
    for namespace in NAMESPACES:
        expected = _rcl_parameters(path, "ctl", namespace)
        assert node_parameters_from_yaml(path, "ctl", namespace) == expected, (name, namespace)


def test_hand_checked_cases(tmp_path):
    """A few outcomes spelled out, so a change in rcl itself would be noticed too."""
    cases = {
        ("wildcard_name", "/a1/b1"): {"a": 2},
        ("bare_name", ""): {"a": 3},
        ("bare_name", "/robot"): {},  # a bare name is the root namespace only
        ("nested_two_levels", "/a1/b1"): {"a": 7},
        ("later_wildcard_wins", "/robot"): {"a": 12},
        ("later_specific_wins", "/robot"): {"a": 14, "b": 2},
        ("nested_values", "/robot"): {"sim.capacity_wh": 9.5, "sim.name": "x"},
    }
    for (name, namespace), expected in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(FILES[name])
        assert node_parameters_from_yaml(path, "ctl", namespace) == expected, (name, namespace)


def test_user_file_layers_on_the_shipped_defaults_and_overrides_win(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text(
        "/**/controller:\n  ros__parameters:\n    rate_hz: 4.0\n"
        "/robot/controller:\n  ros__parameters:\n    strategy: rule\n"
    )
    values = resolve_node_parameters("controller", "/robot", user, {"strategy": "deadline"})
    assert values["rate_hz"] == 4.0  # user file over the shipped 10 Hz
    assert values["strategy"] == "deadline"  # an explicit override over the file
    assert values["stale_timeout_s"] == 3.0  # untouched shipped default
    elsewhere = resolve_node_parameters("controller", "/other", user)
    assert elsewhere["rate_hz"] == 4.0 and elsewhere["strategy"] != "rule"


def test_unreadable_files_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        node_parameters_from_yaml(tmp_path / "missing.yaml", "ctl")
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="mapping"):
        node_parameters_from_yaml(bad, "ctl")

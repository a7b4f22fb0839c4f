"""Launch-argument parsing, parameter precedence and config-file lookup (no ROS launch needed)."""

import pytest
import yaml

from tnn_ros.nodes.launch_args import parse_argument_value, passed_overrides
from tnn_ros.nodes.params import resolve_node_parameters
from tnn_ros.paths import find_config_file, is_explicit_path


@pytest.mark.parametrize(
    "text, value",
    [
        ("5.0", 5.0),
        ("320", 320),
        ("true", True),
        ("False", False),
        ("manual", "manual"),
        ("rgb8", "rgb8"),
        ("[1, 2]", "[1, 2]"),
        ("a: b", "a: b"),
        ("{", "{"),
    ],
)
def test_launch_argument_values_read_like_yaml_scalars(text, value):
    assert parse_argument_value(text) == value
    assert type(parse_argument_value(text)) is type(value)


def test_unset_arguments_are_not_overrides():
    assert passed_overrides({"fps": "", "width": "  ", "height": "120", "mode": "manual"}) == {
        "height": 120,
        "mode": "manual",
    }


def test_shipped_then_params_file_then_passed_arguments(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"/**/sim_camera": {"ros__parameters": {"fps": 5.0, "width": 160}}}))
    shipped = resolve_node_parameters("sim_camera", "tnn")
    assert (shipped["fps"], shipped["width"], shipped["height"]) == (15.0, 320, 240)  # config/sim_camera.yaml
    layered = resolve_node_parameters("sim_camera", "tnn", site, passed_overrides({"fps": "", "height": ""}))
    assert (layered["fps"], layered["width"], layered["height"]) == (5.0, 160, 240)
    assert layered["encoding"] == shipped["encoding"]  # the file is layered on top, never a replacement
    passed = resolve_node_parameters("sim_camera", "tnn", site, passed_overrides({"fps": "7.5"}))
    assert (passed["fps"], passed["width"]) == (7.5, 160)


@pytest.mark.parametrize(
    "name, explicit",
    [
        ("controller.yaml", False),
        ("./controller.yaml", True),
        ("cfg/controller.yaml", True),
        ("/abs/c.yaml", True),
        ("~/c.yaml", True),
    ],
)
def test_explicit_paths(name, explicit):
    assert is_explicit_path(name) is explicit


def test_a_bare_name_never_comes_from_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "controller.yaml").write_text(
        yaml.safe_dump({"/**/controller": {"ros__parameters": {"rate_hz": 3.0}}})
    )
    monkeypatch.chdir(tmp_path)
    found = find_config_file("controller.yaml")
    assert found.resolve() != (tmp_path / "controller.yaml").resolve()
    assert found.parent.name == "config"
    assert resolve_node_parameters("controller", "tnn")["rate_hz"] == 10.0  # the shipped value
    assert find_config_file("./controller.yaml").resolve() == (tmp_path / "controller.yaml").resolve()
    with pytest.raises(FileNotFoundError, match="give a path"):
        find_config_file("no_such_mission.yaml")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_config_file("./no_such_mission.yaml")

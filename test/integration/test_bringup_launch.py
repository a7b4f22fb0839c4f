"""Launch files, without launch/launch_ros installed: compile them and run generate_launch_description()
against tiny fakes of the launch API, then check the nodes they would start."""

import importlib.util
import pathlib
import py_compile
import re
import sys
import types

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAUNCH_FILES = ("tnn.launch.py", "controller.launch.py", "resource_monitor.launch.py")


class FakeAction:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class DeclareLaunchArgument(FakeAction):
    def __init__(self, name, default_value=None, description="", **kwargs):
        super().__init__(name, default_value=default_value, description=description, **kwargs)
        self.name, self.default_value, self.description = name, default_value, description


class OpaqueFunction(FakeAction):
    def __init__(self, function, args=None, kwargs=None):
        super().__init__(function=function)
        self.function = function


class LaunchConfiguration:
    def __init__(self, name, default=None):
        self.name = name

    def perform(self, context):
        return context.launch_configurations[self.name]


class LaunchDescription:
    def __init__(self, entities=()):
        self.entities = list(entities)


class Node(FakeAction):
    pass


class LifecycleNode(Node):
    pass


@pytest.fixture
def fake_launch(monkeypatch):
    modules = {
        "launch": types.ModuleType("launch"),
        "launch.actions": types.ModuleType("launch.actions"),
        "launch.substitutions": types.ModuleType("launch.substitutions"),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.ModuleType("launch_ros.actions"),
    }
    modules["launch"].LaunchDescription = LaunchDescription
    modules["launch.actions"].DeclareLaunchArgument = DeclareLaunchArgument
    modules["launch.actions"].OpaqueFunction = OpaqueFunction
    modules["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    modules["launch_ros.actions"].Node = Node
    modules["launch_ros.actions"].LifecycleNode = LifecycleNode
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)


def load(name):
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), ROOT / "launch" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expand(name, **arguments):
    """generate_launch_description(), then the OpaqueFunction with the arguments resolved."""
    description = load(name).generate_launch_description()
    declared = {e.name: e for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    unknown = set(arguments) - set(declared)
    assert not unknown, f"{name} does not declare {unknown}"
    context = types.SimpleNamespace(
        launch_configurations={**{k: e.default_value for k, e in declared.items()}, **arguments}
    )
    nodes = []
    for entity in description.entities:
        if isinstance(entity, OpaqueFunction):
            nodes += entity.function(context)
        elif isinstance(entity, Node):
            nodes.append(entity)
    return declared, {node.kwargs["name"]: node.kwargs for node in nodes}


def console_scripts():
    text = (ROOT / "setup.py").read_text()
    return set(re.findall(r'"([\w-]+) = tnn_ros\.', text))


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_launch_files_compile(name):
    py_compile.compile(str(ROOT / "launch" / name), doraise=True)


def test_main_launch_declares_arguments_and_nodes(fake_launch):
    declared, nodes = expand("tnn.launch.py")
    assert {"image", "params_file", "namespace", "backend", "strategy", "use_sim_camera"} <= set(declared)
    assert all(argument.description for argument in declared.values())
    assert set(nodes) == {"perception", "resource_monitor", "controller"}
    for node in nodes.values():
        assert node["package"] == "tnn_ros"
        assert node["executable"] in console_scripts()
        assert node["namespace"] == "tnn"
    assert nodes["perception"]["remappings"] == [("image", "image")]
    # the shipped YAML defaults are what the nodes get
    assert nodes["controller"]["parameters"][0]["strategy"] == "auto"
    assert nodes["resource_monitor"]["parameters"][0]["backend"] == "auto"
    assert nodes["resource_monitor"]["parameters"][0]["sim.capacity_wh"] == 20.0


def test_main_launch_arguments_reach_the_nodes(fake_launch, tmp_path):
    params = tmp_path / "site.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "/**/controller": {"ros__parameters": {"rate_hz": 5.0}},
                "/robot/resource_monitor": {"ros__parameters": {"deadline_ms": 50.0}},
            }
        )
    )
    _, nodes = expand(
        "tnn.launch.py",
        image="/camera/image_raw",
        namespace="robot",
        backend="sim",
        strategy="deadline",
        use_sim_camera="true",
        params_file=str(params),
    )
    assert set(nodes) == {"sim_camera", "perception", "resource_monitor", "controller"}
    assert nodes["sim_camera"]["executable"] in console_scripts()
    assert nodes["perception"]["remappings"] == [("image", "/camera/image_raw")]
    assert all(node["namespace"] == "robot" for node in nodes.values())
    controller = nodes["controller"]["parameters"][0]
    assert controller["strategy"] == "deadline" and controller["rate_hz"] == 5.0
    monitor = nodes["resource_monitor"]["parameters"][0]
    assert monitor["backend"] == "sim" and monitor["deadline_ms"] == 50.0


def test_per_node_launch_files(fake_launch):
    _, nodes = expand("controller.launch.py", strategy="rule")
    assert list(nodes) == ["controller"] and nodes["controller"]["parameters"][0]["strategy"] == "rule"
    assert nodes["controller"]["executable"] in console_scripts()
    _, nodes = expand("resource_monitor.launch.py", backend="trace", mission_file="mission_demo.yaml")
    parameters = nodes["resource_monitor"]["parameters"][0]
    assert parameters["backend"] == "trace" and parameters["mission_file"] == "mission_demo.yaml"
    assert nodes["resource_monitor"]["executable"] in console_scripts()

"""package.xml declares every ROS package the code imports (rosdep installs only what it lists)."""

import ast
import os
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROS_LIBS = {'rclpy', 'rcl_interfaces', 'launch', 'launch_ros', 'launch_testing',
            'launch_testing_ros', 'ament_index_python', 'cv_bridge', 'builtin_interfaces',
            'rosgraph_msgs', 'tf2_ros', 'message_filters'}


def _ros_imports(folder):
    found = {}
    for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
        for f in files:
            if not f.endswith('.py'):
                continue
            path = os.path.join(dirpath, f)
            for node in ast.walk(ast.parse(open(path).read(), path)):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module] if isinstance(node, ast.ImportFrom) and node.module
                         and not node.level else [])
                for n in names:
                    top = n.split('.')[0]
                    if top in ROS_LIBS or top.endswith(('_msgs', '_srvs')):
                        found.setdefault(top, os.path.relpath(path, ROOT))
    return found


def _declared(*tags):
    root = ET.parse(os.path.join(ROOT, 'package.xml')).getroot()
    return {e.text.strip() for t in tags for e in root.iter(t)}


def test_runtime_ros_imports_are_exec_depends():
    declared = _declared('exec_depend', 'depend')
    missing = {k: v for k, v in _ros_imports('sbm_ros').items() if k not in declared}
    missing.update({k: v for k, v in _ros_imports('launch').items() if k not in declared})
    assert not missing, f'imported but not an <exec_depend> of package.xml: {missing}'


def test_test_ros_imports_are_declared():
    declared = _declared('exec_depend', 'depend', 'test_depend')
    missing = {k: v for k, v in _ros_imports('test').items() if k not in declared}
    assert not missing, f'imported by tests but not declared in package.xml: {missing}'

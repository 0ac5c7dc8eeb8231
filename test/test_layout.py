"""The package's rooms and the dependency rule between them (see ``sbm_ros/__init__.py``).

Every import in ``sbm_ros/`` (lazy ones inside functions included) is read from the source with
``ast`` and checked against the rule:

* ``core`` imports nothing else of the package (``sbm_ros.__version__`` aside);
* ``av`` and ``sim`` import only ``core``;
* ``nodes`` imports ``core``, ``av`` and ``sim``, never ``apps``;
* ``testing`` (helpers shipped for tests) imports nothing of the package;
* nothing outside ``nodes`` and ``apps`` imports ROS communication (rclpy, message, service and
  launch packages); two optional ROS libraries that only help outside a graph are allowed
  anywhere: ``cv_bridge`` (image conversion, with a numpy fallback) and ``ament_index_python``
  (finding the installed ``config/`` folder);
* no two modules import each other, directly or around a longer circle.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, 'sbm_ros')

ALLOWED = {
    'core': {'core'},
    'av': {'core', 'av'},
    'sim': {'core', 'sim'},
    'testing': {'testing'},
    'nodes': {'core', 'av', 'sim', 'nodes'},
    'apps': {'core', 'av', 'sim', 'nodes', 'apps', 'testing'},
}
ROS_ROOMS = {'nodes', 'apps'}
ROS_PREFIXES = ('rclpy', 'rcl_interfaces', 'launch', 'launch_ros', 'launch_testing',
                'builtin_interfaces', 'tf2_ros', 'message_filters', 'rosidl_runtime_py')


def _is_ros(module: str) -> bool:
    top = module.split('.')[0]
    return top in ROS_PREFIXES or top.endswith(('_msgs', '_srvs'))


def _modules():
    """{module name: path} of every Python file of the package."""
    out = {}
    for dirpath, _, files in os.walk(PKG):
        for f in files:
            if f.endswith('.py'):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
                out[rel[:-len('.__init__')] if rel.endswith('.__init__') else rel] = path
    return out


def _imports(name: str, path: str):
    """Absolute names imported by a module (``from X import y`` gives X.y when that is a module
    of the package, else X)."""
    tree = ast.parse(open(path).read(), path)
    is_pkg = path.endswith('__init__.py')
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split('.') if is_pkg else name.split('.')[:-1]
                base = base[:len(base) - node.level + 1]
                mod = '.'.join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            found.append(mod)
            found += [f'{mod}.{a.name}' for a in node.names]
    return found


def _room(module: str):
    parts = module.split('.')
    return parts[1] if len(parts) > 1 and parts[0] == 'sbm_ros' else None


MODULES = _modules()
GRAPH = {m: sorted({i for i in _imports(m, p) if i in MODULES and i != m})
         for m, p in MODULES.items()}


def test_every_module_is_in_a_room():
    loose = [m for m in MODULES if m != 'sbm_ros' and _room(m) not in ALLOWED]
    assert not loose, f'modules outside the rooms {sorted(ALLOWED)}: {loose}'


@pytest.mark.parametrize('module', sorted(m for m in MODULES if m != 'sbm_ros'))
def test_dependency_rule(module):
    room = _room(module)
    bad = []
    for imp in _imports(module, MODULES[module]):
        if imp == 'sbm_ros' or imp == 'sbm_ros.__version__':
            continue
        if imp.startswith('sbm_ros.'):
            target = _room(imp)
            if target not in ALLOWED[room]:
                bad.append(f'{imp} (room {target!r})')
        elif _is_ros(imp) and room not in ROS_ROOMS:
            bad.append(f'{imp} (ROS)')
    assert not bad, f'{module} (room {room!r}) may import only {sorted(ALLOWED[room])}: {bad}'


def test_no_import_circles():
    circles = []
    state = {}

    def visit(m, stack):
        state[m] = 1
        for n in GRAPH[m]:
            # a package's __init__ importing its own submodules is not a circle
            if n.startswith(m + '.') or m.startswith(n + '.') and n.count('.') <= 1:
                continue
            if state.get(n) == 1:
                circles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert not circles, 'import circles: ' + '; '.join(' -> '.join(c) for c in circles)

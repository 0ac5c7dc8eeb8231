"""Static checks of the launch files and parameter files: no launch stack, no ROS graph.

Runs where ``launch`` / ``launch_ros`` are not installed (the pip-wheel CI): the nodes' declared
parameters are read from the source with ``ast`` (the ``PARAMS`` lists), and each
``launch/*.launch.py`` is executed against small stand-ins of the launch API that record what a
real launch would start: the nodes, their parameter files and dicts, the launch-wide
``SetParameter``s, environments and conditions. Parameter precedence is modelled as rcl applies
it: wildcard (``/**``) entries first, in command-line order, then node-name entries.

Checked:

* every node parameter file ``config/<node>.yaml`` has the single key ``/**`` (a node-name key
  would silently win over launch overrides) and holds exactly the node's declared parameters,
  with their types;
* the argument tables of ``sbm_launch_common`` name declared parameters with matching types;
* every launch file, with every node-parameter argument given, starts nodes whose effective
  parameter is the given value (also over a user file with a node-name key), and with none
  given keeps the files' values (nothing forced, e.g. ``localizer_node``);
* every declared launch argument is read; every parameter a launch file sets on a node (dicts,
  ``SetParameter``) is declared by that node (or is ``use_sim_time``);
* launch-wide ``SetParameter``s come from launch arguments and never depend on their order
  (the demo's ``use_sim_time`` for virtual_head);
* every ``sbm_localizer`` gets ``OPENBLAS_NUM_THREADS=1`` and ``OMP_NUM_THREADS=1``;
* override files live in one temporary folder removed at exit; ``--show-args`` descriptions
  print YAML values (``false``, not ``False``).
"""

import ast
import importlib.util
import itertools
import os
import sys
import types

import pytest

yaml = pytest.importorskip('yaml')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH_DIR = os.path.join(ROOT, 'launch')
CONFIG_DIR = os.path.join(ROOT, 'config')
NODES = ('binaural_capture', 'sbm_localizer', 'av_fusion', 'virtual_head', 'sbm_calibrator')
LAUNCH_FILES = sorted(f for f in os.listdir(LAUNCH_DIR) if f.endswith('.launch.py'))
BUILTIN_PARAMS = {'use_sim_time'}
LOCALIZER_ENV = {'OPENBLAS_NUM_THREADS': '1', 'OMP_NUM_THREADS': '1'}
_COUNTER = itertools.count()


# ----------------------------------------------------------------------------- declared params
def declared_params(node):
    """{name: default} of ``PARAMS`` in sbm_ros/nodes/<node>.py, read with ast."""
    path = os.path.join(ROOT, 'sbm_ros', 'nodes', f'{node}.py')
    tree = ast.parse(open(path).read(), path)
    for stmt in tree.body:
        if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and getattr(stmt.targets[0], 'id', None) == 'PARAMS'):
            out = {}
            for call in stmt.value.elts:
                assert isinstance(call, ast.Call) and call.func.id == 'Param', ast.dump(call)
                out[ast.literal_eval(call.args[0])] = ast.literal_eval(call.args[1])
            return out
    raise AssertionError(f'{path}: no PARAMS list')


PARAMS = {n: declared_params(n) for n in NODES}


def same_type(value, default):
    """Would a node that declared ``default`` accept ``value`` (rclpy's static typing)?"""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, list):
        return (isinstance(value, list) and bool(value)
                and all(same_type(v, default[0]) for v in value))
    return type(value) is type(default)


def load_common():
    path = os.path.join(LAUNCH_DIR, 'sbm_launch_common.py')
    spec = importlib.util.spec_from_file_location(f'sbm_launch_common_{next(_COUNTER)}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = load_common()
KIND_TYPES = {'str': str, 'int': int, 'float': float, 'bool': bool, 'int_list': list}


# ----------------------------------------------------------------------------- config files
@pytest.mark.parametrize('node', NODES)
def test_config_file_uses_the_wildcard_key(node):
    with open(os.path.join(CONFIG_DIR, f'{node}.yaml')) as fh:
        data = yaml.safe_load(fh)
    assert list(data) == ['/**'], (
        f'config/{node}.yaml: keys {list(data)}; use only /** (a node-name key always wins over '
        'the overrides a launch file passes)')
    assert list(data['/**']) == ['ros__parameters']


@pytest.mark.parametrize('node', NODES)
def test_config_file_holds_the_declared_parameters(node):
    with open(os.path.join(CONFIG_DIR, f'{node}.yaml')) as fh:
        values = yaml.safe_load(fh)['/**']['ros__parameters']
    declared = PARAMS[node]
    assert not set(values) - set(declared), \
        f'config/{node}.yaml: not declared by the node: {sorted(set(values) - set(declared))}'
    assert not set(declared) - set(values), \
        f'config/{node}.yaml: declared parameters missing: {sorted(set(declared) - set(values))}'
    bad = {k: v for k, v in values.items() if not same_type(v, declared[k])}
    assert not bad, f'config/{node}.yaml: values of the wrong type (the node refuses them): {bad}'


def test_argument_tables_name_declared_parameters():
    for arg, (node, fname) in common.CONFIG_ARGS.items():
        assert os.path.isfile(os.path.join(CONFIG_DIR, fname)), (arg, fname)
        assert fname == f'{node}.yaml', (arg, fname)
    specs = common.CAPTURE_ARGS + common.LOCALIZER_ARGS + common.TRAINING_ARGS \
        + common.FUSION_ARGS + common.CALIBRATOR_ARGS + common.HRI_ARGS
    for name, node, param, kind, _ in specs:
        assert param in PARAMS[node], f'argument {name}: {node} declares no parameter {param}'
        default = PARAMS[node][param]
        want = KIND_TYPES[kind]
        assert isinstance(default, want) and (kind == 'bool') == isinstance(default, bool), \
            f'argument {name}: kind {kind!r} but {node}.{param} defaults to {default!r}'


def test_show_args_prints_yaml_values():
    for spec in common.CAPTURE_ARGS + common.LOCALIZER_ARGS + common.TRAINING_ARGS \
            + common.FUSION_ARGS + common.CALIBRATOR_ARGS + common.HRI_ARGS:
        text = common.describe(spec)
        assert 'True' not in text and 'False' not in text, text
    assert common.launch_text(False) == 'false' and common.launch_text(True) == 'true'
    assert common.launch_text([0, 1]) == '[0, 1]'
    assert 'package file: false' in common.describe(
        next(s for s in common.CAPTURE_ARGS if s[0] == 'loop'))


def test_override_files_share_one_folder_removed_at_exit(monkeypatch, tmp_path):
    import atexit
    mod = load_common()
    registered = []
    monkeypatch.setattr(atexit, 'register', lambda f, *a: registered.append((f, a)))
    cfg = tmp_path / 'user.yaml'
    cfg.write_text('/**:\n  ros__parameters: {a: 1}\nsbm_localizer:\n  ros__parameters: {}\n')
    one = mod.override_file(str(cfg), {'a': 2})
    two = mod.override_file(str(cfg), {'b': [0, 1]})
    folder = os.path.dirname(one)
    assert os.path.dirname(two) == folder and folder != os.path.dirname(str(cfg))
    with open(one) as fh:
        assert yaml.safe_load(fh) == {'/**': {'ros__parameters': {'a': 2}},
                                      'sbm_localizer': {'ros__parameters': {'a': 2}}}
    assert len(registered) == 1, 'one cleanup per launch'
    func, args = registered[0]
    func(*args)
    assert not os.path.exists(folder)


# ----------------------------------------------------------------------------- launch stand-ins
class Stub:
    """Any launch / launch_ros class: records its arguments."""

    kind = 'Stub'

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs

    def __repr__(self):
        return f'{self.kind}{self.args}{self.kwargs}'


def _stub_modules():
    classes = {}

    def getattr_(name):
        if name.startswith('__'):
            raise AttributeError(name)
        if name not in classes:
            classes[name] = type(name, (Stub,), {'kind': name})
        return classes[name]

    mods = {}
    for name in ('launch', 'launch.actions', 'launch.conditions', 'launch.substitutions',
                 'launch.launch_description_sources', 'launch.event_handlers', 'launch.events',
                 'launch_ros', 'launch_ros.actions', 'launch_ros.parameter_descriptions',
                 'launch_ros.substitutions', 'launch_ros.descriptions'):
        mod = types.ModuleType(name)
        mod.__getattr__ = getattr_
        mod.__path__ = []
        mods[name] = mod
    return mods


class Reads(dict):
    """launch_configurations that remember which names were read."""

    def __init__(self, *a):
        super().__init__(*a)
        self.read = set()

    def __getitem__(self, k):
        self.read.add(k)
        return super().__getitem__(k)

    def get(self, k, default=None):
        self.read.add(k)
        return super().get(k, default)


class Scope:
    def __init__(self, parent=None):
        self.parent = parent
        self.set_params = []        # (name, Stub value) of SetParameter

    def chain(self):
        return (self.parent.chain() if self.parent else []) + self.set_params


class Launch:
    """Executes a launch file against the stand-ins; ``nodes``: [(Node stub, Scope)]."""

    def __init__(self, filename, given, monkeypatch):
        for name, mod in _stub_modules().items():
            monkeypatch.setitem(sys.modules, name, mod)
        self.cfg = Reads(given)
        self.context = types.SimpleNamespace(launch_configurations=self.cfg)
        self.declared = {}
        self.nodes = []
        self.all_nodes = []         # also those whose condition is false
        self.root = Scope()
        self.process(self.load(os.path.join(LAUNCH_DIR, filename)), self.root)

    @staticmethod
    def load(path):
        spec = importlib.util.spec_from_file_location(f'launch_file_{next(_COUNTER)}', path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.generate_launch_description()

    def process(self, ld, scope):
        (entities,) = ld.args
        for e in entities:
            self.entity(e, scope)

    def entity(self, e, scope):
        kind = getattr(e, 'kind', None)
        if kind == 'DeclareLaunchArgument':
            name = e.args[0]
            default = self.resolve(e.kwargs.get('default_value'))
            self.declared.setdefault(name, default)
            if name not in self.cfg:
                dict.__setitem__(self.cfg, name, default)
        elif kind == 'OpaqueFunction':
            for sub in e.kwargs['function'](self.context) or []:
                self.entity(sub, scope)
        elif kind == 'IncludeLaunchDescription':
            (source,) = e.args
            self.process(self.load(self.resolve(source.args[0])), scope)
        elif kind == 'GroupAction':
            inner = Scope(scope) if e.kwargs.get('scoped', True) else scope
            for sub in e.kwargs.get('actions', e.args[0] if e.args else []):
                self.entity(sub, inner)
        elif kind == 'SetParameter':
            scope.set_params.append((e.kwargs['name'], e.kwargs['value']))
        elif kind == 'Node':
            self.all_nodes.append(e)
            cond = e.kwargs.get('condition')
            if cond is None or self.condition(cond):
                self.nodes.append((e, scope))
        else:
            raise AssertionError(f'the stand-ins do not know {e!r}: extend test_launch_static')

    def condition(self, cond):
        assert cond.kind == 'IfCondition', cond
        return self.resolve(cond.args[0]).strip().lower() in ('true', '1')

    def resolve(self, x):
        if x is None or isinstance(x, (str, int, float, bool)):
            return x
        if isinstance(x, (list, tuple)):
            return ''.join(str(self.resolve(p)) for p in x)
        kind = x.kind
        if kind == 'LaunchConfiguration':
            return self.cfg[x.args[0]]
        if kind == 'PathJoinSubstitution':
            return os.path.join(*[str(self.resolve(p)) for p in x.args[0]])
        if kind == 'FindPackageShare':
            assert x.args[0] == 'sbm_ros'
            return ROOT
        if kind == 'PythonExpression':
            return str(eval(self.resolve(x.args[0])))
        if kind == 'ParameterValue':
            text = self.resolve(x.args[0])
            vt = x.kwargs.get('value_type', str)
            if vt is bool:
                assert text.lower() in ('true', 'false'), text
                return text.lower() == 'true'
            return vt(text)
        raise AssertionError(f'cannot resolve {x!r}')

    def lc_names(self, x):
        """Launch arguments a (possibly nested) substitution reads."""
        if isinstance(x, Stub):
            own = {x.args[0]} if x.kind == 'LaunchConfiguration' else set()
            return own.union(*[self.lc_names(a) for a in x.args],
                             *[self.lc_names(v) for v in x.kwargs.values()])
        if isinstance(x, (list, tuple)):
            return set().union(*[self.lc_names(a) for a in x])
        if isinstance(x, dict):
            return set().union(*[self.lc_names(v) for v in x.values()])
        return set()

    def unread(self):
        """Declared launch arguments that nothing reads."""
        used = set(self.cfg.read)
        for node in self.all_nodes:
            used |= self.lc_names(node.kwargs)
        for _, value in self.root.set_params:
            used |= self.lc_names(value)
        return sorted(set(self.declared) - used)

    def node(self, executable):
        found = [n for n, _ in self.nodes if n.kwargs['executable'] == executable]
        assert len(found) == 1, f'{len(found)} {executable} node(s) started'
        return found[0]

    def effective(self, node):
        """(parameters the node ends up with, {launch argument: parameter} of its dicts)."""
        scope = next(s for n, s in self.nodes if n is node)
        name = node.kwargs['name']
        keys = ('/' + name, name)
        wild, named, from_args = [], [], {}
        for pname, value in scope.chain():             # -p name:=value, i.e. /**
            value = self.resolve(value)
            wild.append({pname: yaml.safe_load(value) if isinstance(value, str) else value})
        for item in node.kwargs.get('parameters', []):
            if isinstance(item, dict):                  # launch_ros: a file under the node name
                named.append({k: self.resolve(v) for k, v in item.items()})
                for k, v in item.items():
                    for arg in self.lc_names(v):
                        from_args[arg] = k
                continue
            with open(self.resolve(item)) as fh:
                data = yaml.safe_load(fh) or {}
            for key, body in data.items():
                params = (body or {}).get('ros__parameters', {}) or {}
                if key == '/**':
                    wild.append(params)
                elif key in keys:
                    named.append(params)
        out = {}
        for d in wild + named:
            out.update(d)
        return out, from_args


def sample_value(kind, name):
    """A valid, distinctive launch-argument text and the value the node should get."""
    return {'str': (f'x_{name}', f'x_{name}'), 'int': ('7', 7), 'float': ('0.25', 0.25),
            'bool': ('true', True), 'int_list': ('[1, 0]', [1, 0])}[kind]


def launch_specs(filename):
    """Node-parameter argument specs of a launch file built on sbm_launch_common."""
    mod = {'robot.launch.py': 'robot', 'replay.launch.py': 'robot',
           'training.launch.py': 'training', 'calibrate.launch.py': 'calibrate'}.get(filename)
    if mod == 'calibrate':
        return common.CALIBRATE_ARGS
    if mod == 'robot':
        return common.CAPTURE_ARGS + common.LOCALIZER_ARGS + common.FUSION_ARGS \
            + common.HRI_ARGS
    if mod == 'training':
        return common.TRAINING_ARGS + common.FUSION_ARGS
    return None


COMMON_FILES = [f for f in LAUNCH_FILES if launch_specs(f) is not None]


def test_every_launch_file_is_checked():
    assert set(LAUNCH_FILES) == set(COMMON_FILES) | {'demo.launch.py'}, LAUNCH_FILES


@pytest.mark.parametrize('filename', COMMON_FILES)
def test_given_arguments_reach_their_parameters(filename, monkeypatch):
    specs = launch_specs(filename)
    given = {}
    want = {}
    for name, node, param, kind, _ in specs:
        given[name], want[(node, param)] = sample_value(kind, name)
    given.update(use_capture='true', use_av_fusion='true')
    run = Launch(filename, given, monkeypatch)
    for (node, param), value in want.items():
        got, _ = run.effective(run.node(node))
        assert got.get(param) == value and same_type(got.get(param), PARAMS[node][param]), \
            f'{filename}: {node}.{param} = {got.get(param)!r}, argument gave {value!r}'
    assert not run.unread(), f'{filename}: declared but never read: {run.unread()}'


def _user_files(tmp_path, specs, given):
    """*_config files with the package values under the NODE NAME key (which rcl applies after
    every /** entry), one parameter that no argument sets changed; {(node, param): value}."""
    changed = {}
    started = {n for _, n, _, _, _ in specs}
    for arg, (node, fname) in common.CONFIG_ARGS.items():
        if node not in started:       # a config argument of a node this launch does not start
            continue
        with open(os.path.join(CONFIG_DIR, fname)) as fh:
            values = yaml.safe_load(fh)['/**']['ros__parameters']
        by_args = {p for _, n, p, _, _ in specs if n == node}
        param = next(p for p, v in values.items()
                     if p not in by_args and type(v) in (int, float) and not isinstance(v, bool))
        values[param] = values[param] + 3
        changed[(node, param)] = values[param]
        user = tmp_path / fname
        user.write_text(yaml.safe_dump({node: {'ros__parameters': values}}))
        given[arg] = str(user)
    return changed


@pytest.mark.parametrize('filename', COMMON_FILES)
def test_given_arguments_beat_a_user_file_with_a_node_name_key(filename, monkeypatch, tmp_path):
    specs = launch_specs(filename)
    given = {'use_capture': 'true', 'use_av_fusion': 'true'}
    want = {}
    for name, node, param, kind, _ in specs:
        given[name], want[(node, param)] = sample_value(kind, name)
    kept = _user_files(tmp_path, specs, given)
    run = Launch(filename, given, monkeypatch)
    for (node, param), value in list(want.items()) + list(kept.items()):
        got, _ = run.effective(run.node(node))
        assert got.get(param) == value, \
            f'{filename}: {node}.{param} = {got.get(param)!r}, want {value!r}'


@pytest.mark.parametrize('filename', COMMON_FILES)
def test_localizer_node_from_the_file_unless_given(filename, monkeypatch, tmp_path):
    node = ('sbm_calibrator' if any(n == 'sbm_calibrator' for _, n, _, _, _
                                    in launch_specs(filename)) else 'av_fusion')
    cfg_arg = next(a for a, (n, _) in common.CONFIG_ARGS.items() if n == node)
    user = tmp_path / 'user.yaml'
    user.write_text(f'{node}:\n  ros__parameters:\n    localizer_node: from_file\n')
    for extra, want in (({}, 'from_file'), ({'localizer_node': 'given'}, 'given')):
        run = Launch(filename, {cfg_arg: str(user), 'use_capture': 'true', **extra},
                     monkeypatch)
        got, _ = run.effective(run.node(node))
        assert got['localizer_node'] == want, (filename, extra, got['localizer_node'])


@pytest.mark.parametrize('filename', COMMON_FILES)
def test_nothing_given_keeps_the_files_values(filename, monkeypatch):
    run = Launch(filename, {'use_capture': 'true'}, monkeypatch)
    assert run.nodes, filename
    for node, _ in run.nodes:
        exe = node.kwargs['executable']
        if exe not in PARAMS:
            continue
        got, from_args = run.effective(node)
        with open(os.path.join(CONFIG_DIR, f'{exe}.yaml')) as fh:
            package = yaml.safe_load(fh)['/**']['ros__parameters']
        set_by_launch = set(from_args.values()) | {p for p, _ in run.root.set_params}
        assert len(node.kwargs['parameters']) == 1, \
            f'{filename}: {exe} gets a second parameter file although nothing was given'
        for param, value in package.items():
            if param not in set_by_launch:
                assert got.get(param, value) == value, \
                    f'{filename}: {exe}.{param} forced to {got.get(param)!r} (file: {value!r})'


@pytest.mark.parametrize('filename', LAUNCH_FILES)
def test_launch_parameters_are_declared_by_their_nodes(filename, monkeypatch):
    run = Launch(filename, {'use_capture': 'true', 'model_path_two': 'two.npz'}, monkeypatch)
    for node, _ in run.nodes:
        exe = node.kwargs['executable']
        if exe not in PARAMS:
            continue
        got, _ = run.effective(node)
        unknown = set(got) - set(PARAMS[exe]) - BUILTIN_PARAMS
        assert not unknown, f'{filename}: {exe} does not declare {sorted(unknown)}'
        bad = {k: v for k, v in got.items()
               if k in PARAMS[exe] and not same_type(v, PARAMS[exe][k])}
        assert not bad, f'{filename}: {exe} gets values of the wrong type: {bad}'


@pytest.mark.parametrize('filename', LAUNCH_FILES)
def test_launch_wide_parameters_come_from_arguments(filename, monkeypatch):
    run = Launch(filename, {'use_capture': 'true'}, monkeypatch)
    names = [n for n, _ in run.root.set_params]
    assert len(names) == len(set(names)), \
        f'{filename}: SetParameter of the same name twice (the result depends on the order)'
    for pname, value in run.root.set_params:
        assert run.lc_names(value), \
            f'{filename}: SetParameter({pname}) to a constant reaches every node: scope it'


@pytest.mark.parametrize('sim', ['true', 'false'])
@pytest.mark.parametrize('two', ['', 'two.npz'])
def test_demo_arguments_reach_their_nodes(sim, two, monkeypatch):
    given = {'use_sim_time': sim, 'model_path_two': two, 'model_path': 'one.npz',
             'rate': '2.5', 'loop': 'false', 'n_sources': '0', 'scenario': 's.yaml',
             'ros4hri': sim}
    run = Launch('demo.launch.py', given, monkeypatch)
    head = run.node('virtual_head')
    got, from_args = run.effective(head)
    assert got['use_sim_time'] is False and got['publish_clock'] is (sim == 'true')
    assert (got['rate'], got['loop'], got['scenario']) == (2.5, False, 's.yaml')
    for exe in ('sbm_localizer', 'av_fusion'):
        got, _ = run.effective(run.node(exe))
        assert got.get('use_sim_time') is (sim == 'true'), f'{exe}: use_sim_time'
    for exe in ('sbm_localizer', 'av_fusion'):       # one argument, both nodes
        got, _ = run.effective(run.node(exe))
        assert got.get('ros4hri') is (sim == 'true'), f'{exe}: ros4hri'
    got, from_args = run.effective(run.node('sbm_localizer'))
    assert (got['model_path'], got['n_sources']) == ('one.npz', 0)
    assert got.get('model_path_two', '') == two
    for node, _ in run.nodes:
        _, from_args = run.effective(node)
        for arg, param in from_args.items():
            assert arg in run.declared, f'{node.kwargs["name"]}: undeclared argument {arg}'
            assert param in set(PARAMS[node.kwargs['executable']]) | BUILTIN_PARAMS, (arg, param)
    assert not run.unread(), f'demo.launch.py: declared but never read: {run.unread()}'


@pytest.mark.parametrize('filename', LAUNCH_FILES)
def test_every_localizer_runs_one_blas_thread(filename, monkeypatch):
    for two in ('', 'two.npz'):
        run = Launch(filename, {'use_capture': 'true', 'model_path_two': two}, monkeypatch)
        localizers = [n for n, _ in run.nodes if n.kwargs['executable'] == 'sbm_localizer']
        assert localizers, filename
        for node in localizers:
            env = node.kwargs.get('additional_env') or {}
            assert {k: env.get(k) for k in LOCALIZER_ENV} == LOCALIZER_ENV, \
                f'{filename}: sbm_localizer environment {env}'


@pytest.mark.parametrize('filename', ['robot.launch.py', 'replay.launch.py'])
@pytest.mark.parametrize('value', ['true', 'false'])
def test_ros4hri_argument_reaches_localizer_and_fusion(filename, value, monkeypatch):
    run = Launch(filename, {'use_capture': 'true', 'use_av_fusion': 'true', 'ros4hri': value},
                 monkeypatch)
    for exe in ('sbm_localizer', 'av_fusion'):
        got, _ = run.effective(run.node(exe))
        assert got.get('ros4hri') is (value == 'true'), (filename, exe, got.get('ros4hri'))
    run = Launch(filename, {'use_capture': 'true', 'use_av_fusion': 'true'}, monkeypatch)
    for exe in ('sbm_localizer', 'av_fusion'):     # not given: the package files' false
        got, _ = run.effective(run.node(exe))
        assert got.get('ros4hri', False) is False, (filename, exe)


@pytest.mark.parametrize('head', ['true', 'false'])
def test_calibrate_starts_the_capture_only_without_the_virtual_head(head, monkeypatch):
    # the virtual head publishes the sweep's audio itself: a microphone capture next to it would
    # mix a real room into the virtual sweep (found running the real launch stack: two
    # publishers on audio/audio_stamped with use_virtual_head:=true alone)
    run = Launch('calibrate.launch.py', {'use_virtual_head': head}, monkeypatch)
    names = [e.kwargs.get('name') for e, _ in run.nodes]
    assert ('binaural_capture' in names) == (head == 'false'), names
    assert ('virtual_head' in names) == (head == 'true'), names
    assert 'sbm_calibrator' in names and 'sbm_localizer' in names, names

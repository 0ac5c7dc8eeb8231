"""Shared by the sbm_ros launch files: which launch argument sets which node parameter, and how.

Not a launch file itself (``ros2 launch`` lists only ``*.launch.py``). The tables below are plain
data, importable without the launch stack: ``test/test_launch_static.py`` checks them against the
nodes' declared parameters and the config files in CI, where ``launch`` is not installed.

Precedence (robot.launch.py, training.launch.py, replay.launch.py, calibrate.launch.py): a node
reads its ``*_config`` parameter file first; a launch argument that is GIVEN on the command line
wins over the file; an argument that is not given (its default is the empty string) leaves the
file's value. That holds whatever top-level key the file uses (``/**``, ``binaural_capture``,
...): the given arguments are written to a second parameter file under ``/**`` and under each of
the first file's own keys, so an exact node-name key in a user's file cannot silently beat them.
No parameter is forced: what is not given comes from the file (``localizer_node`` of av_fusion
too). The second files live in one temporary folder per launch, removed when ``ros2 launch``
exits (after its nodes: a node that is still starting can always read its file).

Every sbm_localizer process gets ``LOCALIZER_ENV`` (one OpenBLAS / OpenMP thread): its
``blas_threads`` parameter does the same through threadpoolctl, which has no rosdep key and may
be missing on a robot.
"""

import atexit
import copy
import os
import shutil
import tempfile

# node names (= executables) of the package
CAPTURE = 'binaural_capture'
LOCALIZER = 'sbm_localizer'
FUSION = 'av_fusion'
HEAD = 'virtual_head'
CALIBRATOR = 'sbm_calibrator'

# config argument -> (node, package config file)
CONFIG_ARGS = {
    'capture_config': (CAPTURE, 'binaural_capture.yaml'),
    'localizer_config': (LOCALIZER, 'sbm_localizer.yaml'),
    'av_fusion_config': (FUSION, 'av_fusion.yaml'),
    'calibrator_config': (CALIBRATOR, 'sbm_calibrator.yaml'),
}
# the config arguments robot / training / replay declare (calibrate.launch.py: its own nodes)
DEFAULT_CONFIG_NODES = (CAPTURE, LOCALIZER, FUSION)

# Node-parameter arguments: (launch argument, node, parameter, type, description).
# type: 'str', 'int', 'float', 'bool' or 'int_list' (a YAML list such as '[0, 1]').
CAPTURE_ARGS = [
    ('source', CAPTURE, 'source', 'str',
     "capture source: 'device' (sounddevice) or 'file' (WAV)"),
    ('device', CAPTURE, 'device', 'str',
     'sounddevice input device (index or part of its name)'),
    ('sample_rate', CAPTURE, 'sample_rate', 'int', 'capture sample rate in Hz (must match the '
     'model)'),
    ('block_size', CAPTURE, 'block_size', 'int', 'samples per audio chunk'),
    ('channel_map', CAPTURE, 'channel_map', 'int_list',
     "device channels used as [left ear, right ear], e.g. '[0, 1]'"),
    ('file_path', CAPTURE, 'file_path', 'str', 'WAV file for source:=file'),
    ('loop', CAPTURE, 'loop', 'bool', 'loop the WAV file (source:=file)'),
    ('frame_id', CAPTURE, 'frame_id', 'str',
     'frame of the head (audio chunks and sound_directions)'),
]
LOCALIZER_ARGS = [
    ('model_path', LOCALIZER, 'model_path', 'str',
     'SBM model file (.npz); can be changed at runtime (ros2 param set)'),
    ('n_sources', LOCALIZER, 'n_sources', 'int',
     'simultaneous sources to localise: 1 or 2 (must match the model), or 0 = automatic '
     '(model_path one-source + model_path_two two-source)'),
    ('model_path_two', LOCALIZER, 'model_path_two', 'str',
     'two-source SBM model for n_sources:=0 (automatic)'),
    ('auto_threshold', LOCALIZER, 'auto_threshold', 'float',
     'automatic mode: evidence margin (nats per active entry) for two sources'),
    ('window_s', LOCALIZER, 'window_s', 'float',
     'localisation window in s (0 = 0.72 s for one source, 1.2 s for two)'),
    ('estimate_rate', LOCALIZER, 'estimate_rate', 'float', 'estimates per second of audio'),
    ('min_active_fraction', LOCALIZER, 'min_active_fraction', 'float',
     'minimum active fraction of a window (silence gate)'),
    ('audio_reliability', LOCALIZER, 'audio_reliability', 'str',
     "QoS reliability of the localiser's audio subscription ('reliable' or 'best_effort')"),
]
# training.launch.py (its argument names predate robot.launch.py's and are kept)
TRAINING_ARGS = [
    ('audio_source', CAPTURE, 'source', 'str',
     "binaural_capture source: 'device' (sound card) or 'file' (WAV)"),
    ('device', CAPTURE, 'device', 'str', 'sound card (index or part of its name)'),
    ('channel_map', CAPTURE, 'channel_map', 'int_list',
     "sound card channels used as [left ear, right ear], e.g. '[0, 1]'"),
    ('file_path', CAPTURE, 'file_path', 'str', "stereo WAV played when audio_source is 'file'"),
    ('sample_rate', CAPTURE, 'sample_rate', 'int', 'audio sample rate (Hz)'),
    ('block_size', CAPTURE, 'block_size', 'int', 'samples per audio chunk'),
    ('loop', CAPTURE, 'loop', 'bool', "loop the WAV file (audio_source:=file)"),
    ('model_path', LOCALIZER, 'model_path', 'str', 'model the localizer starts with (the '
     "package file: none until ~/train)"),
    ('image_reliability', FUSION, 'image_reliability', 'str',
     "QoS reliability of the image subscription ('reliable' or 'best_effort')"),
    ('dataset_dir', FUSION, 'dataset_dir', 'str', 'training dataset folder (sbm-train format)'),
    ('capture_duration', FUSION, 'capture_duration', 'float',
     'seconds of white noise recorded per training sample'),
    ('min_rms_dbfs', FUSION, 'min_rms_dbfs', 'float',
     'captures quieter than this (dBFS) are refused'),
    ('marker_dictionary', FUSION, 'marker_dictionary', 'str',
     'OpenCV ArUco dictionary of the loudspeaker marker'),
    ('marker_id', FUSION, 'marker_id', 'int', 'ArUco id of the loudspeaker marker'),
    ('train_components', FUSION, 'train_components', 'int',
     'GLLiM components for ~/train (0 = automatic)'),
]
# robot.launch.py, replay.launch.py and training.launch.py
FUSION_ARGS = [
    ('localizer_node', FUSION, 'localizer_node', 'str',
     'node whose model_path ~/train sets (the localizer of this launch is sbm_localizer)'),
]

# calibrate.launch.py: sbm_calibrator's arguments
CALIBRATOR_ARGS = [
    ('dataset_dir', CALIBRATOR, 'dataset_dir', 'str',
     'dataset folder the sweep appends to (sbm-train format)'),
    ('tolerance', CALIBRATOR, 'tolerance', 'float',
     'marker motion tolerance of a segment (tolerance_unit, degrees by default)'),
    ('min_duration_s', CALIBRATOR, 'min_duration_s', 'float', 'shortest accepted segment (s)'),
    ('coverage_complete', CALIBRATOR, 'coverage_complete', 'float',
     'fraction of covered grid cells that completes the sweep'),
    ('marker_dictionary', CALIBRATOR, 'marker_dictionary', 'str',
     'OpenCV ArUco dictionary of the loudspeaker marker'),
    ('marker_id', CALIBRATOR, 'marker_id', 'int', 'ArUco id of the loudspeaker marker'),
    ('image_reliability', CALIBRATOR, 'image_reliability', 'str',
     "QoS reliability of the image subscription ('reliable' or 'best_effort')"),
    ('train_on_stop', CALIBRATOR, 'train_on_stop', 'bool', 'train when ~/stop_sweep ends a sweep'),
    ('train_components', CALIBRATOR, 'train_components', 'int',
     'GLLiM components for ~/train (0 = automatic)'),
    ('train_two_source', CALIBRATOR, 'train_two_source', 'bool',
     '~/train also fits a two-source model from the same sweep and hands both over (automatic '
     'one/two-source mode)'),
    ('train_pairs', CALIBRATOR, 'train_pairs', 'int', 'two-source training mixtures'),
    ('train_components_two', CALIBRATOR, 'train_components_two', 'int',
     'GLLiM components of the two-source model (0 = automatic)'),
    ('localizer_node', CALIBRATOR, 'localizer_node', 'str',
     'node whose model_path (and model_path_two, n_sources) ~/train sets (the localizer of this '
     'launch is sbm_localizer)'),
]
CALIBRATE_ARGS = [a for a in TRAINING_ARGS if a[1] in (CAPTURE, LOCALIZER)] + CALIBRATOR_ARGS

# ROS4HRI (REP 155) output: one argument, the same parameter on both nodes (robot.launch.py,
# replay.launch.py; demo.launch.py declares its own 'ros4hri' argument for the same two nodes).
HRI_ARGS = [
    ('ros4hri', LOCALIZER, 'ros4hri', 'bool',
     'ROS4HRI output: voices (/humans/voices/...) from sbm_localizer and VOICE-FACE '
     '/humans/candidate_matches from av_fusion (needs hri_msgs)'),
    ('ros4hri', FUSION, 'ros4hri', 'bool',
     'ROS4HRI output: voices (/humans/voices/...) from sbm_localizer and VOICE-FACE '
     '/humans/candidate_matches from av_fusion (needs hri_msgs)'),
]

# Environment of every sbm_localizer process (see the module docstring).
LOCALIZER_ENV = {'OPENBLAS_NUM_THREADS': '1', 'OMP_NUM_THREADS': '1'}

# The empty string means "not given": the node keeps its config file's value.
UNSET = ''
_BOOLS = {'true': True, 'false': False}


def package_config_dir():
    """config/ next to this file's launch/ (the source tree and the installed share dir)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'config')


def config_values(path):
    """{parameter: value} of a parameter file, merged over all its keys ('/**' first)."""
    import yaml
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    out = {}
    for key in sorted(data, key=lambda k: k != '/**'):
        out.update((data[key] or {}).get('ros__parameters', {}) or {})
    return out


def node_of(config_arg):
    return CONFIG_ARGS[config_arg][0]


def config_arg_of(node):
    return next(a for a, (n, _) in CONFIG_ARGS.items() if n == node)


def launch_text(value):
    """A parameter value as it is written in a launch argument / YAML: true, 0.5, [0, 1], 'x'."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(launch_text(v) for v in value) + ']'
    if isinstance(value, str):
        return repr(value)
    return str(value)


def describe(spec):
    """Description of a node-parameter argument, with the package file's value."""
    name, node, param, _, text = spec
    cfg_arg = config_arg_of(node)
    shown = ''
    try:
        value = config_values(os.path.join(package_config_dir(), CONFIG_ARGS[cfg_arg][1]))
        if param in value:
            shown = f'; package file: {launch_text(value[param])}'
    except (OSError, ValueError):
        pass
    return (f'{text} [{node} parameter {param}; not given = the value in {cfg_arg}{shown}]')


def parse_value(name, text, kind):
    """Launch-argument text -> typed parameter value (a clear error for bad input)."""
    try:
        if kind == 'str':
            return text
        if kind == 'int':
            return int(text, 0)
        if kind == 'float':
            return float(text)
        if kind == 'bool':
            return _BOOLS[text.strip().lower()]
        if kind == 'int_list':
            import yaml
            value = yaml.safe_load(text)
            if not (isinstance(value, list) and value
                    and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
                raise ValueError(text)
            return value
    except (KeyError, ValueError) as exc:
        raise ValueError(f"launch argument {name}:={text!r} is not a valid {kind} "
                         f"({type(exc).__name__})") from None
    raise ValueError(f'unknown kind {kind!r}')


def given_params(context, specs, node):
    """{parameter: typed value} of the arguments of ``node`` given on the command line."""
    out = {}
    for name, n, param, kind, _ in specs:
        text = context.launch_configurations.get(name, UNSET)
        if n == node and text != UNSET:
            out[param] = parse_value(name, text, kind)
    return out


_OVERRIDE_DIR = []


def override_dir():
    """This launch's folder of override files (created once, removed when the process exits).

    Removed at exit rather than on launch's Shutdown event: that event comes while the nodes
    are being stopped, and a node stopped while still starting has not read its file yet.
    """
    if not _OVERRIDE_DIR:
        path = tempfile.mkdtemp(prefix='sbm_launch_')
        atexit.register(shutil.rmtree, path, True)
        _OVERRIDE_DIR.append(path)
    return _OVERRIDE_DIR[0]


def override_file(config_path, params, name='overrides'):
    """A parameter file with ``params`` under '/**' and under every key of ``config_path``."""
    import yaml
    keys = ['/**']
    with open(config_path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f'{config_path}: not a ROS 2 parameter file (a mapping)')
    keys += [k for k in data if k != '/**']
    fd, path = tempfile.mkstemp(prefix=f'{name}_', suffix='.yaml', dir=override_dir())
    with os.fdopen(fd, 'w') as fh:
        # deep copies: a shared object would be written as a YAML alias, which rcl refuses
        yaml.safe_dump({k: {'ros__parameters': copy.deepcopy(params)} for k in keys}, fh,
                       default_flow_style=False)
    return path


def declare_param_arguments(specs):
    from launch.actions import DeclareLaunchArgument
    out, seen = [], set()
    for spec in specs:          # an argument that sets several nodes is declared once
        if spec[0] not in seen:
            seen.add(spec[0])
            out.append(DeclareLaunchArgument(spec[0], default_value=UNSET,
                                             description=describe(spec)))
    return out


def declare_config_arguments(nodes=DEFAULT_CONFIG_NODES):
    from launch.actions import DeclareLaunchArgument
    from launch.substitutions import PathJoinSubstitution
    from launch_ros.substitutions import FindPackageShare
    return [DeclareLaunchArgument(
        arg, default_value=PathJoinSubstitution([FindPackageShare('sbm_ros'), 'config', fname]),
        description=f'{node} parameter file; the node-parameter arguments that are given '
        'override it, the others leave its values')
        for arg, (node, fname) in CONFIG_ARGS.items() if node in nodes]


def configured_node(context, specs, node, **node_kwargs):
    """The launch_ros Node ``node`` with its config file, then the given arguments on top."""
    from launch_ros.actions import Node
    cfg_arg = config_arg_of(node)
    config_path = os.path.expanduser(context.launch_configurations[cfg_arg])
    if not os.path.isfile(config_path):
        raise RuntimeError(f'{cfg_arg}:={config_path!r}: no such file')
    params = given_params(context, specs, node)
    parameters = [config_path]
    if params:
        parameters.append(override_file(config_path, params, name=node))
    if node == LOCALIZER:
        node_kwargs['additional_env'] = {**LOCALIZER_ENV, **node_kwargs.get('additional_env', {})}
    return Node(package='sbm_ros', executable=node, name=node, output='screen',
                parameters=parameters, **node_kwargs)

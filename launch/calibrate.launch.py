"""Calibration by sweep: binaural_capture (or the virtual head) + sbm_calibrator + sbm_localizer.

Move a loudspeaker that plays white noise and carries an ArUco marker slowly through the whole
camera view (about three minutes) between

    ros2 service call /sbm_calibrator/start_sweep std_srvs/srv/Trigger
    ros2 service call /sbm_calibrator/stop_sweep std_srvs/srv/Trigger

watching ``calibration_overlay`` (covered cells green, missing red) and
``/sbm_calibrator/calibration_status`` (samples, coverage, complete, rejections). Then

    ros2 service call /sbm_calibrator/train std_srvs/srv/Trigger

fits the one-source model (cross-validated error on the status topic and in the model file),
then a two-source model from the same sweep (``train_two_source:=false``: one-source only), and
hands both to the running sbm_localizer (``model_path``, ``model_path_two``, ``n_sources: 0``,
automatic one/two-source mode); ``train_on_stop:=true`` trains on stop.

Usage:
    ros2 launch sbm_ros calibrate.launch.py image:=/camera/image_raw \\
        camera_info:=/camera/camera_info dataset_dir:=$HOME/sbm_sweep marker_id:=7
    # without a robot: the virtual head renders config/sweep_scenario.yaml (about a minute),
    # then plays it once ~/start_sweep has been called (it publishes camera_info meanwhile)
    ros2 launch sbm_ros calibrate.launch.py use_virtual_head:=true image_reliability:=reliable

The camera driver is started separately. Each node reads its ``*_config`` parameter file
(default: the package's ``config/*.yaml``); a node-parameter argument GIVEN on the command line
wins over that file, one that is not given (default: empty) leaves the file's value.
``--show-args`` lists everything.
"""

import importlib.util
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node, SetParameter
from launch_ros.parameter_descriptions import ParameterValue


def _load_common():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'sbm_launch_common.py')
    spec = importlib.util.spec_from_file_location('sbm_launch_common', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = _load_common()

# (name, default, description) of the arguments that are not node parameters
ARGUMENTS = [
    ('use_sim_time', 'false', 'Use /clock (bag replay) in all nodes.'),
    ('use_capture', 'true', 'Start binaural_capture (false: audio comes from elsewhere; never '
     'started with use_virtual_head:=true).'),
    ('use_virtual_head', 'false', 'Start virtual_head playing a calibration sweep (no robot); '
     'binaural_capture is then not started, so no microphone mixes into the sweep.'),
    ('sweep', 'default', "Sweep file the virtual head plays ('default' = the package's "
     'config/sweep_scenario.yaml).'),
    ('rate', '1.0', 'Virtual head speed (1.0 = real time).'),
    ('image', 'image', 'Camera image topic (sensor_msgs/Image).'),
    ('camera_info', 'camera_info', 'Camera info topic (sensor_msgs/CameraInfo).'),
]
PARAM_ARGUMENTS = common.CALIBRATE_ARGS
NODES = (common.CAPTURE, common.LOCALIZER, common.CALIBRATOR)


def _true(value) -> bool:
    return str(value).strip().lower() in ('true', '1', 'yes', 'on')


def _nodes(context):
    lc = LaunchConfiguration
    remaps = [('image', lc('image')), ('camera_info', lc('camera_info'))]
    head = Node(package='sbm_ros', executable=common.HEAD, name=common.HEAD, output='screen',
                parameters=[{'sweep': lc('sweep'),
                             'rate': ParameterValue(lc('rate'), value_type=float),
                             # plays once ~/start_sweep is called (camera_info until then)
                             'start_on_sweep': f'{common.CALIBRATOR}/calibration_status'}],
                remappings=remaps, condition=IfCondition(lc('use_virtual_head')))
    cfg = context.launch_configurations
    # the virtual head publishes the audio itself: a microphone capture next to it would mix
    # a real room into the virtual sweep (two publishers on one topic)
    capture = [] if _true(cfg.get('use_virtual_head', 'false')) else [
        common.configured_node(context, PARAM_ARGUMENTS, common.CAPTURE,
                               condition=IfCondition(lc('use_capture')))]
    return capture + [
        head,
        common.configured_node(context, PARAM_ARGUMENTS, common.LOCALIZER, remappings=remaps),
        common.configured_node(context, PARAM_ARGUMENTS, common.CALIBRATOR, remappings=remaps),
    ]


def generate_launch_description():
    args = [DeclareLaunchArgument(n, default_value=d, description=desc)
            for n, d, desc in ARGUMENTS]
    return LaunchDescription(
        args + common.declare_config_arguments(NODES)
        + common.declare_param_arguments(PARAM_ARGUMENTS) + [
            SetParameter(name='use_sim_time', value=ParameterValue(
                LaunchConfiguration('use_sim_time'), value_type=bool)),
            OpaqueFunction(function=_nodes)])

"""Training capture (paper section VI): binaural_capture + sbm_localizer + av_fusion.

Move a loudspeaker that plays white noise and carries an ArUco marker across the camera's field
of view; at each position call

    ros2 service call /av_fusion/capture_sample std_srvs/srv/Trigger

(each call records ``capture_duration`` s of audio with the marker's pixel position and appends
it to ``dataset_dir``). Then

    ros2 service call /av_fusion/train std_srvs/srv/Trigger

fits a model in the background and hands it to the running sbm_localizer (its ``model_path``
parameter); progress on ``/av_fusion/training_status``.

Usage:
    ros2 launch sbm_ros training.launch.py image:=/camera/image_raw \\
        camera_info:=/camera/camera_info dataset_dir:=$HOME/sbm_dataset marker_id:=0

The camera driver and (for speaking faces) a face detector publishing
vision_msgs/Detection2DArray on ``faces`` are started separately. A WAV source
(``audio_source:=file file_path:=...``) plays once unless ``loop:=true``.

Each node reads its ``*_config`` parameter file (default: the package's ``config/*.yaml``); a
node-parameter argument GIVEN on the command line wins over that file, one that is not given
(default: empty) leaves the file's value. ``--show-args`` lists everything.
"""

import importlib.util
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import SetParameter
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
    ('image', 'image', 'Camera image topic (sensor_msgs/Image).'),
    ('camera_info', 'camera_info', 'Camera info topic (sensor_msgs/CameraInfo).'),
    ('faces', 'faces', 'Face detections topic (vision_msgs/Detection2DArray), optional.'),
]
PARAM_ARGUMENTS = common.TRAINING_ARGS + common.FUSION_ARGS


def _nodes(context):
    lc = LaunchConfiguration
    remaps = [('image', lc('image')), ('camera_info', lc('camera_info'))]
    return [
        common.configured_node(context, PARAM_ARGUMENTS, common.CAPTURE),
        common.configured_node(context, PARAM_ARGUMENTS, common.LOCALIZER, remappings=remaps),
        common.configured_node(context, PARAM_ARGUMENTS, common.FUSION,
                               remappings=remaps + [('faces', lc('faces'))]),
    ]


def generate_launch_description():
    args = [DeclareLaunchArgument(n, default_value=d, description=desc)
            for n, d, desc in ARGUMENTS]
    return LaunchDescription(
        args + common.declare_config_arguments()
        + common.declare_param_arguments(PARAM_ARGUMENTS) + [
            SetParameter(name='use_sim_time', value=ParameterValue(
                LaunchConfiguration('use_sim_time'), value_type=bool)),
            OpaqueFunction(function=_nodes)])

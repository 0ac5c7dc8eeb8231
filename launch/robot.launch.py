"""sbm_ros on the robot: ear microphones -> sound sources -> speaking faces.

    ros2 launch sbm_ros robot.launch.py model_path:=/path/model.npz [device:=hw:1] \
        [camera_info_topic:=/camera/camera_info] [faces_topic:=/humans/faces] ...

Starts ``binaural_capture`` (sounddevice, or a WAV file with ``source:=file
file_path:=...``), ``sbm_localizer`` and ``av_fusion``. Each node reads its parameter file
(``capture_config``, ``localizer_config``, ``av_fusion_config``; default: the package's
``config/*.yaml``); a node-parameter argument GIVEN on the command line wins over that file, one
that is not given (default: empty) leaves the file's value, so your own file can set
``device``, ``channel_map``, ``model_path``, ``estimate_rate``... ``use_sim_time`` is given to
all nodes; topics are remapped with the ``*_topic`` arguments. ``use_capture:=false`` leaves the
capture node out (that is what ``replay.launch.py`` does for ``ros2 bag play``).
``ros2 launch sbm_ros robot.launch.py --show-args`` lists everything.
"""

import importlib.util
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
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
    ('use_sim_time', 'false', 'all nodes on /clock (bag replay)'),
    ('use_capture', 'true', 'start binaural_capture (false: audio comes from elsewhere)'),
    ('use_av_fusion', 'true', 'start av_fusion (speaking faces, overlay, training)'),
    ('log_level', 'info', 'log level of all nodes (debug, info, warn, error)'),
    # topics (remappings)
    ('audio_topic', 'audio/audio_stamped', 'binaural audio chunks'),
    ('audio_info_topic', 'audio/audio_info', 'audio format (transient local)'),
    ('camera_info_topic', 'camera_info', 'camera calibration (sensor_msgs/CameraInfo)'),
    ('image_topic', 'image', 'camera image for the av_fusion overlay'),
    ('faces_topic', 'faces', 'face detections (vision_msgs/Detection2DArray)'),
    ('sound_sources_topic', 'sound_sources', 'sound sources in pixels (Detection2DArray)'),
    ('sound_directions_topic', 'sound_directions', 'sound directions (PoseArray, head frame)'),
    ('speaking_faces_topic', 'speaking_faces', 'faces with speaking scores (Detection2DArray)'),
    ('overlay_topic', 'overlay', 'image with faces and sound estimates'),
]
PARAM_ARGUMENTS = (common.CAPTURE_ARGS + common.LOCALIZER_ARGS + common.FUSION_ARGS
                   + common.HRI_ARGS)


def _nodes(context):
    lc = LaunchConfiguration
    ros_args = ['--log-level', lc('log_level')]
    audio_remaps = [('audio/audio_stamped', lc('audio_topic')),
                    ('audio/audio_info', lc('audio_info_topic'))]
    capture = common.configured_node(
        context, PARAM_ARGUMENTS, common.CAPTURE, ros_arguments=ros_args,
        remappings=audio_remaps, condition=IfCondition(lc('use_capture')))
    localizer = common.configured_node(
        context, PARAM_ARGUMENTS, common.LOCALIZER, ros_arguments=ros_args,
        remappings=audio_remaps + [
            ('camera_info', lc('camera_info_topic')),
            ('sound_sources', lc('sound_sources_topic')),
            ('sound_directions', lc('sound_directions_topic'))])
    fusion = common.configured_node(
        context, PARAM_ARGUMENTS, common.FUSION, ros_arguments=ros_args,
        condition=IfCondition(lc('use_av_fusion')),
        remappings=audio_remaps + [
            ('camera_info', lc('camera_info_topic')),
            ('image', lc('image_topic')),
            ('faces', lc('faces_topic')),
            ('sound_sources', lc('sound_sources_topic')),
            ('speaking_faces', lc('speaking_faces_topic')),
            ('overlay', lc('overlay_topic'))])
    return [capture, localizer, fusion]


def generate_launch_description():
    args = [DeclareLaunchArgument(name, default_value=default, description=desc)
            for name, default, desc in ARGUMENTS]
    return LaunchDescription(
        args + common.declare_config_arguments()
        + common.declare_param_arguments(PARAM_ARGUMENTS) + [
            SetParameter(name='use_sim_time', value=ParameterValue(
                LaunchConfiguration('use_sim_time'), value_type=bool)),
            OpaqueFunction(function=_nodes)])

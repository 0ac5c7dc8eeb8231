"""sbm_ros on the robot: ear microphones -> sound sources -> speaking faces.

    ros2 launch sbm_ros robot.launch.py model_path:=/path/model.npz [device:=hw:1] \
        [camera_info_topic:=/camera/camera_info] [faces_topic:=/humans/faces] ...

Starts ``binaural_capture`` (sounddevice, or a WAV file with ``source:=file
file_path:=...``), ``sbm_localizer`` and ``av_fusion``. Every node reads its YAML from
``config/`` (``*_config`` arguments) and the arguments below override it; ``use_sim_time``
is given to all nodes; topics are remapped with the ``*_topic`` arguments. ``use_capture:=false``
leaves the capture node out (that is what ``replay.launch.py`` does for ``ros2 bag play``).
``ros2 launch sbm_ros robot.launch.py --show-args`` lists everything.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node, SetParameter
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

# (name, default, description); all are strings on the command line
ARGUMENTS = [
    ('use_sim_time', 'false', 'all nodes on /clock (bag replay)'),
    ('use_capture', 'true', 'start binaural_capture (false: audio comes from elsewhere)'),
    ('use_av_fusion', 'true', 'start av_fusion (speaking faces, overlay, training)'),
    ('log_level', 'info', 'log level of all nodes (debug, info, warn, error)'),
    ('capture_config', None, 'binaural_capture parameter file'),
    ('localizer_config', None, 'sbm_localizer parameter file'),
    ('av_fusion_config', None, 'av_fusion parameter file'),
    # binaural_capture
    ('source', 'device', "capture source: 'device' (sounddevice) or 'file' (WAV)"),
    ('device', '', "sounddevice input device (index or part of its name; '' = default)"),
    ('sample_rate', '16000', 'capture sample rate in Hz (must match the model)'),
    ('block_size', '800', 'samples per audio chunk'),
    ('channel_map', '[0, 1]', 'device channels used as [left ear, right ear]'),
    ('file_path', '', "WAV file for source:=file"),
    ('loop', 'false', 'loop the WAV file (source:=file)'),
    ('frame_id', 'head', 'frame of the head (audio chunks and sound_directions)'),
    # sbm_localizer
    ('model_path', '', 'SBM model file (.npz); can be changed at runtime (ros2 param set)'),
    ('n_sources', '1', 'simultaneous sources to localise: 1 or 2 (must match the model), or '
     '0 = automatic (model_path one-source + model_path_two two-source)'),
    ('model_path_two', '', 'two-source SBM model for n_sources:=0 (automatic)'),
    ('auto_threshold', '0.3', 'automatic mode: evidence margin (nats per active entry) for two '
     'sources'),
    ('window_s', '0.0', 'localisation window in s (0 = 0.72 s for one source, 1.2 s for two)'),
    ('estimate_rate', '10.0', 'estimates per second of audio'),
    ('min_active_fraction', '0.02', 'minimum active fraction of a window (silence gate)'),
    ('audio_reliability', 'reliable', "QoS reliability of the localiser's audio subscription"),
    # topics
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


def generate_launch_description():
    share = FindPackageShare('sbm_ros')
    lc = LaunchConfiguration
    config_defaults = {
        'capture_config': PathJoinSubstitution([share, 'config', 'binaural_capture.yaml']),
        'localizer_config': PathJoinSubstitution([share, 'config', 'sbm_localizer.yaml']),
        'av_fusion_config': PathJoinSubstitution([share, 'config', 'av_fusion.yaml']),
    }
    args = [DeclareLaunchArgument(name, default_value=config_defaults.get(name, default),
                                  description=desc)
            for name, default, desc in ARGUMENTS]
    ros_args = ['--log-level', lc('log_level')]
    audio_remaps = [('audio/audio_stamped', lc('audio_topic')),
                    ('audio/audio_info', lc('audio_info_topic'))]

    capture = Node(
        package='sbm_ros', executable='binaural_capture', name='binaural_capture',
        output='screen', ros_arguments=ros_args, remappings=audio_remaps,
        condition=IfCondition(lc('use_capture')),
        parameters=[lc('capture_config'), {
            'source': lc('source'),
            'device': ParameterValue(lc('device'), value_type=str),
            'sample_rate': ParameterValue(lc('sample_rate'), value_type=int),
            'block_size': ParameterValue(lc('block_size'), value_type=int),
            'channel_map': ParameterValue(lc('channel_map'), value_type=None),
            'file_path': ParameterValue(lc('file_path'), value_type=str),
            'loop': ParameterValue(lc('loop'), value_type=bool),
            'frame_id': ParameterValue(lc('frame_id'), value_type=str),
        }])
    localizer = Node(
        package='sbm_ros', executable='sbm_localizer', name='sbm_localizer', output='screen',
        ros_arguments=ros_args,
        remappings=audio_remaps + [
            ('camera_info', lc('camera_info_topic')),
            ('sound_sources', lc('sound_sources_topic')),
            ('sound_directions', lc('sound_directions_topic'))],
        parameters=[lc('localizer_config'), {
            'model_path': ParameterValue(lc('model_path'), value_type=str),
            'n_sources': ParameterValue(lc('n_sources'), value_type=int),
            'model_path_two': ParameterValue(lc('model_path_two'), value_type=str),
            'auto_threshold': ParameterValue(lc('auto_threshold'), value_type=float),
            'window_s': ParameterValue(lc('window_s'), value_type=float),
            'estimate_rate': ParameterValue(lc('estimate_rate'), value_type=float),
            'min_active_fraction': ParameterValue(lc('min_active_fraction'), value_type=float),
            'audio_reliability': ParameterValue(lc('audio_reliability'), value_type=str),
        }])
    fusion = Node(
        package='sbm_ros', executable='av_fusion', name='av_fusion', output='screen',
        ros_arguments=ros_args, condition=IfCondition(lc('use_av_fusion')),
        remappings=audio_remaps + [
            ('camera_info', lc('camera_info_topic')),
            ('image', lc('image_topic')),
            ('faces', lc('faces_topic')),
            ('sound_sources', lc('sound_sources_topic')),
            ('speaking_faces', lc('speaking_faces_topic')),
            ('overlay', lc('overlay_topic'))],
        parameters=[lc('av_fusion_config'), {'localizer_node': 'sbm_localizer'}])
    return LaunchDescription(args + [
        SetParameter(name='use_sim_time', value=ParameterValue(lc('use_sim_time'),
                                                               value_type=bool)),
        capture, localizer, fusion])

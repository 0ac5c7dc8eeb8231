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
vision_msgs/Detection2DArray on ``faces`` are started separately.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node, SetParameter
from launch_ros.parameter_descriptions import ParameterValue

ARGS = [
    # name, default, description
    ('use_sim_time', 'false', 'Use /clock (bag replay) in all nodes.'),
    ('audio_source', 'device', "binaural_capture source: 'device' (sound card) or 'file' (WAV)."),
    ('device', '', "Sound card (index or part of its name); '' = the default input."),
    ('channel_map', '[0, 1]', 'Sound card channels used as [left ear, right ear].'),
    ('file_path', '', "Stereo WAV played when audio_source is 'file'."),
    ('sample_rate', '16000', 'Audio sample rate (Hz).'),
    ('image', 'image', 'Camera image topic (sensor_msgs/Image).'),
    ('camera_info', 'camera_info', 'Camera info topic (sensor_msgs/CameraInfo).'),
    ('faces', 'faces', 'Face detections topic (vision_msgs/Detection2DArray), optional.'),
    ('image_reliability', 'best_effort', "QoS reliability of the image subscription."),
    ('dataset_dir', '~/.ros/sbm_ros/dataset', 'Training dataset folder (sbm-train format).'),
    ('capture_duration', '1.0', 'Seconds of white noise recorded per training sample.'),
    ('min_rms_dbfs', '-40.0', 'Captures quieter than this (dBFS) are refused.'),
    ('marker_dictionary', 'DICT_4X4_50', 'OpenCV ArUco dictionary of the loudspeaker marker.'),
    ('marker_id', '0', 'ArUco id of the loudspeaker marker.'),
    ('model_path', '', "Model the localizer starts with ('' = none until ~/train)."),
    ('train_components', '0', 'GLLiM components for ~/train (0 = automatic).'),
]


def generate_launch_description():
    cfg = {name: LaunchConfiguration(name) for name, _, _ in ARGS}

    def typed(name, t):
        # explicit types: '' stays a string, '1' for a double stays a double
        return ParameterValue(cfg[name], value_type=t)

    common_remaps = [('image', cfg['image']), ('camera_info', cfg['camera_info'])]
    capture = Node(
        package='sbm_ros', executable='binaural_capture', name='binaural_capture',
        output='screen',
        parameters=[{
            'source': typed('audio_source', str),
            'device': typed('device', str),
            'channel_map': ParameterValue(cfg['channel_map']),   # YAML list '[0, 1]'
            'file_path': typed('file_path', str),
            'sample_rate': typed('sample_rate', int),
        }])
    localizer = Node(
        package='sbm_ros', executable='sbm_localizer', name='sbm_localizer', output='screen',
        parameters=[{'model_path': typed('model_path', str)}],
        remappings=common_remaps)
    fusion = Node(
        package='sbm_ros', executable='av_fusion', name='av_fusion', output='screen',
        parameters=[{
            'dataset_dir': typed('dataset_dir', str),
            'capture_duration': typed('capture_duration', float),
            'min_rms_dbfs': typed('min_rms_dbfs', float),
            'marker_dictionary': typed('marker_dictionary', str),
            'marker_id': typed('marker_id', int),
            'image_reliability': typed('image_reliability', str),
            'train_components': typed('train_components', int),
            'localizer_node': 'sbm_localizer',
        }],
        remappings=common_remaps + [('faces', cfg['faces'])])
    return LaunchDescription(
        [DeclareLaunchArgument(n, default_value=d, description=desc) for n, d, desc in ARGS]
        + [SetParameter(name='use_sim_time', value=cfg['use_sim_time']),
           capture, localizer, fusion])

"""sbm_ros on recorded data: ``sbm_localizer`` (+ ``av_fusion``) without the capture node.

    ros2 launch sbm_ros replay.launch.py model_path:=/path/model.npz
    ros2 bag play my_bag --clock [--loop]          # in another terminal

``use_sim_time`` defaults to true here. The localiser does not wait for ``/clock``: its
estimates are triggered and stamped by the recorded audio itself (outputs carry the recorded
acquisition times), and its window is flushed when the bag loops or chunks are missing. All
arguments of ``robot.launch.py`` apply (``--show-args``), e.g. ``use_av_fusion:=false`` or the
``*_topic`` remappings.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, ThisLaunchFileDir


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('use_sim_time', default_value='true',
                              description='all nodes on /clock (ros2 bag play --clock)'),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                PathJoinSubstitution([ThisLaunchFileDir(), 'robot.launch.py'])),
            launch_arguments={'use_capture': 'false',
                              'use_sim_time': LaunchConfiguration('use_sim_time')}.items()),
    ])

"""sbm_ros on recorded data: ``sbm_localizer`` (+ ``av_fusion``) without the capture node.

    ros2 launch sbm_ros replay.launch.py model_path:=/path/model.npz
    ros2 bag play my_bag --clock [--loop]          # in another terminal

``use_sim_time`` defaults to true here and ``use_capture`` to false. The localiser does not wait
for ``/clock``: its estimates are triggered and stamped by the recorded audio itself (outputs
carry the recorded acquisition times), and its window is flushed when the bag loops or chunks
are missing. All arguments of ``robot.launch.py`` apply, with the same precedence (a given
argument wins over the ``*_config`` file), and ``--show-args`` lists them, e.g.
``use_av_fusion:=false`` or the ``*_topic`` remappings.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource


def generate_launch_description():
    # a plain path (not a substitution) so that --show-args can load robot.launch.py and list
    # its arguments; the launch configurations below are inherited by the include
    robot = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'robot.launch.py')
    return LaunchDescription([
        DeclareLaunchArgument('use_sim_time', default_value='true',
                              description='all nodes on /clock (ros2 bag play --clock)'),
        DeclareLaunchArgument('use_capture', default_value='false',
                              description='start binaural_capture (replay: the audio comes '
                              'from the bag)'),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(robot)),
    ])

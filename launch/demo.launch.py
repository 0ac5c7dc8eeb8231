"""The sbm_ros demo on a machine with ROS 2 (Humble or newer):

    ros2 launch sbm_ros demo.launch.py model_path:=/path/model_1src.npz \
        [model_path_two:=/path/model_2src.npz] [rate:=1.0] [viewer:=none|rqt|rviz]

Starts ``virtual_head`` (the scenario: audio, image, camera_info, faces, ground truth),
``sbm_localizer`` and ``av_fusion``; optionally ``rqt_image_view`` on the overlay
(``viewer:=rqt``) or RViz (``viewer:=rviz``). A viewer is not a dependency of the package: when
the one asked for is not installed, the launch stops with an error before any node starts.
The arguments always win over ``config/virtual_head.yaml`` (its key is ``/**``).
``use_sim_time`` is given to sbm_localizer and av_fusion; virtual_head publishes ``/clock`` then
and always runs on the wall clock itself.
Models: train them once with ``python -m sbm_ros.apps.demo`` (cached in ~/.cache/sbm_ros/models,
file names printed) or with ``sbm-train``. ``model_path_two`` and ``n_sources:=0`` (automatic
one/two-source mode) need a localizer that declares them; otherwise leave them empty / 1.
Topics can be remapped with the ``*_topic`` arguments.
"""

import importlib.util
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node, SetParameter
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def _load_common():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'sbm_launch_common.py')
    spec = importlib.util.spec_from_file_location('sbm_launch_common', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = _load_common()

VIEWERS = {'none': None, 'rqt': 'rqt_image_view', 'rviz': 'rviz2'}


def _check_viewer(context):
    """Fail before any node starts when the viewer is unknown or not installed."""
    viewer = context.launch_configurations['viewer']
    if viewer not in VIEWERS:
        raise RuntimeError(f"viewer:={viewer!r}: use one of {', '.join(VIEWERS)}")
    package = VIEWERS[viewer]
    if package is not None:
        from ament_index_python.packages import (PackageNotFoundError,
                                                 get_package_prefix)
        try:
            get_package_prefix(package)
        except PackageNotFoundError:
            raise RuntimeError(f"viewer:={viewer} needs the package '{package}', which is not "
                               "installed (install it, or use viewer:=none)") from None
    return []


def _viewer_is(name):
    # works on Humble, Jazzy and Kilted (LaunchConfigurationEquals is deprecated on Jazzy,
    # EqualsSubstitution does not exist on Humble)
    return IfCondition(PythonExpression(["'", LaunchConfiguration('viewer'), f"' == '{name}'"]))


def generate_launch_description():
    share = FindPackageShare('sbm_ros')
    args = [
        DeclareLaunchArgument('scenario', default_value=PathJoinSubstitution(
            [share, 'config', 'demo_scenario.yaml']), description='scenario YAML file'),
        DeclareLaunchArgument('rate', default_value='1.0',
                              description='virtual_head speed (1.0 = real time)'),
        DeclareLaunchArgument('loop', default_value='true',
                              description='replay the scenario when it ends'),
        DeclareLaunchArgument('model_path', default_value='',
                              description='one-source SBM model (.npz)'),
        DeclareLaunchArgument('model_path_two', default_value='',
                              description='two-source SBM model (.npz; needs a localizer '
                              'with the automatic mode)'),
        DeclareLaunchArgument('n_sources', default_value='1',
                              description='1, 2, or 0 = automatic (with model_path_two)'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='all nodes on /clock (virtual_head then publishes '
                              'it)'),
        DeclareLaunchArgument('viewer', default_value='none',
                              description="'none', 'rqt' (rqt_image_view on the overlay) or "
                              "'rviz' (rviz2); the viewer's package must be installed"),
        DeclareLaunchArgument('audio_topic', default_value='audio/audio_stamped',
                              description='binaural audio chunks'),
        DeclareLaunchArgument('audio_info_topic', default_value='audio/audio_info',
                              description='audio format (latched)'),
        DeclareLaunchArgument('image_topic', default_value='image', description='camera image'),
        DeclareLaunchArgument('camera_info_topic', default_value='camera_info',
                              description='camera calibration'),
        DeclareLaunchArgument('faces_topic', default_value='faces',
                              description='face detections (vision_msgs/Detection2DArray)'),
        DeclareLaunchArgument('overlay_topic', default_value='overlay',
                              description='image with faces and sound estimates'),
        DeclareLaunchArgument('ros4hri', default_value='false',
                              description='ROS4HRI (REP 155) output: voices from sbm_localizer '
                              '(/humans/voices/...), VOICE-FACE /humans/candidate_matches from '
                              'av_fusion (needs hri_msgs)'),
    ]
    lc = LaunchConfiguration
    audio_remaps = [('audio/audio_stamped', lc('audio_topic')),
                    ('audio/audio_info', lc('audio_info_topic'))]
    cam_remaps = [('image', lc('image_topic')), ('camera_info', lc('camera_info_topic'))]
    two = PythonExpression(["'", lc('model_path_two'), "' != ''"])

    virtual_head = Node(
        package='sbm_ros', executable='virtual_head', name='virtual_head', output='screen',
        parameters=[
            PathJoinSubstitution([share, 'config', 'virtual_head.yaml']),
            {'scenario': lc('scenario'),
             'rate': ParameterValue(lc('rate'), value_type=float),
             'loop': ParameterValue(lc('loop'), value_type=bool),
             'publish_clock': ParameterValue(lc('use_sim_time'), value_type=bool),
             # virtual_head drives /clock itself: it must not wait for it. A node parameter (it
             # comes after the launch-wide SetParameter below on the command line, so it wins),
             # not a SetParameter, which would reach every node started after it.
             'use_sim_time': False}],
        remappings=audio_remaps + cam_remaps + [('faces', lc('faces_topic'))])

    hri = ParameterValue(lc('ros4hri'), value_type=bool)
    localizer_params = {'model_path': lc('model_path'),
                        'n_sources': ParameterValue(lc('n_sources'), value_type=int),
                        'ros4hri': hri}
    localizer = Node(
        package='sbm_ros', executable='sbm_localizer', name='sbm_localizer', output='screen',
        parameters=[localizer_params], remappings=audio_remaps + cam_remaps,
        additional_env=common.LOCALIZER_ENV,
        condition=IfCondition(PythonExpression(['not ', two])))
    localizer_two = Node(
        package='sbm_ros', executable='sbm_localizer', name='sbm_localizer', output='screen',
        parameters=[dict(localizer_params, model_path_two=lc('model_path_two'))],
        remappings=audio_remaps + cam_remaps, additional_env=common.LOCALIZER_ENV,
        condition=IfCondition(two))
    fusion = Node(
        package='sbm_ros', executable='av_fusion', name='av_fusion', output='screen',
        parameters=[{'overlay_rate': 0.0, 'image_reliability': 'reliable', 'ros4hri': hri}],
        remappings=audio_remaps + cam_remaps + [('faces', lc('faces_topic')),
                                                ('overlay', lc('overlay_topic'))])
    rqt = Node(package='rqt_image_view', executable='rqt_image_view', name='overlay_view',
               arguments=[lc('overlay_topic')], condition=_viewer_is('rqt'))
    rviz = Node(package='rviz2', executable='rviz2', name='rviz2', condition=_viewer_is('rviz'))
    return LaunchDescription(args + [
        OpaqueFunction(function=_check_viewer),
        SetParameter(name='use_sim_time', value=ParameterValue(lc('use_sim_time'),
                                                               value_type=bool)),
        virtual_head, localizer, localizer_two, fusion, rqt, rviz])

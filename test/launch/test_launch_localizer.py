"""launch_testing: binaural_capture (WAV file, looping) -> sbm_localizer, started by launch.

For machines with a full ROS 2 install (``launch_testing``, ``launch_ros`` and the package built
with colcon): ``colcon test --packages-select sbm_ros`` or ``launch_test
test/launch/test_launch_localizer.py``. Without launch_testing (the pip-wheel development
environment) the module is skipped; ``test/nodes/test_node_localizer.py`` and
``test_node_capture.py`` test the same nodes over DDS there.

Humble-safe: ``ReadyToTest`` is reached at once (its 15 s timeout cannot be raised on Humble)
and the test waits for data itself; no ``WaitForTopics`` (unreliable with best-effort
publishers). The WAV loops, so estimates keep coming whenever the test subscribes.
"""

import atexit
import os
import shutil
import sys
import tempfile
import time
import unittest

import pytest

launch_testing = pytest.importorskip(
    'launch_testing', reason='launch_testing is not installed (needs a full ROS 2 install; '
    'the pip-wheel dev environment runs test_node_localizer.py instead)')
pytest.importorskip('launch_ros', reason='launch_ros is not installed (needs a full ROS 2 '
                    'install)')

import launch  # noqa: E402
import launch_ros.actions  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from geometry_msgs.msg import PoseArray  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import synth  # noqa: E402

AZ, EL = 10.0, -4.0
WORK = tempfile.mkdtemp(prefix='sbm_launch_test_')
atexit.register(shutil.rmtree, WORK, True)


def _prepare():
    """A toy-head model and a WAV of a talker at (AZ, EL): about 2 s of CPU."""
    from sbm_ros.apps import cli
    from sbm_ros.core.audio_io import write_wav
    ds = os.path.join(WORK, 'ds')
    synth.make_dataset(ds, np.linspace(-20, 20, 9), np.linspace(-10, 10, 5), duration=0.5)
    model = os.path.join(WORK, 'model.npz')
    assert cli.train_main([ds, '-o', model, '-K', '6', '-q']) == 0
    x = synth.render(synth.babble(4 * synth.RATE, 5), AZ, EL)
    x += 1e-4 * np.random.default_rng(0).normal(size=x.shape)
    wav = os.path.join(WORK, 'talker.wav')
    write_wav(wav, x, synth.RATE)
    return model, wav


@pytest.mark.launch_test
def generate_test_description():
    model, wav = _prepare()
    capture = launch_ros.actions.Node(
        package='sbm_ros', executable='binaural_capture', name='binaural_capture',
        output='screen', parameters=[{'source': 'file', 'file_path': wav, 'loop': True,
                                      'block_size': 800}])
    localizer = launch_ros.actions.Node(
        package='sbm_ros', executable='sbm_localizer', name='sbm_localizer', output='screen',
        parameters=[{'model_path': model, 'n_sources': 1}],
        # as the package's launch files do (threadpoolctl may be missing on a robot)
        additional_env={'OPENBLAS_NUM_THREADS': '1', 'OMP_NUM_THREADS': '1'})
    return launch.LaunchDescription([
        capture, localizer, launch_testing.actions.ReadyToTest(),
    ]), {'capture': capture, 'localizer': localizer}


class TestLocalizerOutputs(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node('sbm_launch_test_listener')

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.try_shutdown()

    def test_model_loaded(self, proc_output, localizer):
        proc_output.assertWaitFor('1 source(s)', process=localizer, timeout=20)

    def test_directions_match_the_talker(self):
        from sbm_ros.core.geometry import direction_from_quaternion
        got = []
        sub = self.node.create_subscription(PoseArray, 'sound_directions', got.append, 10)
        try:
            end = time.monotonic() + 30.0
            while time.monotonic() < end and len(got) < 15:
                rclpy.spin_once(self.node, timeout_sec=0.1)
        finally:
            self.node.destroy_subscription(sub)
        self.assertGreaterEqual(len(got), 15, 'too few sound_directions')
        d = np.array([direction_from_quaternion((p.orientation.x, p.orientation.y,
                                                 p.orientation.z, p.orientation.w))
                      for m in got for p in m.poses])
        med = np.median(d, axis=0)
        self.assertLess(abs(med[0] - AZ), 2.0, med)
        self.assertLess(abs(med[1] - EL), 3.0, med)
        self.assertEqual(got[-1].header.frame_id, 'head')


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):

    def test_clean_exit(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)

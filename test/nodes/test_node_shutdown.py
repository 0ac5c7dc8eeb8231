"""Shutdown of a node run by ``sbm_ros.nodes.common.run`` (what every sbm_ros node's main is).

A terminal's Ctrl-C sends SIGINT to every process of its group and ``ros2 launch`` forwards one
more to each node: the second one must not interrupt the cleanup (KeyboardInterrupt traceback,
exit code -2). An error the executor raises because of the shutdown (e.g. ``RuntimeError:
Unable to convert call argument '0' to Python object`` from rclpy, seen once) is a clean exit; a
real error stays visible. Each case is a subprocess (signal handlers are
per process); the node does not talk to anyone.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip('rclpy', reason='needs ROS 2 (source .dev/env.sh or a ROS install)')

from rostest_utils import _die_with_parent, domain_id_for  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHILD = textwrap.dedent('''
    import sys, time
    import rclpy
    from rclpy.node import Node
    from sbm_ros.nodes import common
    mode = sys.argv[1]

    class Slow(Node):
        def __init__(self):
            super().__init__('sbm_shutdown_test')
            self.create_timer(0.01, lambda: None)

        def destroy_node(self):
            time.sleep(0.6)                 # a second SIGINT lands here
            print('destroyed', flush=True)
            return super().destroy_node()

    def spin(node):
        print('ready', flush=True)
        if mode == 'error':
            raise RuntimeError('a real error')
        if mode == 'convert':
            # what rclpy's take raised once right after a SIGINT, the context still up
            while not common._Shutdown.signalled:
                time.sleep(0.001)
            raise RuntimeError("Unable to convert call argument '0' to Python object")
        while rclpy.ok():
            time.sleep(0.01)
        return 0

    sys.exit(common.run(Slow, spin=None if mode == 'spin' else spin))
''')


def _child_setup():
    """In the child before exec: SIGINT back to its default (pytest may ignore it), and the
    child dies with the test process (a killed pytest left 'hook' children spinning)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _die_with_parent()


def _start(mode):
    path = [ROOT] + ([os.environ['PYTHONPATH']] if os.environ.get('PYTHONPATH') else [])
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id_for(__name__)), PYTHONUNBUFFERED='1',
               PYTHONPATH=os.pathsep.join(path))
    proc = subprocess.Popen([sys.executable, '-c', CHILD, mode], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=_child_setup)
    if mode != 'spin':
        assert proc.stdout.readline().strip() == 'ready'
    else:
        time.sleep(3.0)                     # no hook to say so: give rclpy.spin time
    return proc


@pytest.mark.parametrize('gap', [0.0, 0.05, 0.3])
@pytest.mark.parametrize('mode', ['hook', 'spin'])
def test_second_sigint_during_cleanup_is_ignored(mode, gap):
    proc = _start(mode)
    proc.send_signal(signal.SIGINT)
    time.sleep(gap)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0 and 'Traceback' not in out and 'destroyed' in out, out


def test_error_raised_by_the_shutdown_is_a_clean_exit():
    proc = _start('convert')
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0 and 'Traceback' not in out and 'destroyed' in out, out


def test_real_error_stays_visible():
    proc = _start('error')
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 1, out
    assert 'RuntimeError: a real error' in out and 'destroyed' in out, out

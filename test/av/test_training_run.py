"""The training subprocess of ~/train: command line, environment, outcome from exit and log."""

import os
import sys
import time

from sbm_ros.av import training_run as tr


def test_command_line_and_environment(tmp_path):
    cmd = tr.train_command('/data', '/data/m.npz', 50, 0)
    assert cmd[:3] == [sys.executable, '-m', 'sbm_ros.apps.cli']
    assert cmd[3:] == ['/data', '-o', '/data/m.npz', '--max-iter', '50', '--auto-components']
    assert tr.train_command('/d', '/m', 10, 8)[-2:] == ['-K', '8']
    env = tr.child_env({'PYTHONPATH': '/a:/b'})
    assert env['PYTHONPATH'].split(os.pathsep) == [tr.PACKAGE_PARENT, '/a', '/b']
    assert os.path.isdir(os.path.join(tr.PACKAGE_PARENT, 'sbm_ros'))
    p = tr.default_model_path(str(tmp_path))
    assert p.startswith(str(tmp_path / 'models' / 'model_')) and p.endswith('.npz')


def _wait(run, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = run.poll()
        if res is not None:
            return res
        time.sleep(0.05)
    run.stop()
    raise AssertionError('training did not end')


def test_a_failing_run_reports_the_last_log_line(tmp_path):
    run = tr.TrainingRun(str(tmp_path / 'no_such_dataset'), str(tmp_path / 'm' / 'model.npz'))
    run.start()
    assert run.pid is not None
    res = _wait(run)
    assert not res.ok and res.log.endswith('model.npz.log') and os.path.exists(res.log)
    assert res.message                      # the child's last output line (or its exit code)
    assert run.poll() is None               # reported once


def test_stop_terminates_the_child(tmp_path):
    run = tr.TrainingRun(str(tmp_path), str(tmp_path / 'model.npz'))
    run.cmd = [sys.executable, '-c', 'import time; time.sleep(30)']
    run.start()
    proc = run.proc
    run.stop(timeout=5.0)
    assert proc.poll() is not None and run.poll() is None

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
    assert '--sources' not in tr.train_command('/d', '/m', 10, 8, sources=1, pairs=500)
    assert tr.train_command('/d', '/m', 10, 60, sources=2, pairs=500)[3:] == [
        '/d', '-o', '/m', '--max-iter', '10', '--sources', '2', '--pairs', '500', '-K', '60']
    assert tr.train_command('/d', '/m', 10, 0, 2)[-3:] == ['--sources', '2', '--auto-components']
    assert tr.two_source_path('/x/model.npz') == '/x/model_2src.npz'
    assert tr.two_source_path('/x/model') == '/x/model_2src.npz'
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


def test_a_two_source_run_writes_a_two_source_model(tmp_path):
    import numpy as np
    from synth import make_dataset
    from sbm_ros.core.model import SBMModel
    root = str(tmp_path / 'ds')
    make_dataset(root, np.arange(-30.0, 31.0, 15.0), [-10.0, 10.0], duration=0.4)
    out = tr.two_source_path(str(tmp_path / 'm.npz'))
    run = tr.TrainingRun(root, out, max_iter=20, components=4, sources=2, pairs=300).start()
    res = _wait(run, 120.0)
    assert res.ok and res.model == out, (res.message, open(res.log).read()[-2000:])
    assert 'error on fresh mixtures' in res.message, res.message
    m = SBMModel.load(out)
    assert m.n_sources == 2 and m.n_train == 300 and set(m.info['mix_error']) == {
        'azimuth_deg', 'elevation_deg'}

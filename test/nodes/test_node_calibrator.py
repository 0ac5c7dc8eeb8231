"""sbm_calibrator over real DDS: a sweep with bad input, refusals, bad parameters, a full or
unwritable dataset folder and a ``kill -9`` in the middle of a sweep; ``~/train`` fitting the
one- and the two-source model and handing both to a running sbm_localizer.

The node runs as a subprocess; this process is the camera (a grey room with the loudspeaker's
ArUco marker moving along a path), the microphone (white noise, no head: the calibrator does not
look at the binaural cues) and camera_info, publishing in scene time faster than real time.
"""

import contextlib
import json
import os
import shutil
import signal
import time

import numpy as np
import pytest

pytest.importorskip('rclpy')
pytest.importorskip('audio_common_msgs.msg')
cv2 = pytest.importorskip('cv2')

from rostest_utils import NodeProcess, RosTestNode, domain_id_for  # noqa: E402
from synth import SHORT_SWEEP  # noqa: E402

from sbm_ros.av import image_io  # noqa: E402
from sbm_ros.av.marker import render_marker  # noqa: E402
from sbm_ros.av.sweep_session import count_rows  # noqa: E402
from sbm_ros.core.audio_io import float_to_pcm_bytes  # noqa: E402
from sbm_ros.core.geometry import PinholeCamera  # noqa: E402
from sbm_ros.core.sweep_writer import check_dataset  # noqa: E402

DOMAIN = domain_id_for(__name__)
W, H = 640, 480
CAM = PinholeCamera.from_fov(W, H, 28.0, 21.0, frame_id='cam')
RATE = 16000
FPS = 15.0
CHUNK = 1600
MARKER_ID, SIDE = 7, 40
MARKER = render_marker('DICT_4X4_50', MARKER_ID, SIDE)
BG = np.full((H, W), 150, np.uint8)


@pytest.fixture(scope='module')
def ros():
    node = RosTestNode(DOMAIN, 'calibrator_test')
    yield node
    node.close()


@contextlib.contextmanager
def logs_on_failure(*procs):
    try:
        yield
    except BaseException:
        for p in procs:
            print(f'----- {p.name} output -----\n{p.text()[-8000:]}')
        raise


def frame(u, v):
    img = BG.copy()
    if u is not None:
        x0, y0 = int(round(u - SIDE / 2)), int(round(v - SIDE / 2))
        q = SIDE // 4
        img[y0 - q:y0 + SIDE + q, x0 - q:x0 + SIDE + q] = 255
        img[y0:y0 + SIDE, x0:x0 + SIDE] = MARKER
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


def path_at(t):
    """A slow serpentine (30 px/s, ~1.3 deg/s) over the middle of the image."""
    span = 440.0
    d = (30.0 * t) % (2 * span)
    u = 100.0 + (d if d <= span else 2 * span - d)
    v = 120.0 + 40.0 * int(30.0 * t // span)
    return u, min(v, 400.0)


class Head:
    """Publishes camera_info, images and audio stamped t0 + scene time."""

    def __init__(self, ros, prefix=''):
        from audio_common_msgs.msg import AudioDataStamped, AudioInfo
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        self.ros = ros
        n = ros.node
        rel = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_img = n.create_publisher(Image, 'image', rel)
        self.pub_ci = n.create_publisher(CameraInfo, 'camera_info', rel)
        self.pub_audio = n.create_publisher(AudioDataStamped, 'audio/audio_stamped', rel)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_info = n.create_publisher(AudioInfo, 'audio/audio_info', latched)
        self.pub_info.publish(AudioInfo(channels=2, sample_rate=RATE, sample_format='S16LE',
                                        coding_format='wave'))
        self.t0_ns = time.time_ns()
        self.t = 0.0                   # scene time reached
        self.rng = np.random.default_rng(0)
        self.k = 0                     # audio chunks published
        self.j = 0                     # frames published

    def stamp(self, t):
        from builtin_interfaces.msg import Time
        ns = self.t0_ns + int(round(t * 1e9))
        return Time(sec=ns // 10**9, nanosec=ns % 10**9)

    def camera_info(self, stamp):
        from sensor_msgs.msg import CameraInfo
        m = CameraInfo()
        m.header.stamp, m.header.frame_id = stamp, 'cam'
        m.width, m.height = W, H
        m.k = CAM.K.reshape(-1).tolist()
        m.distortion_model = 'plumb_bob'
        m.d = [0.0] * 5
        return m

    def play(self, seconds, speed=3.0, visible=lambda t: True, level=lambda t: 0.1,
             images=True):
        """Publish ``seconds`` of scene, paced at ``speed`` x real time."""
        from audio_common_msgs.msg import AudioDataStamped
        from sensor_msgs.msg import Image
        end = self.t + seconds
        wall0, scene0 = time.monotonic(), self.t
        while True:
            t_audio = (self.k + 1) * CHUNK / RATE
            t_frame = self.j / FPS
            t = min(t_audio, t_frame)
            if t > end:
                break
            wait = wall0 + (t - scene0) / speed - time.monotonic()
            if wait > 0:
                self.ros.spin_for(wait)
            if t_audio <= t_frame:
                ts = self.k * CHUNK / RATE
                x = level(ts) * self.rng.standard_normal((CHUNK, 2))
                m = AudioDataStamped()
                m.header.stamp = self.stamp(ts)
                m.audio.data = float_to_pcm_bytes(np.clip(x, -1, 1), 'S16LE')
                self.pub_audio.publish(m)
                self.k += 1
            else:
                if images:
                    st = self.stamp(t)
                    u, v = path_at(t) if visible(t) else (None, None)
                    m = Image()
                    m.header.stamp, m.header.frame_id = st, 'cam'
                    image_io.fill_msg(m, frame(u, v), 'bgr8')
                    self.pub_img.publish(m)
                    self.pub_ci.publish(self.camera_info(st))
                self.j += 1
            self.t = t
        self.ros.spin_for(0.05)


def status_list(ros, name='sbm_calibrator'):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    out = []
    ros.node.create_subscription(String, f'/{name}/calibration_status',
                                 lambda m: out.append(json.loads(m.data)), qos)
    return out


def client(ros, srv, name='sbm_calibrator'):
    from std_srvs.srv import Trigger
    return ros.node.create_client(Trigger, f'/{name}/{srv}')


def call(ros, cli, timeout=20.0):
    from std_srvs.srv import Trigger
    assert cli.wait_for_service(timeout_sec=15.0), cli.srv_name
    fut = cli.call_async(Trigger.Request())
    assert ros.spin_until(fut.done, timeout), f'{cli.srv_name} timed out'
    return fut.result()


def calibrator(ds, **params):
    p = {'dataset_dir': str(ds), 'image_reliability': 'reliable', 'input_timeout': 0.8,
         'status_period': 0.2, 'overlay_rate': 5.0, 'localizer_node': ''}
    p.update(params)
    return NodeProcess('sbm_calibrator', DOMAIN, p)


def wait_ready(ros, proc, name='sbm_calibrator'):
    """The node is up and has discovered this test's service clients.

    A response sent before the server has matched the client's reply reader is dropped by the
    middleware ('failed to send response (timeout)' in the node's output, then the caller
    times out: seen once in a CI run, on the first call right after the ready line). A
    parameter request answered, from a client created after the test's Trigger clients,
    shows that the node has discovered them.
    """
    from rcl_interfaces.srv import GetParameters
    proc.wait_for('sbm_calibrator ready', 30, spin=ros.spin_for)
    probe = ros.node.create_client(GetParameters, f'/{name}/get_parameters')
    deadline = time.monotonic() + 30.0
    try:
        while True:
            assert probe.wait_for_service(timeout_sec=15.0), probe.srv_name
            fut = probe.call_async(GetParameters.Request(names=['dataset_dir']))
            if ros.spin_until(fut.done, 3.0):
                return
            assert time.monotonic() < deadline, f'{name} never answered a parameter request'
    finally:
        ros.node.destroy_client(probe)


def start_when_ready(ros, head, start, timeout=20.0):
    """Play until the node has camera_info (discovery takes a moment), then start the sweep."""
    from std_srvs.srv import Trigger
    deadline = time.monotonic() + timeout
    while True:
        head.play(0.3)
        assert start.wait_for_service(timeout_sec=15.0), start.srv_name
        fut = start.call_async(Trigger.Request())
        if not ros.spin_until(fut.done, 5.0):    # a request lost to a restarted node
            assert time.monotonic() < deadline, 'start_sweep timed out'
            continue
        res = fut.result()
        if res.success or 'camera_info' not in res.message or time.monotonic() > deadline:
            return res


# ----------------------------------------------------------------------------- tests
def test_sweep_with_flicker_occlusion_silence_and_camera_stall(ros, tmp_path):
    from sensor_msgs.msg import Image
    ds = tmp_path / 'ds'
    status = status_list(ros)
    overlays = ros.collect(Image, 'calibration_overlay')
    start, stop, train = (client(ros, s) for s in ('start_sweep', 'stop_sweep', 'train'))
    proc = calibrator(ds, min_train_samples=500)
    with proc, logs_on_failure(proc):
        wait_ready(ros, proc)
        res = call(ros, stop)
        assert not res.success and 'no sweep running' in res.message, res.message
        head = Head(ros)
        res = call(ros, start)
        assert not res.success and 'camera_info' in res.message, res.message
        res = start_when_ready(ros, head, start)
        assert res.success, res.message
        res = call(ros, start)
        assert not res.success and 'already running' in res.message, res.message
        flicker = np.random.default_rng(1)
        head.play(6.0, visible=lambda t: flicker.random() > 0.2)    # detector flicker 20 %
        head.play(1.5, visible=lambda t: False)                       # occlusion
        head.play(4.5)
        head.play(4.0, level=lambda t: 0.0)                           # loudspeaker stops
        head.play(3.0)
        head.play(3.0, images=False)                                  # camera stall
        head.play(3.0)
        ros.spin_until(lambda: status and status[-1].get('state') == 'sweeping'
                       and status[-1]['samples'] > 0, 5)
        live = status[-1]
        assert live['state'] == 'sweeping' and 0 < live['coverage'] < 1, live
        res = call(ros, stop)
        assert res.success and 'sweep stopped' in res.message, res.message
        assert ros.spin_until(lambda: status[-1]['state'] == 'stopped', 5)
        st = status[-1]
        rej = st['rejected']
        assert st['samples'] == st['samples_this_sweep'] >= 12, st
        assert rej['marker_lost'] >= 2 and rej['too_quiet'] >= 3, rej   # occlusion, stall
        assert st['unsaved'] == 0 and st['write_error'] is None
        assert count_rows(str(ds)) == st['samples'] and check_dataset(str(ds)).ok
        assert 'loudspeaker playing' in proc.text()
        assert 'image stalled' in proc.text() and 'nothing captured is lost' in proc.text()
        assert overlays and (overlays[-1].width, overlays[-1].height) == (W, H)
        # too few samples to train: refused with what to do
        res = call(ros, train)
        assert not res.success and 'at least 500' in res.message, res.message
        res = call(ros, stop)
        assert not res.success and 'no sweep running' in res.message
        assert proc.alive


def test_bad_parameters_are_refused(ros, tmp_path):
    proc = calibrator(tmp_path / 'ds', tolerance=0.0)
    with proc:
        deadline = time.monotonic() + 30
        while proc.alive and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not proc.alive and proc.proc.returncode == 2, proc.text()[-2000:]
        assert "'tolerance'=0.0: must be > 0" in proc.text()
    proc = calibrator(tmp_path / 'ds')
    with proc, logs_on_failure(proc):
        wait_ready(ros, proc)
        for bad, why in (({'tolerance': -1.0}, 'tolerance must be'),
                         ({'tolerance_unit': 'furlong'}, 'furlong'),
                         ({'min_duration_s': 2.0}, 'max_duration_s'),
                         ({'coverage_complete': 1.5}, 'within (0, 1]'),
                         ({'marker_dictionary': 'DICT_NOPE'}, 'DICT_NOPE')):
            r = ros.set_parameters('sbm_calibrator', bad)
            assert not r.successful and why in r.reason, (bad, r.reason)
        assert ros.set_parameters('sbm_calibrator', {'tolerance': 1.5}).successful
        assert proc.alive


def test_full_or_unwritable_folder_and_kill_9_lose_nothing(ros, tmp_path):
    import resource
    ds = tmp_path / 'ds'
    status = status_list(ros)
    start, stop = client(ros, 'start_sweep'), client(ros, 'stop_sweep')
    proc = calibrator(ds)
    with proc, logs_on_failure(proc):
        wait_ready(ros, proc)
        head = Head(ros)
        assert start_when_ready(ros, head, start).success
        head.play(4.0)
        # the folder fills up: WAVs larger than the file size limit fail (EFBIG)
        pid = proc.proc.pid
        hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)[1]
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (16000, hard))
        try:
            head.play(4.0)
            assert ros.spin_until(lambda: status[-1].get('unsaved', 0) >= 2, 5), status[-1]
            st = status[-1]
            assert 'too large' in st['write_error'].lower(), st['write_error']
            assert st['state'] == 'sweeping' and proc.alive
        finally:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))
        head.play(3.0)                    # retried: the held samples are written
        assert ros.spin_until(lambda: status[-1].get('unsaved') == 0
                              and status[-1].get('write_error') is None, 10), status[-1]
        # the folder goes away (unmounted, renamed): a file in its place
        shutil.move(str(ds), str(tmp_path / 'away'))
        ds.write_text('not a folder')
        try:
            head.play(3.0)
            assert ros.spin_until(lambda: status[-1].get('unsaved', 0) >= 1, 5), status[-1]
        finally:
            os.unlink(ds)
            shutil.move(str(tmp_path / 'away'), str(ds))
        head.play(3.0)
        assert ros.spin_until(lambda: status[-1].get('unsaved') == 0, 10), status[-1]
        st = status[-1]
        assert count_rows(str(ds)) == st['samples'] == st['accepted'], st
        assert st['dropped'] == 0 and check_dataset(str(ds)).ok
        assert 'free disk space' in proc.text()
        # kill -9 in the middle of the sweep
        head.play(2.0)
        before = status[-1]['samples']
        os.kill(pid, signal.SIGKILL)
        proc.proc.wait(10)
    rows = count_rows(str(ds))
    assert rows >= before
    proc = calibrator(ds)
    status.clear()
    start, stop = client(ros, 'start_sweep'), client(ros, 'stop_sweep')
    with proc, logs_on_failure(proc):
        wait_ready(ros, proc)
        res = start_when_ready(ros, head, start)
        assert res.success and f'{rows} samples already there' in res.message, res.message
        chk = check_dataset(str(ds))
        assert chk.ok and chk.rows == rows, chk.summary()
        head.play(6.0)
        res = call(ros, stop)
        assert res.success, res.message
        assert ros.spin_until(lambda: status and status[-1]['state'] == 'stopped', 5)
        assert status[-1]['samples'] == count_rows(str(ds)) > rows
        assert check_dataset(str(ds)).ok


def _get_params(ros, node_name, names):
    """{name: value} of ``node_name``'s parameters (string, integer)."""
    from rcl_interfaces.srv import GetParameters
    cli = ros.node.create_client(GetParameters, f'/{node_name}/get_parameters')
    try:
        assert cli.wait_for_service(timeout_sec=10)
        fut = cli.call_async(GetParameters.Request(names=list(names)))
        assert ros.spin_until(fut.done, 10)
        return {n: (v.string_value if v.type == 4 else v.integer_value)
                for n, v in zip(names, fut.result().values)}
    finally:
        ros.node.destroy_client(cli)


def _wait_trained(ros, status, since):
    """The train status of the ~/train started after ``len(status) == since``, once settled
    (training over and the hand-over answered)."""
    def settled():
        for st in status[since:]:
            tr = st.get('train', {})
            if tr.get('state') == 'failed' or (tr.get('state') == 'done'
                                               and tr.get('handoff') not in (None, 'pending')):
                return True
        return False
    assert ros.spin_until(settled, 120), status[-1].get('train')
    return status[-1]['train']


def test_train_fits_both_models_and_hands_them_to_the_localizer(ros, tmp_path):
    # ~/train on a dataset folder (the toy head: 14 positions): the one-source model, then the
    # two-source one from the same recordings, both reported and handed to sbm_localizer in one
    # call (automatic mode); then a two-source training that fails: the one-source model alone,
    # with the localizer set back to one source
    from synth import make_dataset
    from sbm_ros.core.model import SBMModel
    ds = tmp_path / 'ds'
    make_dataset(str(ds), np.arange(-30.0, 31.0, 10.0), [-10.0, 10.0], duration=0.4)
    # a node name of its own: the calibrator killed by the previous test may linger in the
    # DDS graph until its lease expires (a request to it would be lost)
    name = 'sbm_calibrator_train'
    status = status_list(ros, name)
    train = client(ros, 'train', name)
    out = tmp_path / 'models' / 'sweep.npz'
    loc = NodeProcess('sbm_localizer', DOMAIN, {'estimate_rate': 5.0})
    p = {'dataset_dir': str(ds), 'localizer_node': 'sbm_localizer', 'min_train_samples': 10,
         'train_components': 4, 'train_max_iter': 20, 'train_pairs': 300,
         'train_components_two': 4, 'model_output': str(out), 'handoff_timeout': 20.0,
         'model_output_two': str(out)}
    proc = NodeProcess('sbm_calibrator', DOMAIN, p, name=name)
    with loc, proc, logs_on_failure(proc, loc):
        wait_ready(ros, proc, name)
        loc.wait_for('no model_path set', 30, spin=ros.spin_for)
        # the two files must differ
        res = call(ros, train)
        assert not res.success and 'model_output_two is the one-source model file' in \
            res.message, res.message
        assert ros.set_parameters(name, {'model_output_two': ''}).successful

        since = len(status)
        res = call(ros, train)
        out2 = str(tmp_path / 'models' / 'sweep_2src.npz')
        assert res.success and f'two-source model -> {out2}' in res.message, res.message
        assert ros.spin_until(lambda: any(st.get('train', {}).get('step') == 'two_source'
                                          for st in status[since:]), 60), status[-1]['train']
        tr = _wait_trained(ros, status, since)
        assert tr['state'] == 'done' and tr['model'] == str(out) and tr['model_two'] == out2, tr
        assert set(tr['cv_error']) == {'azimuth_deg', 'elevation_deg'}, tr
        ts = tr['two_source']
        assert ts['state'] == 'done' and ts['model'] == out2, ts
        assert (ts['pairs'], ts['components']) == (300, 4)
        assert set(ts['mix_error']) == {'azimuth_deg', 'elevation_deg'} and ts['cov_scale'] >= 1
        assert tr['total_seconds'] >= tr['seconds'] + ts['seconds'] - 1.0, tr
        assert tr['handoff'] == (f'models handed to /sbm_localizer: model_path={out}, '
                                 f'model_path_two={out2}, n_sources=0'), tr['handoff']
        m1, m2 = SBMModel.load(str(out)), SBMModel.load(out2)
        assert (m1.n_sources, m2.n_sources, m2.n_train) == (1, 2, 300)
        assert m2.info['mix_error'] == pytest.approx(ts['mix_error'])
        assert _get_params(ros, 'sbm_localizer', ['model_path', 'model_path_two', 'n_sources']) \
            == {'model_path': str(out), 'model_path_two': out2, 'n_sources': 0}
        loc.wait_for(r'two-source model .*sweep_2src\.npz', 10, spin=ros.spin_for)

        # K above the distinct position pairs (91): sbm-train refuses the two-source model
        assert ros.set_parameters(name, {'train_components_two': 200}).successful
        since = len(status)
        assert call(ros, train).success
        tr = _wait_trained(ros, status, since)
        assert tr['state'] == 'done' and tr['model_two'] is None, tr
        assert tr['two_source']['state'] == 'failed' and 'distinct position pairs' in \
            tr['two_source']['message'], tr['two_source']
        assert tr['handoff'] == (f"model handed to /sbm_localizer: model_path={out}, "
                                 f"model_path_two='', n_sources=1"), tr['handoff']
        assert _get_params(ros, 'sbm_localizer', ['model_path', 'model_path_two', 'n_sources']) \
            == {'model_path': str(out), 'model_path_two': '', 'n_sources': 1}
        assert 'two-source training failed' in proc.text()
        assert proc.alive and loc.alive


def test_virtual_head_plays_the_sweep_once_it_has_started(ros, tmp_path):
    """calibrate.launch.py with the virtual head: the rendered sweep waits for ~/start_sweep
    (its camera_info published meanwhile, which the calibrator needs to accept the start), so
    a sweep started by hand loses none of it (it lost the first row: coverage 93.5 %)."""
    from audio_common_msgs.msg import AudioDataStamped
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import String
    from sbm_ros.nodes.common import latched_qos
    sweep = tmp_path / 'sweep.yaml'
    sweep.write_text(SHORT_SWEEP)
    infos = ros.collect(CameraInfo, '/camera_info')
    audio = ros.collect(AudioDataStamped, '/audio/audio_stamped', 50)
    head = NodeProcess('virtual_head', DOMAIN, params={
        'sweep': str(sweep), 'rate': 4.0, 'start_delay_s': 0.2, 'exit_when_done': True,
        'start_on_sweep': 'fakecal/calibration_status'})
    with head, logs_on_failure(head):
        head.wait_for(r'waiting for the sweep to start on /fakecal/calibration_status',
                      timeout=60, spin=ros.spin_for)
        ros.spin_for(1.5)
        assert len(infos) >= 3 and not audio, (len(infos), len(audio))
        pub = ros.node.create_publisher(String, '/fakecal/calibration_status', latched_qos())
        pub.publish(String(data=json.dumps({'state': 'stopped'})))
        ros.spin_for(1.0)
        assert not audio                              # only 'sweeping' starts it
        pub.publish(String(data=json.dumps({'state': 'sweeping', 'samples': 0})))
        head.wait_for(r'the sweep has started: playing', timeout=10, spin=ros.spin_for)
        assert ros.spin_until(lambda: len(audio) >= 5, 10.0), len(audio)
        ros.node.destroy_publisher(pub)

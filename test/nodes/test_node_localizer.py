"""sbm_localizer over real DDS: a node subprocess fed by a test node in this process.

Audio is a speech-like source rendered by the toy binaural head (test/synth.py) at a known
direction; the model is trained on the same head in a second. Every bad input of the issue is
published directly, must produce a clear log line, and a good sequence afterwards must still
give correct estimates (stamped inside the good sequence).
"""

import os

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy', reason='needs ROS 2 (source .dev/env.sh or a ROS install)')
pytest.importorskip('audio_common_msgs.msg', reason='needs audio_common_msgs')
pytest.importorskip('vision_msgs.msg', reason='needs vision_msgs')

from audio_common_msgs.msg import AudioDataStamped, AudioInfo  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseArray  # noqa: E402
from sensor_msgs.msg import CameraInfo  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402
from visualization_msgs.msg import ImageMarker, MarkerArray  # noqa: E402

import synth  # noqa: E402
from rostest_utils import NodeProcess, RosTestNode, domain_id_for  # noqa: E402
from sbm_ros.apps import cli  # noqa: E402
from sbm_ros.core.audio_io import float_to_pcm_bytes  # noqa: E402
from sbm_ros.core.geometry import PinholeCamera, direction_from_quaternion  # noqa: E402
from sbm_ros.core.localizer import SourceEstimate  # noqa: E402
from sbm_ros.nodes.common import latched_qos, ns_to_stamp, stamp_to_ns, stream_qos  # noqa: E402
from sbm_ros.nodes.ros_convert import resolve_sources  # noqa: E402

DOMAIN = domain_id_for(__name__)
RATE = synth.RATE
AZ, EL = 8.0, 4.0                      # the talker, degrees (REP 103: left, up)
CAM = PinholeCamera.from_fov(640, 480, 60.0, 47.0, frame_id='head_camera')
AZ_TOL, EL_TOL = 2.0, 3.0


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope='module')
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp('loc')
    ds = str(root / 'ds')
    synth.make_dataset(ds, np.linspace(-20, 20, 9), np.linspace(-10, 10, 5), duration=0.5)
    deg = str(root / 'deg.npz')
    assert cli.train_main([ds, '-o', deg, '-K', '6', '-q']) == 0
    # the same recordings labelled in pixels of CAM (camera.json stored in the model)
    dsp = str(root / 'dsp')
    os.makedirs(dsp)
    import json
    import shutil
    rows = open(os.path.join(ds, 'targets.csv')).read().split('\n')
    out = ['file,u_px,v_px']
    for r in rows[1:]:
        if r:
            f, az, el = r.split(',')
            u, v = CAM.project_direction(float(az), float(el))
            shutil.copy(os.path.join(ds, f), os.path.join(dsp, f))
            out.append(f'{f},{u:.3f},{v:.3f}')
    open(os.path.join(dsp, 'targets.csv'), 'w').write('\n'.join(out) + '\n')
    json.dump(CAM.to_dict(), open(os.path.join(dsp, 'camera.json'), 'w'))
    px = str(root / 'px.npz')
    assert cli.train_main([dsp, '-o', px, '-K', '6', '-q']) == 0
    two = str(root / 'two.npz')
    assert cli.train_main([ds, '-o', two, '--sources', '2', '-K', '4', '--pairs', '400',
                           '-q']) == 0
    corrupt = str(root / 'corrupt.npz')
    open(corrupt, 'wb').write(b'PK\x03\x04 definitely not a model')
    return {'deg': deg, 'px': px, 'two': two, 'corrupt': corrupt, 'root': str(root)}


@pytest.fixture(scope='module')
def ros():
    node = RosTestNode(DOMAIN, 'sbm_test_localizer')
    yield node
    node.close()


def talker(seconds, seed, gain=1.0):
    x = synth.render(synth.babble(int(seconds * RATE), seed), AZ, EL) * gain
    return x + 1e-4 * np.random.default_rng(seed).normal(size=x.shape)


class Feeder:
    """Publishes AudioInfo / stamped chunks / CameraInfo into namespace ``ns``."""

    def __init__(self, ros, ns=''):
        self.ros = ros
        n = ros.node
        self.pub_audio = n.create_publisher(AudioDataStamped, f'{ns}/audio/audio_stamped',
                                            stream_qos('reliable', 100))
        self.pub_info = n.create_publisher(AudioInfo, f'{ns}/audio/audio_info', latched_qos())
        self.pub_cam = n.create_publisher(CameraInfo, f'{ns}/camera_info', 10)
        self.t_ns = 1_000 * 1_000_000_000 + 123_456_789      # audio time cursor
        self.seed = 100

    def info(self, rate=RATE, channels=2, fmt='S16LE', coding='wave'):
        self.pub_info.publish(AudioInfo(channels=channels, sample_rate=rate, sample_format=fmt,
                                        bitrate=rate * channels * 16, coding_format=coding))
        self.ros.spin_for(0.2)

    def camera(self, cam=CAM):
        msg = CameraInfo(width=cam.width, height=cam.height)
        msg.header.frame_id = cam.frame_id
        msg.k = [float(v) for v in cam.K.reshape(-1)]
        assert self.ros.wait_for_subscribers(self.pub_cam)
        self.pub_cam.publish(msg)
        self.ros.spin_for(0.1)

    def raw(self, payload: bytes, stamp_ns=None):
        msg = AudioDataStamped()
        msg.header.stamp = ns_to_stamp(self.t_ns if stamp_ns is None else stamp_ns)
        msg.header.frame_id = 'head'
        msg.audio.data = bytes(payload)
        self.pub_audio.publish(msg)

    def send(self, x, chunk=1600, fmt='S16LE', speed=4.0, skip=()):
        """Publish ``x`` in stamped chunks at ``speed`` x real time; returns (t_start, t_end)."""
        assert self.ros.wait_for_subscribers(self.pub_audio)
        t0 = self.t_ns
        for k, i in enumerate(range(0, x.shape[0], chunk)):
            part = x[i:i + chunk]
            if k not in skip:
                self.raw(float_to_pcm_bytes(part, fmt))
            self.t_ns += part.shape[0] * 1_000_000_000 // RATE
            self.ros.spin_for(part.shape[0] / RATE / speed)
        return t0, self.t_ns

    def good(self, seconds=1.5, **kw):
        self.seed += 1
        return self.send(talker(seconds, self.seed), **kw)

    def swapped(self, x, chunk=1600, speed=4.0):
        """Publish ``x`` with every pair of chunks swapped (1, 0, 3, 2, ...)."""
        assert self.ros.wait_for_subscribers(self.pub_audio)
        t0 = self.t_ns
        parts = [(self.t_ns + i * 1_000_000_000 // RATE, x[i:i + chunk])
                 for i in range(0, x.shape[0] - chunk + 1, chunk)]
        for k in range(0, len(parts) - 1, 2):
            for stamp, part in (parts[k + 1], parts[k]):
                self.raw(float_to_pcm_bytes(part), stamp)
                self.ros.spin_for(part.shape[0] / RATE / speed)
        self.t_ns = parts[-1][0] + chunk * 1_000_000_000 // RATE
        return t0, self.t_ns


def diag_values(diags):
    """Key/values of the newest localiser status."""
    return {kv.key: kv.value for kv in diags[-1].status[0].values} if diags else {}


def fresh_diag(ros, diags, n=2, timeout=6.0):
    """Values of a status published at least one period after now (everything sent before
    has been handled by then)."""
    mark = len(diags)
    ros.spin_until(lambda: len(diags) >= mark + n, timeout)
    assert len(diags) >= mark + n, 'no diagnostics'
    return diag_values(diags)


def wait_diag(ros, diags, check, timeout=6.0):
    """Spin until the newest diagnostics satisfy ``check(values)``; returns the values."""
    ros.spin_until(lambda: bool(diags) and check(diag_values(diags)), timeout)
    return diag_values(diags)


def directions_in(msgs, t0, t1):
    out = []
    for m in msgs:
        t = stamp_to_ns(m.header.stamp)
        if t0 <= t <= t1:
            out.extend(direction_from_quaternion((p.orientation.x, p.orientation.y,
                                                  p.orientation.z, p.orientation.w))
                       for p in m.poses)
    return np.array(out).reshape(-1, 2)


def pixels_in(msgs, t0, t1):
    out = []
    for m in msgs:
        if t0 <= stamp_to_ns(m.header.stamp) <= t1:
            out.extend((d.bbox.center.position.x, d.bbox.center.position.y)
                       for d in m.detections)
    return np.array(out).reshape(-1, 2)


def assert_direction(ros, dirs_msgs, span, n_min=3, timeout=5.0):
    ros.spin_until(lambda: len(directions_in(dirs_msgs, *span)) >= n_min, timeout)
    d = directions_in(dirs_msgs, *span)
    assert len(d) >= n_min, f'only {len(d)} direction estimates in the good sequence'
    med = np.median(d, axis=0)
    assert abs(med[0] - AZ) < AZ_TOL and abs(med[1] - EL) < EL_TOL, med
    return d


# ------------------------------------------------------------------------------ pure helpers
def test_resolve_sources_degrees_and_pixels():
    src = [SourceEstimate(np.array([AZ, EL]), np.diag([4.0, 9.0]), 0.7)]
    (o,) = resolve_sources(src, 'degrees', 2, None)
    assert o.pixel is None and np.allclose(o.direction, [AZ, EL])
    (o,) = resolve_sources(src, 'degrees', 2, CAM)
    assert np.allclose(o.pixel, CAM.project_direction(AZ, EL))
    assert o.pixel_cov[0, 0] > 0 and o.pixel_cov[1, 1] > 0
    uv = np.array(CAM.project_direction(AZ, EL))
    (p,) = resolve_sources([SourceEstimate(uv, o.pixel_cov, 0.7)], 'pixels', 2, CAM)
    assert np.allclose(p.direction, [AZ, EL], atol=1e-6)
    assert np.allclose(p.direction_cov, np.diag([4.0, 9.0]), rtol=1e-6, atol=1e-9)
    (q,) = resolve_sources([SourceEstimate(uv, o.pixel_cov, 0.7)], 'pixels', 2, None)
    assert q.direction is None and np.allclose(q.pixel, uv)
    (b,) = resolve_sources([SourceEstimate(np.array([170.0, 0.0]), np.eye(2), 0.5)],
                           'degrees', 2, CAM)
    assert b.pixel is None and b.direction is not None        # behind the camera
    (a,) = resolve_sources([SourceEstimate(np.array([AZ]), np.eye(1), 0.5)], 'degrees', 1, CAM)
    assert np.allclose(a.direction, [AZ, 0.0]) and a.pixel is not None


def test_config_yaml_lists_every_parameter_with_its_default():
    import yaml
    from sbm_ros.nodes import binaural_capture, sbm_localizer
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for mod, name in ((sbm_localizer, 'sbm_localizer'), (binaural_capture, 'binaural_capture')):
        with open(os.path.join(root, 'config', f'{name}.yaml')) as fh:
            params = yaml.safe_load(fh)['/**']['ros__parameters']
        assert params == {p.name: p.default for p in mod.PARAMS}, name
        for p in mod.PARAMS:         # same types: ROS refuses e.g. 1 for a double parameter
            assert type(params[p.name]) is type(p.default), p.name


# ------------------------------------------------------------------------------ main node
@pytest.fixture(scope='module')
def loc(models, ros):
    p = NodeProcess('sbm_localizer', DOMAIN, params={
        'model_path': models['deg'], 'n_sources': 1, 'estimate_rate': 10.0,
        'log_throttle_s': 0.0})
    out = {
        'dirs': ros.collect(PoseArray, '/sound_directions', stream_qos('reliable', 100)),
        'src': ros.collect(Detection2DArray, '/sound_sources', stream_qos('reliable', 100)),
        'markers': ros.collect(MarkerArray, '/sound_markers', stream_qos('reliable', 100)),
        'img': ros.collect(ImageMarker, '/sound_image_markers', stream_qos('reliable', 100)),
        'diag': ros.collect(DiagnosticArray, '/diagnostics'),
    }
    with p:
        p.wait_for(r'model .*deg\.npz: 1 source', timeout=15, spin=ros.spin_for)
        # its diagnostics reaching us = discovery of the node's endpoints is done
        assert ros.spin_until(lambda: len(out['diag']) > 0, 10.0)
        feeder = Feeder(ros)
        feeder.info()
        feeder.camera()
        yield p, feeder, out
    assert p.proc.returncode is not None


def test_good_audio_gives_correct_outputs(loc, ros):
    node, feeder, out = loc
    feeder.camera()
    span = feeder.good(2.0)
    d = assert_direction(ros, out['dirs'], span)
    assert len(d) >= 8                  # ~10 per s of audio once the window is half full
    ros.spin_until(lambda: len(pixels_in(out['src'], *span)) >= 3, 3.0)
    px = pixels_in(out['src'], *span)
    u, v = CAM.project_direction(AZ, EL)
    med = np.median(px, axis=0)
    assert abs(med[0] - u) < AZ_TOL * 10 and abs(med[1] - v) < EL_TOL * 10, (med, (u, v))
    det_msgs = [m for m in out['src'] if span[0] <= stamp_to_ns(m.header.stamp) <= span[1]]
    m = det_msgs[-1]
    assert m.header.frame_id == 'head_camera'
    det = m.detections[0]
    assert det.id == 'source_0' and det.results[0].hypothesis.class_id == 'sound_source'
    assert 0.0 < det.results[0].hypothesis.score <= 1.0
    cov = det.results[0].pose.covariance
    assert cov[0] > 0 and cov[7] > 0 and cov[1] == cov[6]
    assert det.bbox.size_x == pytest.approx(4 * np.sqrt(cov[0]))
    # output stamps = acquisition time of a window's last sample, inside the sequence
    stamps = sorted(stamp_to_ns(m.header.stamp) for m in out['dirs']
                    if span[0] <= stamp_to_ns(m.header.stamp) <= span[1])
    assert stamps[0] >= span[0] + int(0.3 * 1e9) and stamps[-1] < span[1]
    assert all((s - span[0]) % 62_500 == 0 for s in stamps)   # whole samples at 16 kHz
    assert out['dirs'][-1].header.frame_id == 'head'
    assert any(len(m.markers) == 2 for m in out['markers'])
    assert any(m.type == ImageMarker.CIRCLE and m.scale >= 5.0 for m in out['img'])
    ros.spin_until(lambda: any(s.values and s.message.startswith('localising')
                               for a in out['diag'] for s in a.status), 3.0)
    assert any(s.message.startswith('localising') for a in out['diag'] for s in a.status)
    vals = diag_values(out['diag'])
    assert float(vals['processing_s']) >= 0 and 'latency_s' in vals and 'keeping_up' in vals
    assert 'subscribed /audio/audio_stamped [reliable/volatile/depth=100]' in node.text()


def _info_case(feeder, ros, **info):
    feeder.info(**info)
    feeder.send(talker(0.3, 7), speed=8.0)


BAD_CASES = {
    'wrong_rate': (lambda f, r: _info_case(f, r, rate=44100),
                   r"audio sample rate 44100 Hz does not match the model's 16000 Hz"),
    'mp3': (lambda f, r: _info_case(f, r, coding='mp3'),
            r"coding_format 'mp3' is not raw PCM"),
    'channels': (lambda f, r: _info_case(f, r, channels=1),
                 r'1 channel\(s\); the localiser needs 2'),
    'sample_format': (lambda f, r: _info_case(f, r, fmt='U8'),
                      r"unsupported sample_format 'U8'"),
    'odd_bytes': (lambda f, r: f.raw(b'\x01' * 3203),
                  r'3203 bytes is not a whole number of 4-byte frames'),
    'random_bytes': (lambda f, r: f.raw(np.random.default_rng(3).bytes(6400)),
                     r'audio level implausibly high .* incoherent ears .* chunk refused'),
    'huge_chunk': (lambda f, r: f.raw(bytes(10 * 2**20)),
                   r'audio chunk of 10485760 bytes \(163\.8 s\) refused: longer than '
                   r'max_chunk_s=5 s'),
    'time_jump': (lambda f, r: (f.good(0.5), setattr(f, 't_ns', f.t_ns + 10**15), f.good(0.5)),
                  r'audio stamps jumped 1000000\.\d+ s ahead'),
    'nan_f32': (lambda f, r: (f.info(fmt='F32LE'),
                              f.raw(np.full((800, 2), np.nan, '<f4').tobytes())),
                r'non-finite sample\(s\) \(NaN/inf\) dropped'),
    'backward_jump': (lambda f, r: (f.good(0.5), setattr(f, 't_ns', f.t_ns - 5 * 10**9),
                                    f.good(0.3)),
                      r'audio stamps went backwards by 5\.\d+ s'),
    'dropped_chunks': (lambda f, r: f.send(talker(1.0, 5), skip=(4, 5, 6)),
                       r'gap of 0\.300 s in the audio stamps \(~3 chunk'),
    'out_of_order': (lambda f, r: (f.raw(float_to_pcm_bytes(talker(0.1, 9)),
                                         f.t_ns + 100_000_000),
                                   f.raw(float_to_pcm_bytes(talker(0.1, 9)))),
                     r'put back in order by the reorder buffer'),
    'unstamped': (lambda f, r: f.raw(float_to_pcm_bytes(talker(0.1, 9)), stamp_ns=0),
                  r'audio chunk without stamp'),
}


@pytest.mark.parametrize('case', list(BAD_CASES))
def test_bad_input_is_reported_and_node_keeps_serving(loc, ros, case):
    node, feeder, out = loc
    action, pattern = BAD_CASES[case]
    mark = len(node.text())
    action(feeder, ros)
    node.wait_for(pattern, timeout=5.0, spin=ros.spin_for, start=mark)
    assert node.alive
    feeder.info()                        # back to the right format
    feeder.t_ns += 10**9
    span = feeder.good(1.5)
    assert_direction(ros, out['dirs'], span)


def test_swapped_chunks_are_reordered_and_keep_localising(loc, ros):
    node, feeder, out = loc
    feeder.t_ns += 10**9
    feeder.good(0.5)
    before = fresh_diag(ros, out['diag'])
    span = feeder.swapped(talker(2.0, 21))
    after = wait_diag(ros, out['diag'], lambda v: int(v['reordered_chunks']) >=
                      int(before['reordered_chunks']) + 10)
    assert int(after['reordered_chunks']) >= int(before['reordered_chunks']) + 10
    assert int(after['flushes']) - int(before['flushes']) <= 1        # the gap before it only
    assert int(after['late_chunks']) == int(before['late_chunks'])
    d = assert_direction(ros, out['dirs'], span)
    assert len(d) >= 8                    # one estimate per 0.1 s once the window is half full


def test_time_jump_is_counted_once_not_as_dropped_chunks(loc, ros):
    node, feeder, out = loc
    feeder.t_ns += 10**9
    feeder.good(0.5)
    before = fresh_diag(ros, out['diag'])
    feeder.t_ns += 10**15                                 # 10^6 s ahead
    span = feeder.good(1.5)
    after = wait_diag(ros, out['diag'], lambda v: int(v['time_jumps']) > int(
        before['time_jumps']))
    assert int(after['time_jumps']) == int(before['time_jumps']) + 1
    assert int(after['dropped_chunks']) == int(before['dropped_chunks'])
    assert_direction(ros, out['dirs'], span)


def _rss_mb(pid):
    with open(f'/proc/{pid}/status') as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith('VmRSS')) / 1024


def test_huge_chunks_are_refused_and_memory_stays_flat(loc, ros):
    node, feeder, out = loc
    feeder.t_ns += 10**9
    feeder.good(0.5)
    before = fresh_diag(ros, out['diag'])
    rss0 = _rss_mb(node.proc.pid)
    for _ in range(3):                    # 10 MiB each: 164 s of audio
        feeder.raw(bytes(10 * 2**20))
        feeder.t_ns += 10 * 2**20 // 4 * 1_000_000_000 // RATE
        ros.spin_for(0.2)
    after = wait_diag(ros, out['diag'], lambda v: int(v['oversized_chunks']) >= int(
        before['oversized_chunks']) + 3)
    assert int(after['oversized_chunks']) == int(before['oversized_chunks']) + 3
    print(f'localiser RSS {rss0:.0f} MB -> {_rss_mb(node.proc.pid):.0f} MB')
    # before the cap: +500 MB while processing, +90 MB kept; the messages alone are 30 MiB
    assert _rss_mb(node.proc.pid) - rss0 < 80, (rss0, _rss_mb(node.proc.pid))
    assert_direction(ros, out['dirs'], feeder.good(1.5))


def test_silence_publishes_nothing_and_diagnostics_say_so(loc, ros):
    node, feeder, out = loc
    feeder.good(1.0)
    t_quiet = feeder.t_ns
    zeros = np.zeros((int(1.5 * RATE), 2))                            # muted input
    room = 1e-4 * np.random.default_rng(1).normal(size=(RATE, 2))    # quiet room, no talker
    span = feeder.send(np.concatenate([zeros, room]), speed=2.0)
    ros.spin_for(0.5)
    assert len(directions_in(out['dirs'], t_quiet, span[1])) == 0

    def silent_diag():
        return any(s.message.startswith('silent') and
                   any(kv.key == 'silent' and kv.value == 'True' for kv in s.values)
                   for a in out['diag'][-3:] for s in a.status)
    assert ros.spin_until(silent_diag, 3.0), [a.status[0].message for a in out['diag'][-3:]]
    assert_direction(ros, out['dirs'], feeder.good(1.5))


def test_clipped_audio_warns_and_still_localises(loc, ros):
    node, feeder, out = loc
    mark = len(node.text())
    x = np.clip(talker(1.5, 11, gain=6.0), -1.0, 1.0)
    span = feeder.send(x)
    node.wait_for(r'audio clipped: \d+\.\d% of the samples', timeout=5, spin=ros.spin_for,
                  start=mark)
    ros.spin_until(lambda: len(directions_in(out['dirs'], *span)) >= 3, 5.0)
    d = directions_in(out['dirs'], *span)
    assert len(d) >= 3
    assert abs(np.median(d[:, 0]) - AZ) < 5.0


# ------------------------------------------------------------------------------ model handling
def test_missing_model_then_runtime_model_path(models, ros):
    """Node b: starts with a missing model and n_sources=2, no camera_info, QoS mismatch."""
    p = NodeProcess('sbm_localizer', DOMAIN, name='sbm_localizer', params={
        'model_path': os.path.join(models['root'], 'missing.npz'), 'n_sources': 2,
        'no_data_warn_s': 1.0, 'diagnostics_period_s': 0.5}, remaps={'__ns': '/b'})
    dirs = ros.collect(PoseArray, '/b/sound_directions', stream_qos('reliable', 100))
    src = ros.collect(Detection2DArray, '/b/sound_sources', stream_qos('reliable', 100))
    with p:
        p.wait_for(r'does not exist.*publishing nothing until a good model_path', timeout=15,
                   spin=ros.spin_for)
        # a best-effort audio publisher cannot reach the reliable subscription: warned
        be = ros.node.create_publisher(AudioDataStamped, '/b/audio/audio_stamped',
                                       stream_qos('best_effort', 10))
        p.wait_for(r'/b/audio/audio_stamped has 1 publisher\(s\) but nothing arrived.*'
                   r'INCOMPATIBLE reliability', timeout=8, spin=ros.spin_for)
        ros.node.destroy_publisher(be)
        feeder = Feeder(ros, '/b')
        feeder.info()
        feeder.good(0.5)
        p.wait_for(r'no usable model is loaded', timeout=5, spin=ros.spin_for)
        assert not dirs

        r = ros.set_parameters('/b/sbm_localizer', {'model_path': models['corrupt']})
        assert not r.successful and 'truncated or corrupt' in r.reason
        r = ros.set_parameters('/b/sbm_localizer', {'model_path': models['deg']})
        assert not r.successful and 'localises 1 source(s) but n_sources=2' in r.reason
        r = ros.set_parameters('/b/sbm_localizer',
                               {'n_sources': 1, 'model_path': models['deg']})
        assert r.successful, r.reason
        span = feeder.good(1.5)
        assert_direction(ros, dirs, span)
        assert not pixels_in(src, *span).size         # degrees model, no camera_info
        p.wait_for(r'no camera_info received on /b/camera_info: sound_sources and '
                   r'sound_image_markers cannot be produced', timeout=3, spin=ros.spin_for)
        # a corrupt file now is refused and the old model stays in use
        r = ros.set_parameters('/b/sbm_localizer', {'model_path': models['corrupt']})
        assert not r.successful
        r = ros.set_parameters('/b/sbm_localizer', {'n_sources': 2})
        assert not r.successful and 'localises 1 source(s)' in r.reason
        # the automatic mode's two models are taken together or not at all: a good
        # model_path_two with a refused model_path leaves both as they were
        r = ros.set_parameters('/b/sbm_localizer', {
            'n_sources': 0, 'model_path_two': models['two'], 'model_path': models['corrupt']})
        assert not r.successful and 'truncated or corrupt' in r.reason
        r = ros.set_parameters('/b/sbm_localizer', {'model_path': models['deg']})
        assert r.successful, r.reason
        ros.spin_for(0.5)
        assert 'two-source model' not in p.text(), 'model_path_two applied by a refused call'
        feeder.t_ns += 10**9
        assert_direction(ros, dirs, feeder.good(1.5))
        r = ros.set_parameters('/b/sbm_localizer', {
            'n_sources': 0, 'model_path_two': models['two'], 'model_path': models['deg']})
        assert r.successful, r.reason
        p.wait_for(r'two-source model .*two\.npz', timeout=5, spin=ros.spin_for)
        p.wait_for(r'automatic 1/2 source count, speech onset gap 0\.12 s', timeout=5,
                   spin=ros.spin_for)
        r = ros.set_parameters('/b/sbm_localizer', {'onset_gap_s': -0.1})
        assert not r.successful
        r = ros.set_parameters('/b/sbm_localizer', {'onset_gap_s': 0.25})
        assert r.successful, r.reason
        p.wait_for(r'automatic 1/2 source count, speech onset gap 0\.25 s', timeout=5,
                   spin=ros.spin_for)
        r = ros.set_parameters('/b/sbm_localizer', {'n_sources': 1, 'model_path_two': ''})
        assert r.successful, r.reason

        # a pixel model: sound_sources directly, directions from the camera in the model file
        r = ros.set_parameters('/b/sbm_localizer', {'model_path': models['px']})
        assert r.successful, r.reason
        feeder.t_ns += 10**9
        span = feeder.good(1.5)
        assert_direction(ros, dirs, span)
        px = pixels_in(src, *span)
        assert len(px) >= 3
        u, v = CAM.project_direction(AZ, EL)
        assert np.linalg.norm(np.median(px, axis=0) - [u, v]) < 30.0
        assert p.alive


def test_sim_time_without_clock_still_localises(models, ros):
    """use_sim_time with no /clock publisher (a bag played without --clock): estimates are
    triggered by the audio stream and stamped with the recorded audio times, never waiting."""
    p = NodeProcess('sbm_localizer', DOMAIN, name='sbm_localizer', params={
        'model_path': models['deg'], 'use_sim_time': True, 'diagnostics_period_s': 0.5},
        remaps={'__ns': '/simtime'})
    dirs = ros.collect(PoseArray, '/simtime/sound_directions', stream_qos('reliable', 100))
    with p:
        p.wait_for(r'model .*deg\.npz: 1 source', timeout=15, spin=ros.spin_for)
        feeder = Feeder(ros, '/simtime')
        feeder.info()
        feeder.t_ns = 42 * 1_000_000_000            # recorded times, far from the wall clock
        span = feeder.good(2.0)
        assert_direction(ros, dirs, span)
        stamps = [stamp_to_ns(m.header.stamp) for m in dirs]
        assert all(span[0] < s < span[1] for s in stamps), (span, stamps[:3])
        assert node_param(ros, '/simtime/sbm_localizer', 'use_sim_time') is True
        assert p.alive


def node_param(ros, node, name):
    from rcl_interfaces.srv import GetParameters
    cli = ros.node.create_client(GetParameters, f'{node}/get_parameters')
    assert cli.wait_for_service(timeout_sec=5.0)
    fut = cli.call_async(GetParameters.Request(names=[name]))
    ros.spin_until(fut.done, 5.0)
    return fut.result().values[0].bool_value

"""Training capture without ROS: the audio clock, the recording, the checks, the sample."""

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from sbm_ros.av import capture as cap
from sbm_ros.av.capture import AudioTimeline, Recording
from sbm_ros.core.audio_io import float_to_pcm_bytes

S = 1_000_000_000
RATE = 16000
FMT = (RATE, 2, 'S16LE')


def test_audio_timeline_maps_steady_time_to_audio_stamps():
    """The offset is the smallest (arrival - end stamp) of the window; late chunks do not move
    it, a stamp discontinuity restarts it, old chunks leave the window."""
    tl = AudioTimeline(window_ns=10 * S, jump_ns=S // 2)
    assert tl.to_audio(5 * S) is None
    lag = -3 * S                                     # audio clock 3 s ahead of the steady one
    for k, late in enumerate([0.004, 0.002, 0.9, 0.003]):   # one chunk queued for 0.9 s
        end = (k + 1) * S // 20 - lag
        tl.add(int((k + 1) * S // 20 + late * S), end - S // 20, end)
    assert tl.offset_ns == lag + S * 2 // 1000       # clock offset + the smallest latency
    assert tl.to_audio(10 * S) == 10 * S - lag - S * 2 // 1000
    tl.add(int(0.3 * S), 100 * S, 100 * S + S // 20)   # the stamps jump (driver restarted)
    assert tl.resets == 1 and tl.offset_ns == int(0.3 * S) - 100 * S - S // 20
    tl.add(int(20 * S), 100 * S + S // 20, 100 * S + S // 10)   # 20 s later: window moved on
    assert tl.offset_ns == 20 * S - 100 * S - S // 10


def chunk(k, n=800, value=None):
    """(bytes, first-sample stamp) of the k-th 50 ms chunk; samples numbered from 0."""
    idx = np.arange(k * n, (k + 1) * n)
    x = np.stack([idx, -idx], axis=1) / 1e5 if value is None else np.full((n, 2), value)
    return float_to_pcm_bytes(x), k * n * S // RATE


def test_recording_skips_audio_from_before_the_request_and_trims_the_chunk_under_way():
    tl = AudioTimeline()
    for k in range(10):                     # steady clock = audio clock + 1 ms latency
        _, st = chunk(k)
        tl.add(st + 800 * S // RATE + S // 1000, st, st + 800 * S // RATE)
    request = 12 * 800 * S // RATE + 400 * S // RATE + S // 1000   # half-way in chunk 12
    rec = Recording(1600, request)
    for k in (10, 11):                      # queued from before the request: skipped
        rec.add(*chunk(k), FMT, tl)
    assert rec.stale == 2 and rec.count == 0
    for k in (12, 13, 14):
        rec.add(*chunk(k), FMT, tl)
    assert rec.done and rec.trimmed == 400 and rec.count == 1600
    x = rec.samples()
    assert x.shape == (1600, 2)
    assert abs(x[0, 0] * 1e5 - (12 * 800 + 400)) < 1.0      # first sample after the request
    assert 0 <= rec.delay_ns < S // 1000 + 1


def test_recording_unstamped_audio_is_taken_as_it_comes_and_a_bad_format_stops_it():
    rec = Recording(1000)
    data, _ = chunk(0)
    rec.add(data, 0, FMT, AudioTimeline())
    rec.add(data, 0, FMT, AudioTimeline())
    assert rec.done and rec.count == 1000 and rec.delay_ns is None
    part = Recording(100)                   # a partial frame waits for the rest
    part.add(b'\x00' * 3, 0, FMT, AudioTimeline())
    assert not part.done and part.count == 0
    part.add(b'\x00' * 5, 0, FMT, AudioTimeline())
    assert part.count == 2
    fmt_err = Recording(100)
    fmt_err.add(data, 0, 'audio_info sample_rate 0 is invalid', AudioTimeline())
    assert fmt_err.done and fmt_err.error.startswith('audio_info')
    short = Recording(RATE, 0)
    short.add(data, 0, FMT, AudioTimeline())
    assert 'got 0.05 s of 1.00 s' in short.shortfall(RATE, 1.0)


def test_audio_format():
    info = SimpleNamespace(coding_format='wave', sample_format='S16LE', channels=2,
                           sample_rate=RATE)
    assert cap.audio_format(info) == (RATE, 2, 'S16LE')
    assert 'not raw PCM' in cap.audio_format(SimpleNamespace(**{**vars(info),
                                                                'coding_format': 'mp3'}))
    assert '2 audio channels' in cap.audio_format(SimpleNamespace(**{**vars(info),
                                                                     'channels': 1}))
    assert cap.audio_format(None, 48000, 'S32LE') == (48000, 2, 'S32LE')
    assert 'sample_rate is 0' in cap.audio_format(None)
    assert cap.chunk_end_ns(S, 800 * 4, FMT) == S + 50_000_000


K = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize('width,height,k,what', [
    (640, 480, [0.0] + K[1:], 'fx = 0'),
    (640, 480, K[:4] + [-1.0] + K[5:], 'fy = -1'),
    (640, 480, [float('nan')] + K[1:], 'non-finite'),
    (640, 480, K[:2] + [float('inf')] + K[3:], 'non-finite'),
    (0, 480, K, 'size 0x480'),
    (640, 0, K, 'size 640x0'),
    (640, 480, [0.0] * 9, 'fx = 0'),
    (640, 480, K[:8], '8 values'),
])
def test_camera_problem_names_what_is_wrong(width, height, k, what):
    why = cap.camera_problem(width, height, k)
    assert why and what in why, why


def test_camera_problem_accepts_a_calibrated_camera():
    assert cap.camera_problem(640, 480, K) is None
    d = cap.camera_dict(640, 480, K, [0.0] * 5, 'plumb_bob', 'cam')
    assert d['K'] == K and d['width'] == 640 and d['frame_id'] == 'cam'


def test_checks():
    assert 'no audio received' in cap.audio_age_problem(None, 5.0)
    assert 'no audio for 6.0 s' in cap.audio_age_problem(6.0, 5.0)
    assert cap.audio_age_problem(0.1, 5.0) is None
    assert 'is the camera running?' in cap.image_age_problem(2.0, 1.0)
    assert cap.image_age_problem(0.5, 1.0) is None
    assert 'differ' in cap.image_size_problem((640, 480), (320, 240))
    assert cap.image_size_problem((640, 480), (640, 480)) is None
    a, b = SimpleNamespace(u=100.0, v=100.0), SimpleNamespace(u=106.0, v=108.0)
    assert 'moved 10.0 px' in cap.marker_motion_problem(a, b, 8.0)
    assert cap.marker_motion_problem(a, b, 12.0) is None
    x = np.full((100, 2), 0.1)
    assert cap.rms_dbfs(x) == pytest.approx(-20.0)
    assert 'too quiet' in cap.level_problem(cap.rms_dbfs(x * 1e-3), -40.0)
    assert cap.level_problem(-20.0, -40.0) is None


def test_append_capture_writes_the_sample_and_camera(tmp_path):
    root = str(tmp_path / 'ds')
    assert cap.count_samples(root) == 0
    cam = cap.camera_dict(640, 480, K, [0.0] * 5, 'plumb_bob', 'cam')
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (RATE // 2, 2))
    d0, d1 = SimpleNamespace(u=100.0, v=200.0), SimpleNamespace(u=102.0, v=202.0)
    res = cap.append_capture(root, x, RATE, d0, d1, cam, -10.0, delay_ns=5_000_000)
    assert not isinstance(res, str), res
    assert (res.u, res.v, res.total) == (101.0, 201.0, 1)
    assert 'from 0.005 s after the request' in res.message and '1 sample(s)' in res.message
    with open(os.path.join(root, 'camera.json')) as fh:
        assert json.load(fh)['K'] == K
    blocked = tmp_path / 'file'
    blocked.write_text('not a folder')
    assert 'cannot write to' in cap.append_capture(str(blocked), x, RATE, d0, d1, cam, -10.0)

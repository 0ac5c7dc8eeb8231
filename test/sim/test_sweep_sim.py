"""The moving loudspeaker of the virtual head (sbm_ros.sim.sweep, VirtualHead.render_moving):
exact static equivalence, no clicks, the interaural delay follows the trajectory, the marker is
drawn where the loudspeaker is, and the sweep file's checks."""

import numpy as np
import pytest
from scipy.signal import butter, fftconvolve, sosfiltfilt

from sbm_ros.core.phat import PhatHistogram
from sbm_ros.sim import Room, VirtualHead, white_noise
from sbm_ros.sim.scenario import ScenarioError
from sbm_ros.sim.sweep import Trajectory, parse_sweep, raster_trajectory

RATE = 16000


@pytest.fixture(scope="module")
def anechoic():
    return VirtualHead(room=Room.anechoic(), snr_db=None)


@pytest.fixture(scope="module")
def reverberant():
    return VirtualHead(snr_db=None)


def test_a_still_trajectory_equals_the_static_rendering(reverberant):
    s = white_noise(1.5, RATE, seed=3)
    y = reverberant.render_moving_clean(s, lambda t: (6.0, -4.0), keep_tail=True)
    z = reverberant.render_clean(s, 6.0, -4.0, keep_tail=True)
    assert y.shape == z.shape
    assert np.max(np.abs(y - z)) < 1e-12 * np.max(np.abs(z)) + 1e-15


def _hf_rms(x, cutoff=3000.0):
    sos = butter(8, cutoff, "highpass", fs=RATE, output="sos")
    return float(np.sqrt(np.mean(sosfiltfilt(sos, x, axis=0)[2000:-2000] ** 2)))


def test_moving_tone_has_no_clicks(anechoic):
    """A 400 Hz tone moving at 30 deg/s: above 3 kHz the crossfaded rendering is silent (no
    discontinuity at block boundaries), while switching the BRIR per block without crossfade
    clicks at every block."""
    n = 2 * RATE
    tone = 0.1 * np.sin(2 * np.pi * 400.0 * np.arange(n) / RATE)

    def traj(t):
        t = np.asarray(t, float)
        return -30.0 + 30.0 * t, np.zeros_like(t)
    hop = 640
    y = anechoic.render_moving_clean(tone, traj, hop=hop)
    naive = np.zeros_like(y)
    for k in range(0, n, hop):
        a, e = traj(k / RATE)
        ir = anechoic.binaural_ir(float(a), float(e))
        blk = np.zeros(n)
        blk[k:k + hop] = tone[k:k + hop]
        naive += np.stack([fftconvolve(blk, ir[:, c])[:n] for c in range(2)], axis=1)
    rms = float(np.sqrt(np.mean(y ** 2)))
    assert _hf_rms(y) < 1e-5 * rms
    assert _hf_rms(naive) > 300.0 * _hf_rms(y)
    # and the level does not dip or bump at block boundaries: the envelope is smooth
    env = np.abs(y[:, 0] + 1j * np.imag(np.fft.ifft(np.fft.fft(y[:, 0]) * (np.arange(n) < n // 2)
                                                    * 2)))
    env = env[3000:-3000]
    assert np.max(np.abs(np.diff(env))) < 1e-3 * np.max(env)


def test_interaural_delay_follows_the_trajectory(anechoic):
    """GCC-PHAT delay of each 0.5 s of a source moving from -14 to +14 deg equals that of a
    static source at the trajectory's direction in the middle of the window."""
    s = white_noise(4.0, RATE, seed=5)

    def traj(t):
        t = np.asarray(t, float)
        return -14.0 + 7.0 * t, np.full_like(t, 2.0)
    y = anechoic.render_moving_clean(s, traj)
    ph = PhatHistogram(sample_rate=RATE)
    moving, static = [], []
    for k in range(8):
        seg = slice(k * 8000, (k + 1) * 8000)
        moving.append(ph.estimate_delays(y[seg], 1)[0])
        az, el = traj((k + 0.5) * 0.5)
        static.append(ph.estimate_delays(anechoic.render_clean(s[seg], float(az), float(el)),
                                         1)[0])
    moving, static = np.array(moving), np.array(static)
    assert np.all(np.diff(moving) > 0)                     # moving to the left: delay grows
    np.testing.assert_allclose(moving, static, atol=8e-6)  # ~1/8 sample at 16 kHz


def test_trajectory_and_raster():
    tr = Trajectory([(0.0, 0.0, 0.0), (2.0, 4.0, -2.0), (3.0, 4.0, -2.0)])
    az, el = tr.direction_at(np.array([-1.0, 1.0, 2.5, 9.0]))
    np.testing.assert_allclose(az, [0.0, 2.0, 4.0, 4.0])
    np.testing.assert_allclose(el, [0.0, -1.0, -2.0, -2.0])
    assert tr.speed_at(1.0) == pytest.approx(np.hypot(4, 2) / 2) and tr.speed_at(2.5) == 0.0
    from sbm_ros.sim import VirtualCamera
    cam = VirtualCamera.narrow()
    r = raster_trajectory(cam, rows=5, speed_deg_s=2.0, margin_px=48)
    t = np.linspace(0, r.end_s, 2000)
    u, v = cam.direction_to_pixel(*r.direction_at(t))
    assert u.min() == pytest.approx(48, abs=0.5) and u.max() == pytest.approx(592, abs=0.5)
    assert v.min() == pytest.approx(48, abs=0.5) and v.max() == pytest.approx(432, abs=0.5)
    sp = r.speed_at(t[1:-1])
    np.testing.assert_allclose(sp[sp > 0], 2.0, rtol=1e-6)
    p = raster_trajectory(cam, rows=2, speed_deg_s=2.0, pause_every_deg=3.0, pause_s=0.5)
    still = p.speed_at(np.linspace(0, p.end_s, 5000)) == 0
    assert 0.1 < still.mean() < 0.3                        # 0.5 s stops every 1.5 s of path
    q = raster_trajectory(cam, rows=3, speed_deg_s=2.0, margin_px=48, turn_pause_s=0.6)
    r3 = raster_trajectory(cam, rows=3, speed_deg_s=2.0, margin_px=48)
    assert q.end_s == pytest.approx(r3.end_s + 6 * 0.6)     # two stops per pass
    for t in (0.1, 0.5):                                   # still in the top-left corner
        u, v = cam.direction_to_pixel(*q.direction_at(t))
        assert (float(u), float(v)) == pytest.approx((48.0, 48.0), abs=1e-6)


def test_marker_drawn_where_the_loudspeaker_is():
    pytest.importorskip("cv2")
    from sbm_ros.av.marker import MarkerDetector
    sc = parse_sweep({"camera": "narrow", "loudspeaker": {"raster": {
        "rows": 3, "speed_deg_s": 2.0, "margin_px": 48}}})
    det = MarkerDetector(sc.marker_dictionary, sc.marker_id)
    for t in np.linspace(sc.trajectory.start_s, sc.trajectory.end_s, 9):
        img = sc.image_at(float(t))
        hit = det.detect(img)
        assert hit is not None, f"marker not found at t={t:.2f}"
        u, v = sc.marker_pixel_at(float(t))
        # OpenCV reports pixel centres: +0.5 to the camera's corner convention
        assert hit.u + 0.5 == pytest.approx(float(u), abs=0.5)
        assert hit.v + 0.5 == pytest.approx(float(v), abs=0.5)
        assert hit.side_px == pytest.approx(sc.marker_side_px, rel=0.05)


def test_sweep_scene_audio_plays_while_the_trajectory_runs():
    sc = parse_sweep({"camera": "narrow", "room": {"t60": 0.3}, "snr_db": 30.0,
                      "lead_in_s": 0.5, "tail_s": 0.5, "loudspeaker": {
                          "level_dbfs": -20, "waypoints": [[0.0, 5.0, 0.0], [1.0, -5.0, 0.0]]}})
    x = sc.render_audio()
    assert x.shape == (int(np.ceil(sc.duration_s * RATE)), 2)
    lead = x[:int(0.45 * RATE)]
    play = x[int(0.6 * RATE):int(1.4 * RATE)]
    assert np.sqrt(np.mean(play ** 2)) > 20 * np.sqrt(np.mean(lead ** 2))   # ~30 dB SNR
    assert sc.playing(1.0) and not sc.playing(0.2) and not sc.playing(1.8)


@pytest.mark.parametrize("ls, match", [
    ({"raster": {}, "waypoints": [[0, 0, 0]]}, "exactly one"),
    ({"waypoints": [[0, 0, 0], [1.0, 95.0, 0]]}, "not in front"),
    ({"waypoints": [[1.0, 0, 0], [0.5, 1.0, 0]]}, "must not decrease"),
    ({"waypoints": [[0, "a", 0]]}, r"\[t, azimuth_deg"),
    ({"raster": {"rows": 0}}, "rows"),
    ({"raster": {"speed_deg_s": -1}}, "speed_deg_s"),
    ({"raster": {"margin_px": 400}}, "no room"),
    ({"raster": {"colour": 1}}, "unknown key"),
    ({"raster": {}, "marker": {"id": 99}}, None),
])
def test_bad_sweep_files_are_refused_with_a_message(ls, match):
    data = {"camera": "narrow", "loudspeaker": ls}
    if match is None:                     # the marker id is checked when drawing
        sc = parse_sweep(data)
        pytest.importorskip("cv2")
        with pytest.raises(ScenarioError, match="id 99"):
            sc.image_at(sc.trajectory.start_s)
        return
    with pytest.raises(ScenarioError, match=match):
        parse_sweep(data)
    with pytest.raises(ScenarioError, match="loudspeaker"):
        parse_sweep({"camera": "narrow"})


def test_default_sweep_file_is_about_three_minutes():
    from sbm_ros.sim.sweep import load_sweep
    sc = load_sweep()
    assert 150.0 <= sc.duration_s <= 200.0


def test_playback_gives_the_virtual_head_images_and_the_loudspeaker_state():
    pytest.importorskip("cv2")
    from sbm_ros.av.marker import MarkerDetector
    from sbm_ros.sim.sweep import SweepPlayback
    sc = parse_sweep({"camera": "narrow", "loudspeaker": {"raster": {
        "rows": 2, "speed_deg_s": 2.0, "margin_px": 48}}})
    n = int(sc.duration_s * sc.sample_rate)
    pb = SweepPlayback(sc, np.zeros((n, 2)))
    assert pb.duration_s == pytest.approx(sc.duration_s, abs=1e-3)
    info = pb.summary()
    assert info["kind"] == "sweep" and info["loudspeaker"]["marker"]["id"] == sc.marker_id
    assert info["utterances"] == [] and pb.talkers_at(3.0) == []
    t = 0.5 * (sc.trajectory.start_s + sc.trajectory.end_s)
    img, (st,) = pb.image_at(t)
    assert st.talking and st.name == "loudspeaker" and pb.face_detections([st]) == []
    hit = MarkerDetector(sc.marker_dictionary, sc.marker_id).detect(img)
    assert hit.u + 0.5 == pytest.approx(st.u_px, abs=0.5)
    assert hit.v + 0.5 == pytest.approx(st.v_px, abs=0.5)
    _, (before,) = pb.image_at(0.0)
    assert not before.talking                             # the lead-in: not playing yet

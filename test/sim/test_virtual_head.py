"""Tests of sbm_ros.sim (KEMAR interpolation, room, rendering, speech, camera,
datasets)."""

import csv
import shutil
import time

import numpy as np
import pytest
import soundfile as sf

from sbm_ros.sim import (Room, VirtualCamera, VirtualHead, count_utterances,
                         estimate_t60, fractional_shift, grid_positions, load_kemar,
                         make_training_set, speech, white_noise, write_dataset)
from sbm_ros.sim import sources as vh_sources

FS = 16000


@pytest.fixture(scope="module")
def kemar():
    return load_kemar(FS)


@pytest.fixture(scope="module")
def anechoic_head(kemar):
    return VirtualHead(room=Room.anechoic(), snr_db=None, hrirs=kemar)


def ild_db(x):
    e = np.sum(np.asarray(x) ** 2, axis=0)
    return 10.0 * np.log10(e[0] / e[1])


def xcorr_lag(x):
    """Lag (samples) of the interaural cross-correlation peak; > 0 when RIGHT lags LEFT."""
    n = 2 * x.shape[0]
    c = np.fft.irfft(np.conj(np.fft.rfft(x[:, 0], n)) * np.fft.rfft(x[:, 1], n), n)
    lags = np.r_[np.arange(0, n // 2), np.arange(-n // 2, 0)]
    return lags[int(np.argmax(c))]


# ---------------------------------------------------------------------- KEMAR / interpolation
def test_kemar_loads_at_16k(kemar):
    assert kemar.sample_rate == FS
    assert kemar.n_directions == 710
    assert kemar.hrirs.shape[1:] == (kemar.n_taps, 2)
    assert kemar.el.min() == pytest.approx(-40.0) and kemar.el.max() == pytest.approx(90.0)
    assert np.all(kemar.az > -180.0) and np.all(kemar.az <= 180.0)
    assert np.all(np.isfinite(kemar.hrirs)) and np.abs(kemar.hrirs).max() > 0.01
    # warm load from the cache is fast
    t = time.perf_counter()
    again = load_kemar(FS)
    assert time.perf_counter() - t < 2.0
    np.testing.assert_array_equal(again.hrirs, kemar.hrirs)


def test_fractional_shift_roundtrip():
    rng = np.random.default_rng(0)
    h = rng.standard_normal((255, 2))
    d = np.array([3.37, -7.81])
    np.testing.assert_allclose(fractional_shift(fractional_shift(h, d), -d), h, atol=1e-12)
    # integer shift on an odd length is an exact circular roll
    np.testing.assert_allclose(fractional_shift(h, 5.0), np.roll(h, 5, axis=0), atol=1e-12)


def test_interpolation_reproduces_measured_directions(kemar):
    for az, el in [(0.0, 0.0), (30.0, 0.0), (-35.0, 10.0), (40.0, -20.0), (0.0, 50.0)]:
        i = kemar.index_of(az, el)
        assert i is not None, (az, el)
        np.testing.assert_allclose(kemar.interpolate(az, el), kemar.hrirs[i], atol=1e-12)


def test_interpolation_is_smooth_not_nearest(kemar):
    # horizontal ring has 5 deg spacing: 30 and 35 are measured
    mid = kemar.interpolate(32.5, 0.0)
    a, b = kemar.hrirs[kemar.index_of(30, 0)], kemar.hrirs[kemar.index_of(35, 0)]
    assert np.linalg.norm(mid - a) > 0.05 * np.linalg.norm(a)
    assert np.linalg.norm(mid - b) > 0.05 * np.linalg.norm(b)
    itd_mid = kemar.itd_seconds(32.5, 0)
    lo, hi = sorted([kemar.itd_seconds(30, 0), kemar.itd_seconds(35, 0)])
    assert lo < itd_mid < hi
    # continuity: 0.1 deg steps change ILD and ITD by tiny amounts everywhere in the field
    for el in (-40.0, -12.3, 0.0, 7.0, 33.3, 50.0):
        azs = np.arange(-45.0, 45.0001, 0.1)
        ild = np.array([ild_db(kemar.interpolate(a, el)) for a in azs])
        itd = np.array([kemar.itd_seconds(a, el) for a in azs])
        assert np.abs(np.diff(ild)).max() < 0.1, el          # dB per 0.1 deg
        assert np.abs(np.diff(itd)).max() < 3e-6, el          # s per 0.1 deg
    els = np.arange(-40.0, 50.0001, 0.1)
    h = np.array([kemar.interpolate(12.0, e) for e in els])
    step = np.linalg.norm(np.diff(h, axis=0), axis=(1, 2)) / np.linalg.norm(h[:-1], axis=(1, 2))
    assert step.max() < 0.05


def test_azimuth_convention_left_is_positive(anechoic_head, kemar):
    s = white_noise(0.5, FS, seed=3)
    for az in (10.0, 30.0, 60.0):
        left = anechoic_head.render(s, az, 0.0)
        right = anechoic_head.render(s, -az, 0.0)
        assert ild_db(left) > 1.0 and ild_db(right) < -1.0        # louder on the source side
        assert xcorr_lag(left) > 0 and xcorr_lag(right) < 0       # left ear first for az > 0
        assert kemar.itd_seconds(az, 0) > 0
    # ~0.65 ms maximal onset ITD for KEMAR at 90 deg
    assert 0.5e-3 < kemar.itd_seconds(90.0, 0.0) < 0.9e-3


# ---------------------------------------------------------------------- room
def test_room_t60_and_anechoic(kemar):
    room = Room(t60=0.3, distance=2.0, seed=1)
    for az, el in [(0.0, 0.0), (25.0, -15.0), (-30.0, 20.0)]:
        ir = room.binaural_ir(az, el, kemar)
        t60 = estimate_t60(ir, FS)
        assert 0.21 <= t60 <= 0.39, (az, el, t60)
        assert 2.0 < room.drr(az, el, kemar) < 7.0
    assert room.drr(0.0, 0.0, kemar) == pytest.approx(4.0, abs=1e-6)
    # deterministic per seed, and cached per direction
    np.testing.assert_array_equal(Room(seed=1).binaural_ir(5.0, 2.0, kemar),
                                  room.binaural_ir(5.0, 2.0, kemar))
    assert not np.allclose(Room(seed=2).binaural_ir(5.0, 2.0, kemar),
                           room.binaural_ir(5.0, 2.0, kemar))
    an = Room.anechoic().binaural_ir(5.0, 2.0, kemar)
    assert an.shape[0] == kemar.n_taps
    np.testing.assert_allclose(an, kemar.interpolate(5.0, 2.0) / 2.0)
    # late tail partially coherent: coherent at low frequency, not at high frequency
    tail = room.components(0.0, 0.0, kemar)["tail"]
    L, R = np.fft.rfft(tail[:, 0]), np.fft.rfft(tail[:, 1])
    f = np.fft.rfftfreq(tail.shape[0], 1 / FS)

    def coh(lo, hi):
        m = (f >= lo) & (f < hi)
        return np.abs(np.sum(L[m] * np.conj(R[m]))) / np.sqrt(np.sum(np.abs(L[m]) ** 2)
                                                              * np.sum(np.abs(R[m]) ** 2))
    assert coh(20, 200) > 0.7 and coh(3000, 7000) < 0.3


# ---------------------------------------------------------------------- rendering
def test_render_snr_and_independent_noise(kemar):
    head = VirtualHead(room=Room(), snr_db=20.0, hrirs=kemar, seed=5)
    s = white_noise(1.0, FS, seed=4)
    y = head.render(s, 10.0, 5.0, noise_seed=11)
    clean = head.render_clean(s, 10.0, 5.0)
    assert y.shape == (s.size, 2) and y.dtype == np.float64
    noise = y - clean
    snr = 10 * np.log10(np.mean(clean ** 2) / np.mean(noise ** 2))
    assert abs(snr - 20.0) < 1.0
    assert abs(np.corrcoef(noise[:, 0], noise[:, 1])[0, 1]) < 0.05
    np.testing.assert_array_equal(y, head.render(s, 10.0, 5.0, noise_seed=11))
    assert head.render(s, 0, 0, keep_tail=True).shape[0] > s.size
    mix = head.render_mixture([(s, 10.0, 5.0, 0.0), (white_noise(0.5, FS, seed=9), -10, 0)],
                              noise_seed=1)
    assert mix.shape == (s.size, 2)
    second = head.render_clean(white_noise(0.5, FS, seed=9), -10, 0, keep_tail=True)
    clean_mix = head.render_clean(s, 10.0, 5.0)
    clean_mix[:second.shape[0]] += second[:s.size]      # the second source's reverb tail is kept
    snr_mix = 10 * np.log10(np.mean(clean_mix ** 2) / np.mean((mix - clean_mix) ** 2))
    assert abs(snr_mix - 20.0) < 1.0


# ---------------------------------------------------------------------- speech
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_espeak_speech_nonsilent_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("SBM_CACHE_DIR", str(tmp_path))
    x = speech("one, two, three", voice="en+f3")
    assert x.ndim == 1 and 0.5 * FS < x.size < 5 * FS
    assert np.sqrt(np.mean(x ** 2)) == pytest.approx(0.1, rel=1e-6)
    cached = list((tmp_path / "speech").glob("*.npy"))
    assert len(cached) == 1
    np.testing.assert_array_equal(speech("one, two, three", voice="en+f3"), x)
    for lang in ("fr", "el", "am"):
        words = count_utterances(lang, 20)
        assert len(words) == 20
        y = speech(", ".join(count_utterances(lang, 3, as_digits=(lang == "am"))), voice=lang)
        assert y.size > 0.3 * FS and np.max(np.abs(y)) > 0.1


def test_speech_without_espeak_raises(monkeypatch):
    monkeypatch.setattr(vh_sources.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="espeak-ng"):
        speech("hello", use_cache=False)


# ---------------------------------------------------------------------- camera
@pytest.mark.parametrize("cam", [VirtualCamera.narrow(), VirtualCamera.wide()])
def test_camera_projection(cam):
    u, v = cam.direction_to_pixel(0.0, 0.0)
    assert (u, v) == pytest.approx((cam.width / 2, cam.height / 2))
    h2, v2 = cam.hfov_deg / 2, cam.vfov_deg / 2
    assert cam.direction_to_pixel(h2, 0.0)[0] == pytest.approx(0.0, abs=1e-9)        # left
    assert cam.direction_to_pixel(-h2, 0.0)[0] == pytest.approx(cam.width, abs=1e-9)
    assert cam.direction_to_pixel(0.0, v2)[1] == pytest.approx(0.0, abs=1e-9)         # up
    assert cam.direction_to_pixel(0.0, -v2)[1] == pytest.approx(cam.height, abs=1e-9)
    az, el = np.meshgrid(np.linspace(-h2, h2, 7), np.linspace(-v2, v2, 5))
    uu, vv = cam.direction_to_pixel(az, el)
    az2, el2 = cam.pixel_to_direction(uu, vv)
    np.testing.assert_allclose(az2, az, atol=1e-9)
    np.testing.assert_allclose(el2, el, atol=1e-9)
    info = cam.camera_info_dict()
    assert info["width"] == cam.width and len(info["k"]) == 9 and len(info["p"]) == 12
    assert info["k"][2] == pytest.approx(cam.width / 2)


# ---------------------------------------------------------------------- datasets
def test_grids_inside_fov_and_offset():
    cam = VirtualCamera.narrow()
    train = grid_positions(24, 18, cam)
    test = grid_positions(12, 9, cam)
    assert train.shape == (432, 2) and test.shape == (108, 2)
    for g in (train, test):
        u, v = cam.direction_to_pixel(g[:, 0], g[:, 1])
        assert np.all(cam.in_image(u, v, margin=5.0))
    d = np.min(np.linalg.norm(test[:, None, :] - train[None, :, :], axis=2), axis=1)
    assert d.min() > 0.3       # test positions are not training positions


def test_write_training_set(tmp_path, kemar):
    cam = VirtualCamera.narrow()
    head = VirtualHead(room=Room(), snr_db=30.0, hrirs=kemar)
    out = make_training_set(tmp_path / "train", head, cam, n_az=3, n_el=2, duration_s=0.25)
    wavs = sorted(out.glob("*.wav"))
    assert len(wavs) == 6
    with open(out / "targets.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["file", "azimuth_deg", "elevation_deg"]
    assert len(rows) == 7 and {r[0] for r in rows[1:]} == {w.name for w in wavs}
    x, sr = sf.read(str(wavs[0]))
    assert sr == FS and x.shape == (4000, 2) and np.std(x) > 1e-3
    assert (out / "camera.json").exists()
    assert float(rows[1][1]) > 0 and float(rows[1][2]) > 0      # first row: top-left of image
    # pixel targets, atomic overwrite
    px = write_dataset(tmp_path / "train", [x, x], [[10.0, 20.0], [30.0, 40.0]],
                       units="pixels", camera=cam)
    with open(px / "targets.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["file", "u_px", "v_px"] and len(rows) == 3
    assert len(list(px.glob("*.wav"))) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_coherent_tail_follows_diffuse_field_position_coherence():
    """Late tails of nearby source positions correlate at low frequencies, not at high ones."""
    from scipy.signal import butter, sosfiltfilt
    from sbm_ros.sim import Room, load_kemar
    h = load_kemar()
    room = Room(tail_model="coherent")
    tails = {az: room.components(az, 0.0, h)["tail"][:, 0] for az in (0.0, 1.2, 25.0)}
    low = butter(4, 500, "low", fs=16000, output="sos")
    high = butter(4, 5000, "high", fs=16000, output="sos")

    def corr(a, b, sos):
        fa, fb = sosfiltfilt(sos, tails[a]), sosfiltfilt(sos, tails[b])
        return float(np.corrcoef(fa, fb)[0, 1])
    assert corr(0.0, 1.2, low) > 0.8          # sinc(k d) ~ 0.98 at 500 Hz, d = 4 cm
    assert abs(corr(0.0, 1.2, high)) < 0.5    # ~independent above 4 kHz
    assert abs(corr(0.0, 25.0, low)) < 0.6    # d = 87 cm: kd ~ 8 at 500 Hz
    indep = Room(tail_model="independent")
    t0 = indep.components(0.0, 0.0, h)["tail"][:, 0]
    t1 = indep.components(1.2, 0.0, h)["tail"][:, 0]
    assert abs(np.corrcoef(sosfiltfilt(low, t0), sosfiltfilt(low, t1))[0, 1]) < 0.5


# ---------------------------------------------------------------------- ambient fan noise
def test_fan_noise_is_directional_stationary_and_deterministic(kemar):
    from sbm_ros.core.features import FeatureConfig
    from sbm_ros.core.phat import gcc_phat_delay
    from sbm_ros.sim.ambient import FanNoise

    head = VirtualHead(room=Room(), snr_db=None, hrirs=kemar)
    fan = FanNoise(head, az_deg=-60.0, el_deg=-30.0, duration_s=8.0, psd_s=2.0)
    a = fan.segment(FS, np.random.default_rng(3))
    b = fan.segment(FS, np.random.default_rng(3))
    c = fan.segment(FS, np.random.default_rng(4))
    assert a.shape == (FS, 2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert 0.5 < np.mean(a ** 2) < 2.0          # unit power, up to segment fluctuation
    # the fan is on the right: the right ear leads (negative delay in the PHAT convention),
    # by about the interaural delay of a direct source at that direction
    d_fan = gcc_phat_delay(a, FS)
    d_src = gcc_phat_delay(head.render_clean(np.random.default_rng(0).standard_normal(FS),
                                             -60.0, -30.0), FS)
    assert d_fan < -0.3e-3
    assert abs(d_fan - d_src) < 40e-6
    # the measured PSD shows the 210 Hz blade-passing tone above the broadband floor
    cfg = FeatureConfig(sample_rate=FS)
    psd = fan.psd(cfg)
    assert psd.shape == (cfg.n_freq,) and np.all(psd > 0)
    k = int(round(fan.blade_pass_hz / (FS / cfg.n_fft))) - 1      # bins start at 1 (no DC)
    assert fan.blade_pass_hz == pytest.approx(210.0)
    assert psd[k] > 3 * np.median(psd[k + 4:k + 12])
    with pytest.raises(ValueError):
        FanNoise(head, duration_s=2.0, psd_s=2.0)

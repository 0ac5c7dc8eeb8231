import numpy as np
import pytest

from sbm_ros.core.features import (
    ILD_CLIP_DB,
    FeatureConfig,
    NoiseFloorTracker,
    StreamingFeatureExtractor,
    activity_mask,
    binaural_features,
    expand_mask,
    features_from_spectra,
    mean_feature_vector,
    stft,
)

CFG = FeatureConfig()
FS = CFG.sample_rate


def _noise(n, seed=0, scale=0.1):
    return np.random.default_rng(seed).standard_normal((n, 2)) * scale


def test_config_defaults_and_validation():
    assert CFG.n_freq == 512 and CFG.dim == 1536 and CFG.frame_rate == 125.0
    assert FeatureConfig(feature_type="ild").dim == 512
    assert FeatureConfig(feature_type="ipd").dim == 1024
    assert FeatureConfig.from_dict(CFG.to_dict()) == CFG
    for bad in [dict(n_fft=1023), dict(hop=0), dict(hop=2048), dict(sample_rate=-1),
                dict(feature_type="foo"), dict(n_fft=2.5)]:
        with pytest.raises(ValueError):
            FeatureConfig(**bad)
    with pytest.raises(AttributeError):
        CFG.hop = 3  # frozen


def test_stft_framing_and_window():
    x = _noise(5000)
    S = stft(x, CFG)
    T = (5000 - 1024) // 128 + 1
    assert S.shape == (T, 512, 2) and S.dtype == np.complex128
    t = 7
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    ref = np.fft.rfft(x[t * 128: t * 128 + 1024, 1] * w)[1:]
    np.testing.assert_allclose(S[t, :, 1], ref, rtol=1e-12, atol=1e-12)
    assert stft(x[:1023], CFG).shape == (0, 512, 2)


def test_ild_ipd_known_level_and_delay():
    # right = 0.5 * left delayed by 3 samples (circular within a long noise: check mid frames)
    rng = np.random.default_rng(3)
    s = rng.standard_normal(20000)
    d, g = 3, 0.5
    x = np.stack([s[d:], g * s[:-d]], axis=1)  # right lags left by d samples
    cfg = FeatureConfig(feature_type="ilpd")
    Y, P = binaural_features(x, cfg)
    F = cfg.n_freq
    ild, cos, sin = Y[:, :F], Y[:, F:2 * F], Y[:, 2 * F:]
    # ILD: 20 log10(0.5) = -6.02 dB in every bin (windowed delay error is small for d << n_fft)
    assert abs(np.median(ild) - 20 * np.log10(g)) < 0.05
    # IPD: phase of R conj(L) = -2 pi f d / n_fft
    f = np.arange(1, F + 1)
    expected = np.exp(-2j * np.pi * f * d / 1024)
    z = np.median(cos, axis=0) + 1j * np.median(sin, axis=0)
    err = np.abs(np.angle(z[:400] * np.conj(expected[:400])))
    assert np.median(err) < 0.02
    np.testing.assert_allclose(cos ** 2 + sin ** 2, 1.0, atol=1e-9)
    # feature-type variants are sub-blocks of ilpd
    Yi, _ = binaural_features(x, FeatureConfig(feature_type="ild"))
    Yp, _ = binaural_features(x, FeatureConfig(feature_type="ipd"))
    np.testing.assert_array_equal(Yi, ild)
    np.testing.assert_array_equal(Yp, Y[:, F:])
    np.testing.assert_allclose(P, np.abs(stft(x, cfg)) ** 2 @ np.ones(2), rtol=1e-12)


@pytest.mark.parametrize("kind", ["zeros", "left_silent", "right_silent", "clipped", "tiny", "dc"])
def test_features_finite_on_degenerate_input(kind):
    n = 4000
    x = np.zeros((n, 2))
    if kind == "left_silent":
        x[:, 1] = _noise(n)[:, 0]
    elif kind == "right_silent":
        x[:, 0] = _noise(n)[:, 0]
    elif kind == "clipped":
        x = np.clip(_noise(n, scale=10.0), -1, 1)
    elif kind == "tiny":
        x = _noise(n, scale=1e-300)
    elif kind == "dc":
        x[:] = 1.0
    Y, P = binaural_features(x, CFG)
    assert np.isfinite(Y).all() and np.isfinite(P).all()
    F = CFG.n_freq
    assert np.abs(Y[:, :F]).max() <= ILD_CLIP_DB
    if kind == "zeros":
        assert (Y[:, :F] == 0).all() and (Y[:, F:2 * F] == 1).all() and (Y[:, 2 * F:] == 0).all()
    if kind == "left_silent":
        assert np.allclose(Y[:, :F], ILD_CLIP_DB)


def test_nan_and_shape_raise():
    x = _noise(3000)
    x[100, 0] = np.nan
    with pytest.raises(ValueError):
        binaural_features(x, CFG)
    x[100, 0] = np.inf
    with pytest.raises(ValueError):
        StreamingFeatureExtractor(CFG).push(x)
    with pytest.raises(ValueError):
        binaural_features(np.zeros((3000, 3)), CFG)
    with pytest.raises(ValueError):
        features_from_spectra(np.full((2, 512, 2), np.nan + 0j), CFG)


def test_streaming_equals_batch_random_chunks():
    rng = np.random.default_rng(7)
    cfg = FeatureConfig(feature_type="ilpd")
    x = _noise(16000 * 2 + 333, seed=11)
    Yb, Pb = binaural_features(x, cfg)
    for trial in range(3):
        ex = StreamingFeatureExtractor(cfg)
        Ys, Ps = [], []
        i = 0
        while i < len(x):
            r = rng.random()
            if trial == 0:
                n = 1 if r < 0.3 else int(rng.integers(0, 300))
            elif trial == 1:
                n = int(rng.integers(1, 3000))
            else:
                n = len(x)  # one huge chunk
            Y, P = ex.push(x[i: i + n])
            Ys.append(Y)
            Ps.append(P)
            i += n
        Ys, Ps = np.concatenate(Ys), np.concatenate(Ps)
        assert Ys.shape == Yb.shape and Ps.shape == Pb.shape
        np.testing.assert_allclose(Ys, Yb, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(Ps, Pb, rtol=1e-9, atol=1e-12)
        assert ex.samples_consumed == len(x)
        assert ex.frames_emitted == len(Yb)
        assert ex.pending_samples == len(x) - len(Yb) * cfg.hop
    ex.reset()
    assert ex.samples_consumed == 0 and ex.pending_samples == 0


def test_streaming_one_sample_pushes_exact_frames():
    cfg = FeatureConfig(n_fft=64, hop=16, feature_type="ipd")
    x = _noise(600, seed=2)
    Yb, _ = binaural_features(x, cfg)
    ex = StreamingFeatureExtractor(cfg)
    out = [ex.push(x[i: i + 1])[0] for i in range(len(x))]
    counts = [len(o) for o in out]
    # a frame completes exactly at samples n_fft-1, n_fft-1+hop, ...
    expected = [1 if (i >= 63 and (i - 63) % 16 == 0) else 0 for i in range(len(x))]
    assert counts == expected
    np.testing.assert_allclose(np.concatenate(out), Yb, atol=1e-10)


def test_expand_and_activity_mask():
    chi = np.random.default_rng(0).random((5, 512)) > 0.5
    for ft, k in [("ild", 1), ("ipd", 2), ("ilpd", 3)]:
        m = expand_mask(chi, FeatureConfig(feature_type=ft))
        assert m.shape == (5, 512 * k) and m.dtype == bool
        for b in range(k):
            np.testing.assert_array_equal(m[:, b * 512: (b + 1) * 512], chi)
    with pytest.raises(ValueError):
        expand_mask(np.zeros((5, 10), bool), CFG)
    P = np.array([[1.0, 2.0], [3.0, 0.5]])
    np.testing.assert_array_equal(activity_mask(P, np.array([2.0, 1.0])), [
                                  [False, True], [True, False]])


def test_noise_tracker_adapts_to_level_change():
    F, fr = 16, 125.0
    tr = NoiseFloorTracker(F, fr, window_s=1.0, percentile=10, margin_db=6.0)
    rng = np.random.default_rng(0)
    assert tr.threshold() is None
    # two-ear Gaussian noise power per bin ~ Gamma(2); mean 1
    tr.update(rng.gamma(2.0, 0.5, (20, F)))
    assert tr.threshold() is None  # < 0.25 s
    tr.update(rng.gamma(2.0, 0.5, (200, F)))
    th1 = tr.threshold()
    assert th1.shape == (F,)
    # bias-corrected percentile estimates the mean noise power (1.0)
    np.testing.assert_allclose(np.median(th1) / 10 ** 0.6, 1.0, rtol=0.25)
    raw = NoiseFloorTracker(F, fr, window_s=1.0, margin_db=0.0, bias_correction=False)
    raw.update(rng.gamma(2.0, 0.5, (125, F)))
    np.testing.assert_allclose(np.median(raw.threshold()), 0.266, rtol=0.25)  # Gamma(2) 10th pct
    for _ in range(30):  # 1.2 s at 100x power, pushed in small chunks
        tr.update(rng.gamma(2.0, 50.0, (5, F)))
    th2 = tr.threshold()
    np.testing.assert_allclose(np.median(th2 / th1), 100.0, rtol=0.5)
    # digital silence: threshold stays positive, zeros are inactive
    tr2 = NoiseFloorTracker(F, fr)
    tr2.update(np.zeros((100, F)))
    assert (tr2.threshold() > 0).all()
    assert not activity_mask(np.zeros((1, F)), tr2.threshold()).any()


def test_noise_tracker_refresh_slow_once_full_fast_while_filling():
    """refresh_s holds the percentile once the history is full; while it fills (and after a
    reset) it is recomputed every fill_refresh_s, so a slow refresh never holds a floor
    taken from the first quarter second."""
    F, fr = 8, 100.0
    tr = NoiseFloorTracker(F, fr, window_s=1.0, refresh_s=0.5, fill_refresh_s=0.1)
    tr.update(10.0 * np.ones((30, F)))
    assert tr.noise_floor()[0] == pytest.approx(10.0 * tr.bias)
    tr.update(np.ones((10, F)))                  # filling: 0.1 s later it is recomputed
    assert tr.noise_floor()[0] == pytest.approx(tr.bias)
    tr.update(np.ones((60, F)))                  # the history (100 frames) is now full
    full = tr.noise_floor()
    tr.update(0.01 * np.ones((40, F)))           # 0.4 s: held
    np.testing.assert_array_equal(tr.noise_floor(), full)
    tr.update(0.01 * np.ones((10, F)))           # 0.5 s: recomputed
    assert tr.noise_floor()[0] == pytest.approx(0.01 * tr.bias)
    tr.reset()
    tr.update(10.0 * np.ones((30, F)))
    assert tr.noise_floor()[0] == pytest.approx(10.0 * tr.bias)
    tr.update(np.ones((10, F)))                  # filling again: fast refresh
    assert tr.noise_floor()[0] == pytest.approx(tr.bias)
    with pytest.raises(ValueError):
        NoiseFloorTracker(F, fr, fill_refresh_s=-1.0)


def test_noise_tracker_on_real_features_marks_speechlike_bursts():
    cfg = FeatureConfig(feature_type="ild")
    x = _noise(16000 * 2, scale=1e-3)
    x[8000:12000] += _noise(4000, seed=5, scale=0.3)
    _, P = binaural_features(x, cfg)
    tr = NoiseFloorTracker(cfg.n_freq, cfg.frame_rate, decimate=2)
    tr.update(P)
    chi = activity_mask(P, tr.threshold())
    frac = chi.mean(axis=1)
    t_burst = (8000 + 2000 - 512) // 128
    assert frac[t_burst] > 0.95 and frac[-1] < 0.03


def test_mean_feature_vector_masked_and_fallback():
    cfg = FeatureConfig(feature_type="ilpd")
    x = _noise(4000)
    Y, P = binaural_features(x, cfg)
    np.testing.assert_allclose(mean_feature_vector(x, cfg), Y.mean(0))
    # eps = inf -> nothing active -> falls back to plain mean
    np.testing.assert_allclose(mean_feature_vector(x, cfg, mask_eps=np.inf), Y.mean(0))
    eps = np.median(P, axis=0)
    chi = expand_mask(activity_mask(P, eps), cfg)
    m = mean_feature_vector(x, cfg, mask_eps=eps)
    j = 5
    np.testing.assert_allclose(m[j], Y[chi[:, j], j].mean())
    with pytest.raises(ValueError):
        mean_feature_vector(x[:100], cfg)

import numpy as np
import pytest

from sbm_ros.core.phat import PhatHistogram, gcc_phat_delay

FS = 16000


def delayed_noise(n, d_samples, seed, gain=1.0):
    """White noise pair with right(t) = gain * left(t - d) (exact fractional delay, circular)."""
    rng = np.random.default_rng(seed)
    N = n + 4096
    s = rng.standard_normal(N)
    w = 2 * np.pi * np.fft.rfftfreq(N)
    r = np.fft.irfft(np.fft.rfft(s) * np.exp(-1j * w * d_samples), N)
    return 0.1 * np.stack([s, gain * r], axis=1)[2048: 2048 + n]


@pytest.fixture(scope="module")
def phat():
    return PhatHistogram(sample_rate=FS)


@pytest.mark.parametrize("d", [0, 4, -9, 2.3, -7.6, 11.5])
def test_single_delay_recovered(phat, d):
    x = delayed_noise(8000, d, seed=int(abs(d) * 10))
    est = phat.estimate_delays(x, 1)
    assert est.shape == (1,)
    assert abs(est[0] * FS - d) < 0.1


def test_integer_delay_by_shift(phat):
    rng = np.random.default_rng(1)
    s = rng.standard_normal(9000)
    x = np.stack([s[5:], 0.7 * s[:-5]], axis=1)  # right lags left by 5 samples
    assert abs(gcc_phat_delay(x) * FS - 5) < 0.05


def test_two_sources_distinct_delays(phat):
    x = delayed_noise(16000, 6, seed=1) + delayed_noise(16000, -5, seed=2, gain=0.9)
    est = np.sort(phat.estimate_delays(x, 2) * FS)
    np.testing.assert_allclose(est, [-5, 6], atol=0.3)


def test_delays_beyond_max_are_clipped_and_silence_is_empty(phat):
    assert phat.estimate_delays(np.zeros((8000, 2)), 1).size == 0
    x = delayed_noise(8000, 25, seed=3)  # 1.56 ms > 0.9 ms
    assert abs(phat.estimate_delays(x, 1)[0]) <= phat.max_delay + 1e-12


def test_fit_maps_delay_to_azimuth():
    ph = PhatHistogram(sample_rate=FS)
    az = np.array([-40.0, -20.0, 0.0, 20.0, 40.0])
    d = az / 4.0  # synthetic linear law: 1 sample per 4 degrees, left source -> positive delay
    signals = [delayed_noise(6000, di, seed=i) for i, di in enumerate(d)]
    ph.fit(signals, az)
    assert abs(ph.slope_ - 4.0 * FS) / (4.0 * FS) < 0.02
    assert abs(ph.intercept_) < 0.5
    pred = ph.predict(delayed_noise(6000, 3.0, seed=99), n_sources=1)
    assert abs(pred[0] - 12.0) < 1.0
    mix = delayed_noise(16000, 6.0, seed=5) + delayed_noise(16000, -5.0, seed=6)
    p2 = ph.predict(mix, n_sources=2)
    assert np.all(np.diff(p2) >= 0)
    np.testing.assert_allclose(p2, [-20.0, 24.0], atol=2.0)
    # fit from precomputed delays
    ph2 = PhatHistogram().fit(np.array([0.0, 1e-4, 2e-4]), [0.0, 10.0, 20.0])
    np.testing.assert_allclose(ph2.delay_to_target(5e-5), 5.0)
    with pytest.raises(ValueError):
        PhatHistogram().fit(np.array([1e-4, 1e-4]), [0.0, 1.0])
    with pytest.raises(RuntimeError):
        PhatHistogram().predict(mix)

"""Small-set calibration: densification, K by cross-validation, hierarchical posterior."""

import numpy as np
import pytest

from sbm_ros.core.calibration import CalibrationError, check_positions, fit_one_source, interior
from sbm_ros.core.densify import densify, interpolate_features
from sbm_ros.core.features import FeatureConfig
from sbm_ros.core.model import SBMModel
from sbm_ros.core.posterior import PosteriorEngine, SufficientStats

CFG = FeatureConfig()
F = CFG.n_freq
FREQ = np.arange(1, F + 1) * CFG.sample_rate / CFG.n_fft


def _features(az_deg):
    """Noise-free mean ILPD vectors of a toy head: ILD and a pure interaural delay."""
    az = np.atleast_1d(np.asarray(az_deg, float))
    tau = 0.65e-3 * np.sin(np.radians(az))                               # s
    ild = 10.0 * np.sin(np.radians(az))[:, None] * (FREQ / FREQ[-1])[None]
    ph = -2 * np.pi * FREQ[None] * tau[:, None]
    return np.concatenate([ild, np.cos(ph), np.sin(ph)], axis=1)


def test_interpolation_follows_the_delay_across_wrapped_phase():
    # 0 and 10 degrees: the phase differs by more than pi above ~4.4 kHz
    Y = _features([0.0, 10.0])
    mid = interpolate_features(Y, np.array([[0.5, 0.5]]), "ilpd", F)[0]
    # truth: the delay halfway (sin is nearly linear at 5 degrees)
    tau_mid = 0.5 * 0.65e-3 * np.sin(np.radians(10.0))
    ph = -2 * np.pi * FREQ * tau_mid
    err = np.abs(np.angle((mid[F:2 * F] + 1j * mid[2 * F:]) * np.exp(-1j * ph)))
    assert np.max(err) < 0.05
    # a chord blend of the phasors would be far off (and not unit length) at high frequency
    chord = 0.5 * (Y[0] + Y[1])
    assert np.min(np.abs(chord[F:2 * F] + 1j * chord[2 * F:])[FREQ > 5000]) < 0.5


def test_densify_keeps_recorded_vectors_and_adds_between():
    X = np.array([[-10.0], [0.0], [10.0]])
    Xd, Yd = densify(X, _features(X[:, 0]), "ilpd", F, subdiv=4)
    assert len(Xd) == 9
    for x in X:
        i = np.nonzero(np.isclose(Xd[:, 0], x[0]))[0]
        assert len(i) == 1 and np.allclose(Yd[i[0]], _features(x)[0])
    # two dimensions: a 3 x 3 grid triangulated, interior points are added, none duplicated
    g = np.array([[a, e] for a in (-10.0, 0.0, 10.0) for e in (-10.0, 0.0, 10.0)])
    Xd2, _ = densify(g, _features(g[:, 0]), "ilpd", F, subdiv=2, scale=[10.0, 10.0])
    assert len(np.unique(np.round(Xd2, 6), axis=0)) == len(Xd2) == 25


def test_check_positions_refuses_too_few_and_degenerate_sets():
    with pytest.raises(CalibrationError, match="at least 5 distinct positions"):
        check_positions(np.array([[0.0, 0.0]] * 3 + [[5.0, 0.0]]),
                        ["azimuth_deg", "elevation_deg"])
    flat = np.array([[a, 0.0] for a in range(0, 50, 5)])
    with pytest.raises(CalibrationError, match="azimuth-only"):
        check_positions(flat, ["azimuth_deg", "elevation_deg"])
    warn = check_positions(np.array([[0.0], [0.0], [5.0], [10.0], [15.0], [20.0]]),
                           ["azimuth_deg"])
    assert warn and "share" in warn[0]
    assert list(interior(np.arange(5.0)[:, None])) == [1, 2, 3]


@pytest.mark.parametrize("n_pos", [5, 7, 13])
def test_small_sets_give_bounded_estimates_and_honest_error(n_pos):
    rng = np.random.default_rng(n_pos)
    X = np.linspace(-30.0, 30.0, n_pos)[:, None]
    Y = _features(X[:, 0]) + 0.02 * rng.standard_normal((n_pos, 3 * F))
    fv = np.full(3 * F, 0.05)
    res = fit_one_source(X, Y, CFG, ["azimuth_deg"], fv, frame_corr=2.0)
    assert 1 <= res.n_components <= len(res.X)
    assert res.cv_error is not None and np.isfinite(res.cv_error[0])
    assert res.cov_scale >= 1.0
    model = SBMModel.from_gllim(res.gllim, CFG, n_sources=1, dims_per_source=1,
                                target_space="degrees", n_train=len(res.X), frame_var=fv,
                                info={"frame_corr": res.frame_corr,
                                      "cov_scale": res.cov_scale})
    assert model.hierarchical
    eng = PosteriorEngine(model.params, noise=(model.params.sigma2, 2.0 * fv))
    # positions between the recorded ones: estimates stay in the field, near the truth
    test = np.array([-22.5, -7.5, 3.0, 17.0])
    Yt = _features(test) + 0.02 * rng.standard_normal((len(test), 3 * F))
    n = np.full(3 * F, 45.0)
    for x, y in zip(test, Yt):
        post = eng.posterior(SufficientStats(n=n, s=45 * y, q=45 * y * y))
        assert abs(post.mean()[0] - x) < 3.0
        assert np.isfinite(post.fit_ratio) and post.fit_ratio > 0


def test_hierarchical_posterior_matches_direct_weighted_formula():
    X = np.linspace(-30.0, 30.0, 9)[:, None]
    Y = _features(X[:, 0])
    fv = np.full(3 * F, 0.05)
    res = fit_one_source(X, Y, CFG, ["azimuth_deg"], fv, n_components=2)
    p = res.gllim.params_
    eng = PosteriorEngine(p, noise=(p.sigma2, fv))
    rng = np.random.default_rng(1)
    n = rng.integers(0, 30, F).astype(float)
    nd = np.tile(n, 3)
    y = _features([4.0])[0]
    post = eng.posterior(SufficientStats(n=n, s=nd * y, q=nd * y * y))
    w = np.where(nd > 0, 1.0 / (p.sigma2 + fv / np.maximum(nd, 1)), 0.0)
    mus = []
    for k in range(p.pi.shape[0]):
        Gi = np.linalg.inv(p.Gamma[k])
        Vinv = Gi + (p.A[k] * w[:, None]).T @ p.A[k]
        mus.append(np.linalg.solve(Vinv, Gi @ p.c[k] + p.A[k].T @ (w * (y - p.b[k]))))
    assert np.allclose(post.means, np.array(mus), atol=1e-8)

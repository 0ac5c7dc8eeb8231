"""GLLiM training: monotone EM, recovery of a known piecewise-affine map, validation."""

import numpy as np
import pytest

from sbm_ros.core.gllim import GLLiM, GLLiMParams


def piecewise_affine(n, L=2, D=40, noise=0.02, seed=0):
    """Data from a known 4-piece affine map over [-10, 10]^L (pieces split at 0 on x0, x1)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-10, 10, (n, L))
    prng = np.random.default_rng(1234)
    A = prng.normal(size=(4, D, L))
    b = prng.normal(size=(4, D)) * 3
    piece = (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0 if L > 1 else 0)
    Y = np.einsum('ndl,nl->nd', A[piece], X) + b[piece] + noise * rng.normal(size=(n, D))
    return X, Y


def test_em_log_likelihood_never_decreases():
    X, Y = piecewise_affine(500, noise=0.3)
    g = GLLiM(n_components=6, max_iter=60, tol=0, min_component_mass=0.0).fit(X, Y)
    ll = np.array(g.log_likelihoods_)
    assert len(ll) > 3          # tol=0: runs until the likelihood stops changing at all
    assert g.n_removed_ == 0
    # Monotone up to round-off of the likelihood value itself.
    assert np.all(np.diff(ll) >= -1e-9 * np.abs(ll[1:])), np.diff(ll).min()
    assert ll[-1] > ll[0]


def test_recovers_known_piecewise_affine_map():
    X, Y = piecewise_affine(800, noise=0.02)
    g = GLLiM(n_components=8, max_iter=200).fit(X, Y)
    Xt, Yt = piecewise_affine(300, noise=0.02, seed=7)
    inside = np.all(np.abs(Xt) > 0.5, axis=1)     # away from the piece boundaries
    err = np.abs(g.predict(Yt[inside]) - Xt[inside])
    # Components are ~10 units apart; the map must be recovered to a tiny fraction of that.
    assert np.median(err) < 0.02
    assert np.max(err) < 0.5
    assert g.converged_


def test_one_dimensional_targets_work():
    X, Y = piecewise_affine(300, L=1, noise=0.02)
    g = GLLiM(n_components=4).fit(X[:, 0], Y)
    assert g.params_.c.shape[1] == 1
    pred = g.predict(Y[:50])
    assert pred.shape == (50, 1)
    assert np.median(np.abs(pred[:, 0] - X[:50, 0])) < 0.05


def test_deterministic_given_seed():
    X, Y = piecewise_affine(300)
    a = GLLiM(n_components=5, random_state=3).fit(X, Y)
    b = GLLiM(n_components=5, random_state=3).fit(X, Y)
    np.testing.assert_array_equal(a.params_.A, b.params_.A)
    assert a.log_likelihoods_ == b.log_likelihoods_


def test_collapsed_components_are_removed():
    # 12 points in 2 tight clusters; asking for 10 components must drop the empty ones.
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 0.01, (6, 2)), rng.normal(5, 0.01, (6, 2))])
    Y = np.concatenate([X, X ** 2], axis=1) + 0.01 * rng.normal(size=(12, 4))
    g = GLLiM(n_components=10, min_component_mass=2.0).fit(X, Y)
    assert g.n_components_ < 10
    assert np.all(np.isfinite(g.params_.A))
    assert abs(g.params_.pi.sum() - 1) < 1e-12


def test_sigma_floor_applies_to_noise_free_dimensions():
    X, Y = piecewise_affine(200, D=10, noise=0.1)
    Y[:, 0] = 1.0                                  # constant: zero residual
    g = GLLiM(n_components=4, sigma_floor=1e-2).fit(X, Y)
    s2 = g.params_.sigma2
    assert s2[0] >= 1e-2 * np.median(s2) * 0.5
    assert np.all(np.isfinite(g.predict(Y[:5])))


def test_tol_gain_stops_when_an_iteration_gains_little_of_the_progress():
    """tol_gain stops at the first iteration (from the third) whose gain is at most tol_gain
    times the gain since the first E-step, with the parameters EM had reached there: those
    of the same fit run to one iteration fewer."""
    # a smooth non-linear map: EM keeps creeping (80 iterations at tol=0)
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (1500, 2))
    F = np.random.default_rng(5).normal(size=(2, 40)) * 2
    Y = np.concatenate([np.sin(X @ F), np.cos(X @ F)], 1) + 0.1 * rng.normal(size=(1500, 80))
    kw = dict(n_components=12, tol=0, min_component_mass=0.0)
    full = GLLiM(max_iter=80, **kw).fit(X, Y)
    ll = np.array(full.log_likelihoods_)
    gain, progress = np.diff(ll), ll[1:] - ll[0]
    stop = next(t for t in range(3, len(ll) + 1)
                if progress[t - 2] > 0 and gain[t - 2] <= 0.05 * progress[t - 2])
    assert 3 < stop < full.n_iter_            # the rule fires, and not at once
    g = GLLiM(max_iter=80, tol_gain=0.05, **kw).fit(X, Y)
    assert g.converged_ and g.n_iter_ == stop
    np.testing.assert_array_equal(g.log_likelihoods_, ll[:stop])
    ref = GLLiM(max_iter=stop - 1, **kw).fit(X, Y)
    for name in ('pi', 'c', 'Gamma', 'A', 'b', 'sigma2'):
        np.testing.assert_array_equal(getattr(g.params_, name), getattr(ref.params_, name))
    # off by default: the same fit runs on
    assert GLLiM(max_iter=80, **kw).fit(X, Y).n_iter_ == full.n_iter_ > stop


@pytest.mark.parametrize('kwargs, msg', [
    ({'n_components': 0}, 'n_components'),
    ({'max_iter': 0}, 'max_iter'),
    ({'tol': -1}, 'tol'),
    ({'tol_gain': -0.1}, 'tol_gain'),
])
def test_parameter_validation(kwargs, msg):
    X, Y = piecewise_affine(50)
    with pytest.raises(ValueError, match=msg):
        GLLiM(**kwargs).fit(X, Y)


def test_input_validation():
    X, Y = piecewise_affine(50)
    with pytest.raises(ValueError, match='different numbers of samples'):
        GLLiM(n_components=2).fit(X[:10], Y)
    Y2 = Y.copy()
    Y2[3, 3] = np.nan
    with pytest.raises(ValueError, match='finite'):
        GLLiM(n_components=2).fit(X, Y2)
    with pytest.raises(ValueError, match='exceeds the number of samples'):
        GLLiM(n_components=60).fit(X, Y)
    with pytest.raises(RuntimeError, match='not fitted'):
        GLLiM().predict(Y)


def test_params_validate_names_the_problem():
    X, Y = piecewise_affine(100)
    p = GLLiM(n_components=3).fit(X, Y).params_
    bad = GLLiMParams(pi=p.pi, c=p.c, Gamma=p.Gamma, A=p.A[:, :-1], b=p.b, sigma2=p.sigma2)
    with pytest.raises(ValueError, match='parameter A has shape'):
        bad.validate()


def test_screened_e_step_matches_dense():
    """The screened E-step (float32 screening, exact float64 on the kept pairs) gives the dense
    float64 EM's parameters up to round-off."""
    X, Y = piecewise_affine(2000, D=200, noise=0.05)
    a = GLLiM(n_components=12, e_step='dense', max_iter=30).fit(X, Y)
    b = GLLiM(n_components=12, e_step='screened', max_iter=30).fit(X, Y)
    assert b.n_screened_ == b.n_iter_ and a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(b.log_likelihoods_, a.log_likelihoods_, rtol=1e-12)
    for name in ('pi', 'c', 'Gamma', 'A', 'b', 'sigma2'):
        np.testing.assert_allclose(getattr(b.params_, name), getattr(a.params_, name),
                                   rtol=1e-8, atol=1e-9, err_msg=name)
    with pytest.raises(ValueError, match='e_step'):
        GLLiM(e_step='fast').fit(X, Y)

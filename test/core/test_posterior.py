"""Theorem 1 from sufficient statistics vs the direct per-entry formula; sliding window."""

import numpy as np
import pytest

from sbm_ros.core.gllim import GLLiMParams
from sbm_ros.core.posterior import (PosteriorEngine, SlidingWindow, SufficientStats,
                                    posterior_direct)


def random_params(K, L, D, seed=0):
    rng = np.random.default_rng(seed)
    pi = rng.uniform(0.5, 1.5, K)
    pi /= pi.sum()
    c = rng.uniform(-10, 10, (K, L))
    M = rng.normal(size=(K, L, L))
    Gamma = np.einsum('kij,klj->kil', M, M) + 2.0 * np.eye(L)
    A = rng.normal(size=(K, D, L)) * 0.3
    b = rng.normal(size=(K, D))
    sigma2 = rng.uniform(20.0, 60.0, D)
    return GLLiMParams(pi=pi, c=c, Gamma=Gamma, A=A, b=b, sigma2=sigma2)


def rel(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.parametrize('L', [2, 4])
def test_sufficient_statistics_equal_direct_formula(L):
    F, blocks, K, T = 24, 3, 7, 3
    D = F * blocks
    p = random_params(K, L, D, seed=L)
    rng = np.random.default_rng(10 + L)
    x_true = rng.uniform(-5, 5, L)
    Y = (p.A[2] @ x_true + p.b[2])[None] + rng.normal(size=(T, D)) * 3.0
    chi_bins = rng.random((T, F)) > 0.5
    chi = np.tile(chi_bins, (1, blocks))
    direct = posterior_direct(p, Y, chi)
    # The weights must not be degenerate, or the comparison would be trivial.
    assert np.sort(direct.weights)[-2] > 1e-6
    eng = PosteriorEngine(p, n_bins=F)
    for stats in (SufficientStats.from_frames(Y, chi), SufficientStats.from_frames(Y, chi_bins)):
        post = eng.posterior(stats)
        assert rel(post.weights, direct.weights) < 1e-9
        assert rel(post.means, direct.means) < 1e-9
        assert rel(post.covs, direct.covs) < 1e-9
        assert rel(post.mean(), direct.mean()) < 1e-9
        assert abs(post.log_evidence - direct.log_evidence) < 1e-9 * abs(direct.log_evidence)
    assert eng.posterior(SufficientStats.from_frames(Y, chi_bins)).n_active == chi_bins.sum()


def test_general_per_dimension_mask():
    F, K, L, T = 10, 4, 2, 15
    D = 3 * F
    p = random_params(K, L, D, seed=5)
    rng = np.random.default_rng(1)
    Y = rng.normal(size=(T, D)) * 2
    chi = rng.random((T, D)) > 0.3            # not shared across blocks
    direct = posterior_direct(p, Y, chi)
    post = PosteriorEngine(p).posterior(SufficientStats.from_frames(Y, chi))
    assert rel(post.means, direct.means) < 1e-9
    assert rel(post.weights, direct.weights) < 1e-9


def test_mixture_covariance_is_psd_and_includes_spread():
    p = random_params(5, 2, 30, seed=2)
    rng = np.random.default_rng(2)
    post = PosteriorEngine(p).posterior(
        SufficientStats.from_frames(rng.normal(size=(3, 30)), np.ones((3, 30), bool)))
    cov = post.covariance()
    assert np.all(np.linalg.eigvalsh(cov) >= -1e-12)
    within = np.einsum('k,klm->lm', post.weights, post.covs)
    assert np.trace(cov) >= np.trace(within) - 1e-12


def test_predict_full_matches_posterior_of_single_frame():
    p = random_params(6, 2, 30, seed=4)
    rng = np.random.default_rng(3)
    Y = rng.normal(size=(5, 30))
    eng = PosteriorEngine(p)
    means, w, _ = eng.predict_full(Y)
    for i in range(5):
        post = posterior_direct(p, Y[i:i + 1], np.ones((1, 30), bool))
        assert rel(means[i], post.mean()) < 1e-9
        assert rel(w[i], post.weights) < 1e-9


def test_sliding_window_equals_batch_after_many_pushes():
    F, blocks, T = 16, 3, 25
    D = F * blocks
    rng = np.random.default_rng(0)
    n_push = 5000
    Y = rng.normal(size=(n_push, D)) * 1e3 + 1e4     # large offsets provoke drift
    chi = rng.random((n_push, F)) > 0.4
    w = SlidingWindow(D, T, n_bins=F, recompute_every=10 ** 9)   # never recompute
    w2 = SlidingWindow(D, T, n_bins=F)                           # periodic recompute
    for t in range(n_push):
        w.push(Y[t], chi[t])
        w2.push(Y[t], chi[t])
    ref = SufficientStats.from_frames(Y[-T:], chi[-T:])
    for win in (w, w2):
        st = win.stats
        np.testing.assert_array_equal(st.n, ref.n)
        assert rel(st.s, ref.s) < 1e-9
        assert rel(st.q, ref.q) < 1e-9
    # The periodically recomputed window is exact to round-off of one batch sum.
    assert rel(w2.stats.s, ref.s) < 1e-12
    assert w.full and w.n_frames == T
    assert abs(w.active_fraction - chi[-T:].mean()) < 1e-12


def test_sliding_window_clear_and_partial():
    w = SlidingWindow(6, 4, n_bins=2)
    assert w.active_fraction == 0.0
    w.push(np.ones(6), np.array([True, False]))
    assert w.n_frames == 1 and not w.full
    np.testing.assert_array_equal(w.stats.s, [1, 0, 1, 0, 1, 0])
    w.clear()
    assert w.n_frames == 0 and w.stats.s.sum() == 0
    with pytest.raises(ValueError):
        SlidingWindow(6, 0)


def test_sliding_window_drop_oldest_keeps_the_newest_frames():
    """After dropping the k oldest frames the window holds exactly the newer ones, and pushes
    (single or many) fill it back to its length with the statistics of the last frames."""
    F, blocks, T = 8, 2, 10
    D = F * blocks
    rng = np.random.default_rng(3)
    Y = rng.normal(size=(60, D))
    chi = rng.random((60, F)) > 0.3
    for n_before, k in ((T, 4), (T, T + 5), (6, 2), (T, 0)):
        w = SlidingWindow(D, T, n_bins=F)
        w.push_many(Y[:23], chi[:23])                 # the ring has wrapped around
        if n_before < T:
            w.clear()
            w.push_many(Y[:n_before], chi[:n_before])
            frames, masks = Y[:n_before], chi[:n_before]
        else:
            frames, masks = Y[23 - T:23], chi[23 - T:23]
        assert w.active_in_oldest(k) == int(masks[:k].sum())
        w.drop_oldest(k)
        kept_Y, kept_c = frames[k:], masks[k:]
        assert w.n_frames == len(kept_Y)
        if len(kept_Y):
            ref = SufficientStats.from_frames(kept_Y, kept_c)
            np.testing.assert_array_equal(w.stats.n, ref.n)
            assert rel(w.stats.s, ref.s) < 1e-12
        else:
            assert w.stats.s.sum() == 0 and w.active_fraction == 0.0
        w.push(Y[40], chi[40])
        w.push_many(Y[41:41 + T], chi[41:41 + T])        # overfills: the window is full again
        allY = np.concatenate([kept_Y, Y[40:41 + T]])
        allc = np.concatenate([kept_c, chi[40:41 + T]])
        ref = SufficientStats.from_frames(allY[-T:], allc[-T:])
        assert w.full
        np.testing.assert_array_equal(w.stats.n, ref.n)
        assert rel(w.stats.s, ref.s) < 1e-9 and rel(w.stats.q, ref.q) < 1e-9


def test_log_evidence_is_the_marginal_likelihood():
    """log p(S) equals log sum_k pi_k p(S | k) by numerical integration over x (L = 1)."""
    from scipy.stats import norm
    rng = np.random.default_rng(0)
    K, D, T = 3, 4, 2
    p = random_params(K, 1, D, seed=9)
    Y = rng.normal(size=(T, D)) * 3
    chi = rng.random((T, D)) > 0.3
    xs = np.linspace(-80, 80, 160001)
    dens = np.zeros_like(xs)
    for k in range(K):
        term = p.pi[k] * norm.pdf(xs, p.c[k, 0], np.sqrt(p.Gamma[k, 0, 0]))
        for t, d in zip(*np.nonzero(chi)):
            term = term * norm.pdf(Y[t, d], p.A[k, d, 0] * xs + p.b[k, d], np.sqrt(p.sigma2[d]))
        dens += term
    from scipy.integrate import trapezoid
    ref = np.log(trapezoid(dens, xs))
    post = PosteriorEngine(p).posterior(SufficientStats.from_frames(Y, chi))
    assert abs(post.log_evidence - ref) < 1e-6


@pytest.mark.parametrize('hierarchical', [False, True])
def test_log_evidence_alone_equals_the_posteriors(hierarchical):
    """PosteriorEngine.log_evidence (the automatic source count's path, without means and
    covariances) returns exactly posterior().log_evidence."""
    F, blocks, K, L, T = 16, 3, 9, 4, 20
    D = F * blocks
    p = random_params(K, L, D, seed=3)
    rng = np.random.default_rng(4)
    Y = (p.A[1] @ rng.uniform(-5, 5, L) + p.b[1])[None] + rng.normal(size=(T, D)) * 3.0
    chi_bins = rng.random((T, F)) > 0.4         # per bin (the folded path) and per dimension
    chi = np.tile(chi_bins, (1, blocks))
    noise = (p.sigma2, 0.5 * p.sigma2) if hierarchical else None
    eng = PosteriorEngine(p, n_bins=F, noise=noise)
    for stats in (SufficientStats.from_frames(Y, chi_bins), SufficientStats.from_frames(Y, chi),
                  SufficientStats.from_frames(Y[:3], chi[:3])):
        assert eng.log_evidence(stats) == eng.posterior(stats).log_evidence


def test_newest_stats_equal_the_stats_of_the_newest_frames():
    """SlidingWindow.newest_stats (the ring's contiguous runs, no copy) against
    SufficientStats.from_frames of newest(k), before and after the ring wraps."""
    F, blocks, L = 8, 3, 10
    rng = np.random.default_rng(5)
    w = SlidingWindow(F * blocks, L, n_bins=F)
    for t in range(27):
        w.push(rng.normal(size=F * blocks), rng.random(F) > 0.3)
        for k in (1, 4, L, L + 5):
            a = w.newest_stats(k)
            b = SufficientStats.from_frames(*w.newest(k))
            for x, y in ((a.n, b.n), (a.s, b.s), (a.q, b.q)):
                np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)
            assert a.n_active == b.n_active
            assert w.newest_active_fraction(k) == w.newest(k)[1].mean()
    assert SlidingWindow(F * blocks, L, n_bins=F).newest_active_fraction(4) == 0.0


def _finish_generic_solves(eng, un, us):
    """The previous final step (generic batched solves, solve-based inverse, scipy's
    logsumexp): the reference of the Cholesky/triangular-inverse one."""
    from scipy.special import logsumexp
    K, L, P = eng.K, eng.L, eng.P
    un = un.reshape(K, P + L + 1)
    us = us.reshape(K, L + 1)
    AtWA = np.zeros((K, L, L))
    AtWA[:, eng._iu[0], eng._iu[1]] = un[:, :P]
    AtWA[:, eng._iu[1], eng._iu[0]] = un[:, :P]
    Vinv = eng.Gi + AtWA
    h = eng.Gic + us[:, :L] - un[:, P:P + L]
    chol = np.linalg.cholesky(Vinv)
    z = np.linalg.solve(chol, h[:, :, None])
    mu = np.linalg.solve(chol.transpose(0, 2, 1), z)[:, :, 0]
    logdet = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
    log_nu = (eng.logpi - 0.5 * logdet - 0.5 * eng.logdetG
              - 0.5 * (-2.0 * us[:, L] + un[:, P + L] + eng.cGc - np.sum(z[:, :, 0] ** 2, 1)))
    lse = logsumexp(log_nu)
    Linv = np.linalg.solve(chol, np.broadcast_to(np.eye(L), (K, L, L)))
    return np.exp(log_nu - lse), mu, np.einsum('kji,kjl->kil', Linv, Linv), lse


@pytest.mark.parametrize('K,L', [(32, 2), (100, 4)])
def test_finish_equals_generic_solves(K, L):
    F, blocks = 16, 3
    D = F * blocks
    p = random_params(K, L, D, seed=K)
    eng = PosteriorEngine(p, n_bins=F)
    rng = np.random.default_rng(K)
    for T in (1, 5, 40):
        Y = (p.A[3] @ rng.uniform(-5, 5, L) + p.b[3])[None] + rng.normal(size=(T, D)) * 3.0
        stats = SufficientStats.from_frames(Y, rng.random((T, F)) > 0.4)
        post = eng.posterior(stats)
        un, us = eng.Mn_bins @ stats.n, eng.Ms @ stats.s
        w, mu, V, lse = _finish_generic_solves(eng, un, us)
        assert rel(post.weights, w) < 1e-9
        assert rel(post.means, mu) < 1e-9
        assert rel(post.covs, V) < 1e-9
        const = -0.5 * (float(eng.isig @ stats.q) + float(stats.n @ eng.log2pis_bins))
        assert abs(post.log_evidence - (lse + const)) <= 1e-9 * abs(lse + const)

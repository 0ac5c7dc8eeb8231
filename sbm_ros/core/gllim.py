"""Gaussian Locally-Linear Mapping (GLLiM) with a shared diagonal noise covariance.

Inverse regression from a low-dimensional target ``x`` (dimension ``L``: source directions) to a
high-dimensional observation ``y`` (dimension ``D``: binaural features), paper eqs. 9-15::

    p(Z = k)              = pi_k
    p(x | Z = k)          = N(x; c_k, Gamma_k)
    p(y | x, Z = k)       = N(y; A_k x + b_k, Sigma),   Sigma = diag(sigma2) shared by all k

Numerical choices (method.md section 3), stated here once:

* **No O(N K D) array, no per-(n, k, d) loop.** With whitened data ``y~ = y / sigma`` the squared
  residual expands into ``|y~|^2 - 2 y~ . (A~_k x + b~_k) + |A~_k x + b~_k|^2``. The cross term for
  all n and k is one GEMM ``Y~ @ [A~_1 b~_1 ... A~_K b~_K]`` of shape (N, K (L+1)); ``|y~|^2`` is
  common to all k, so responsibilities never suffer from its cancellation. The M-step needs only
  the weighted moments ``S_yx~_k = sum_n r_nk y_n [x_n; 1]^T`` (one GEMM ``Y^T @ (R * X~)``) and
  ``S_x~x~_k``; ``sigma2`` follows from them in O(K D L^2) without forming residuals. Memory is
  O(N K + K D L).
* **Screened E-step** (``e_step``, default for N K D >= 5e8, e.g. the paper's two-source size):
  responsibilities of D = 1536 features are nearly hard, so the cross-term GEMM runs in float32
  only to *select* the (n, k) pairs within 40 nats of each row's best (with a bound of the
  float32 error); their log-joint is recomputed exactly in float64 from the gathered rows of Y,
  which the M-step reuses for ``S_yx~_k``. Dropped pairs have r_nk < 4e-18: the parameters are
  the dense float64 ones up to round-off (5e-11 relative after 100 iterations at N = 20,000,
  K = 100), about 3x faster.
* **Gamma_k**: the weighted covariance with its eigenvalues clipped from below at
  ``gamma_reg * mean variance of X`` (the exact maximiser under the constraint
  ``Gamma_k >= lambda I``, so EM stays monotone).
* **sigma2 floor**: ``sigma2_d >= sigma_floor * median(sigma2)``, the median taken at the first
  M-step and then frozen (a fixed constraint, so EM stays monotone). Clean simulated features have
  dimensions with almost no residual that would otherwise dominate every posterior.
* **A_k, b_k**: weighted least squares on ``[x - mean(x), 1]``, all K solved in one batched
  call; a component whose weighted scatter is (nearly) singular gets a tiny ridge on the ``A``
  block (and ``lstsq`` if that fails too), i.e. the minimum-norm least-squares solution.
  ``c_k`` and ``Gamma_k`` come from the same weighted moments.
* **Initialisation**: deterministic k-means++ on ``x`` (seeded), a few Lloyd iterations, then hard
  responsibilities feed the first M-step.
* **Component removal**: after each M-step, components whose responsibility mass ``r_k`` is below
  ``min_component_mass`` (in training points) are removed (the paper: "classes are simply
  removed"), so ``n_components_`` may end below ``n_components``.
* **Stopping**: relative change of the mean log-likelihood below ``tol``, or ``max_iter``; with
  ``tol_gain``, also when an iteration gains less than ``tol_gain`` times the log-likelihood
  gained since the first E-step. That test is free of the additive constant of the
  log-density (feature units, D), which makes up most of ``|log-lik|`` (about 500 nats on the
  two-source set, so ``tol`` = 1e-6 asks for a gain below 5e-4 nats, reached after thousands
  of iterations). Measured with ``tol_gain`` = 0.01 on the paper-size two-source set
  (N = 20,000, K = 100): EM stops after 29 iterations instead of running to ``max_iter`` =
  100 (wall time x0.33 in the same run), and the localisation error on test mixtures is the
  same or lower (the later iterations raise the likelihood and the elevation error). Two-source
  training (``train_model`` and the benchmark's SBM-2 models) takes :data:`TWO_SOURCE_TOL_GAIN`
  = 0.01.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.special import logsumexp

from .params import GLLiMParams
from .posterior import predict_full

_LOG_2PI = np.log(2.0 * np.pi)
#: ``e_step="auto"`` screens from this N * D * K on (the paper's two-source size is 3e9, its
#: one-source size 2e7).
_SCREEN_MIN_WORK = 5e8
#: Screening keeps every (n, k) whose float32 log-joint is within this many nats of the row's
#: best (plus a bound of the float32 error): the ones dropped have r_nk < exp(-40) = 4e-18.
_SCREEN_NATS = 40.0
#: Bound of the float32 cross term's error, relative to |y~|^2 + |A~ x~ + b~|^2.
_SCREEN_F32_REL = 1e-4
#: Fall back to the dense float64 GEMMs when more than this fraction of (n, k) survives.
_SCREEN_MAX_FILL = 0.2
#: Threads for the per-component gathers and products of the screened EM (numpy releases the
#: GIL in them; each component's result is computed by one thread, so results do not depend
#: on the count).
_THREADS = max(1, min(4, os.cpu_count() or 1))
#: ``tol_gain`` of two-source training (``train_model`` and the benchmark's SBM-2 models);
#: None = off. 0.01 is measured (see the module docstring).
TWO_SOURCE_TOL_GAIN = 0.01


def _map_components(fn, ks):
    """``[fn(k) for k in ks]``, on ``_THREADS`` threads."""
    ks = list(ks)
    if _THREADS == 1 or len(ks) < 2:
        return [fn(k) for k in ks]
    with ThreadPoolExecutor(_THREADS) as ex:
        return list(ex.map(fn, ks))


def _kmeans_pp(X: np.ndarray, k: int, rng: np.random.Generator, n_iter: int = 20) -> np.ndarray:
    """Seeded k-means++ followed by a few Lloyd iterations; returns hard labels (N,)."""
    n = X.shape[0]
    centres = np.empty((k, X.shape[1]))
    centres[0] = X[rng.integers(n)]
    d2 = np.sum((X - centres[0]) ** 2, axis=1)
    for j in range(1, k):
        total = d2.sum()
        idx = rng.integers(n) if total <= 0 else rng.choice(n, p=d2 / total)
        centres[j] = X[idx]
        d2 = np.minimum(d2, np.sum((X - centres[j]) ** 2, axis=1))
    labels = np.zeros(n, dtype=int)
    for it in range(n_iter):
        dist = (np.sum(X ** 2, 1)[:, None] - 2 * X @ centres.T + np.sum(centres ** 2, 1)[None])
        new = np.argmin(dist, axis=1)
        if it > 0 and np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = X[labels == j]
            if len(members):
                centres[j] = members.mean(axis=0)
    return labels


class GLLiM:
    """GLLiM estimator with a scikit-learn-like interface (``fit`` / ``predict``).

    Parameters
    ----------
    n_components : int
        Number of affine components K asked for (may shrink, see ``min_component_mass``).
    max_iter : int
        Maximum number of EM iterations.
    tol : float
        Stop when the relative change of the mean log-likelihood is below ``tol``.
    tol_gain : float or None
        Also stop when an iteration raises the mean log-likelihood by less than ``tol_gain``
        times what it has risen since the first E-step (from the third iteration on). None
        (default): off.
    gamma_reg : float
        Eigenvalue floor of every ``Gamma_k``, relative to the mean per-dimension variance of X.
    sigma_floor : float
        Floor of every ``sigma2_d`` relative to the median of ``sigma2`` at the first M-step.
    min_component_mass : float
        Components whose responsibility mass falls below this many training points are removed.
    random_state : int
        Seed of the k-means++ initialisation.
    verbose : bool
        Print the log-likelihood at every iteration.
    e_step : str
        ``"dense"``: the E-step cross term and the M-step moments ``Y^T (R * x~)`` are full
        float64 GEMMs over all (n, k). ``"screened"``: responsibilities of high-dimensional
        data are nearly hard (about 1.04 components per training pair within 40 nats of the
        best on the two-source set), so a float32 GEMM only *screens* the (n, k) pairs; the
        log-joint of the pairs within ``40`` nats (plus a bound of the float32 error) of their
        row's best is then computed exactly in float64 from the gathered rows of Y, which the
        M-step reuses for its moments. Pairs dropped have r_nk < 4e-18, so the results are
        those of the dense float64 computation up to round-off; an iteration where more than
        20 % of the pairs survive runs dense. ``"auto"`` (default): screened when
        ``N * D * K >= 5e8``.
    """

    def __init__(self, n_components: int = 32, max_iter: int = 100, tol: float = 1e-6,
                 gamma_reg: float = 1e-3, sigma_floor: float = 1e-2,
                 min_component_mass: float = 1.0, random_state: int = 0,
                 verbose: bool = False, e_step: str = "auto", tol_gain: float = None):
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.tol_gain = tol_gain
        self.gamma_reg = gamma_reg
        self.sigma_floor = sigma_floor
        self.min_component_mass = min_component_mass
        self.random_state = random_state
        self.verbose = verbose
        self.e_step = e_step

    # ------------------------------------------------------------------ validation
    def _validate(self, X, Y):
        if not (isinstance(self.n_components, (int, np.integer)) and self.n_components >= 1):
            raise ValueError(f"n_components must be a positive integer, got {self.n_components!r}")
        if not (isinstance(self.max_iter, (int, np.integer)) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if self.e_step not in ("auto", "dense", "screened"):
            raise ValueError(f"e_step must be 'auto', 'dense' or 'screened', got "
                             f"{self.e_step!r}")
        for name in ("tol", "gamma_reg", "sigma_floor", "min_component_mass"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.tol_gain is not None and not self.tol_gain >= 0:
            raise ValueError(f"tol_gain must be None or >= 0, got {self.tol_gain!r}")
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2 or Y.ndim != 2:
            raise ValueError(f"X must be (N, L) and Y (N, D); got {X.shape} and {Y.shape}")
        if X.shape[0] != Y.shape[0]:
            raise ValueError(f"X and Y have different numbers of samples: {X.shape[0]} != "
                             f"{Y.shape[0]}")
        if X.shape[0] < self.n_components:
            raise ValueError(f"n_components={self.n_components} exceeds the number of samples "
                             f"N={X.shape[0]}")
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(Y))):
            raise ValueError("X and Y must be finite (found NaN or inf)")
        return X, Y

    # ------------------------------------------------------------------ EM pieces
    def _use_screening(self, N: int, D: int) -> bool:
        """Whether the E-step screens (see ``e_step``)."""
        if self.e_step != "auto":
            return self.e_step == "screened"
        return N * D * self.n_components >= _SCREEN_MIN_WORK

    def _e_terms(self, X, centres=None):
        """Everything of the log-joint but the cross term ``y~ . (A~_k x~ + b~_k)``.

        Returns ``(base (N, K), quad (N, K), W (D, L+1, K), Xt (N, L+1))`` where the
        unnormalised log r_nk is ``base - 0.5 * max(Ysq_w - 2 cross + quad, 0)`` with
        ``cross_nk = y_n . W[:, :, k] x~_n``, y and x centred on ``centres`` (default: the
        fit's), ``x~ = [x, 1]``.
        """
        p = self.params_
        K, L = p.c.shape
        N = X.shape[0]
        D = p.A.shape[1]
        x_mean, y_mean = centres if centres is not None else (self._x_mean, self._y_mean)
        inv_sig = 1.0 / p.sigma2
        Xc = X - x_mean
        # log N(x; c_k, Gamma_k) with P_k = Gamma_k^-1, expanded over the centred x:
        # (x - c)^T P (x - c) = x^T P x - 2 x^T P c + c^T P c, three small GEMMs.
        chol = np.linalg.cholesky(p.Gamma)                               # (K, L, L)
        logdet_g = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
        Linv = np.linalg.solve(chol, np.broadcast_to(np.eye(L), (K, L, L)))
        P = np.einsum("kji,kjl->kil", Linv, Linv)                        # (K, L, L)
        cc = p.c - x_mean
        Pc = np.einsum("klm,km->kl", P, cc)
        xx = (Xc[:, :, None] * Xc[:, None, :]).reshape(N, L * L)
        maha_x = xx @ P.reshape(K, L * L).T - 2.0 * (Xc @ Pc.T) + np.einsum("kl,kl->k", cc, Pc)
        np.maximum(maha_x, 0.0, out=maha_x)
        base = -0.5 * (L * _LOG_2PI + logdet_g[None, :] + maha_x)
        base += (np.log(p.pi) - 0.5 * (D * _LOG_2PI + np.sum(np.log(p.sigma2))))[None, :]
        # Regression on the centred x~ = [x - x_mean, 1]: the mean of component k at x is
        # Ab_k x~ with Ab_k = [A_k, b_k + A_k x_mean - y_mean] (centred y).
        Ab = np.concatenate([p.A, (p.b - y_mean + p.A @ x_mean)[:, :, None]],
                            axis=2)                                      # (K, D, L+1)
        Xt = np.concatenate([Xc, np.ones((N, 1))], axis=1)               # (N, L+1)
        W = (Ab * inv_sig[None, :, None]).transpose(1, 2, 0)             # (D, L+1, K)
        # |Ab_k x~|^2_S^-1 = x~^T G_k x~, G_k = Ab_k^T S^-1 Ab_k: one (N, (L+1)^2) GEMM.
        gram = np.einsum("kdl,d,kdm->klm", Ab, inv_sig, Ab, optimize=True)
        outer = (Xt[:, :, None] * Xt[:, None, :]).reshape(N, (L + 1) ** 2)
        quad = outer @ gram.reshape(K, (L + 1) ** 2).T
        return base, quad, W, Xt

    @staticmethod
    def _cross(Y, W, Xt):
        """cross_nk = y_n . W[:, :, k] x~_n for all n and k: one GEMM (dtype of Y)."""
        N = Y.shape[0]
        D, L1, K = W.shape
        c = Y @ W.reshape(D, L1 * K).astype(Y.dtype, copy=False)         # l-major columns
        return np.einsum("nlk,nl->nk", c.reshape(N, L1, K),
                         Xt.astype(Y.dtype, copy=False)).astype(np.float64)

    def _log_joint(self, X, Y, Ysq_w, centres=None):
        """Unnormalised log r_nk = log pi_k + log N(x; c_k, Gamma_k) + log N(y; A_k x + b_k, S),
        dense float64. ``Y`` centred on the fit's (or ``centres``') y mean, ``Ysq_w`` =
        ``sum_d y_nd^2 / sigma2_d`` (N,) of the centred observations."""
        base, quad, W, Xt = self._e_terms(X, centres)
        maha_y = quad
        maha_y -= 2.0 * self._cross(Y, W, Xt)
        maha_y += Ysq_w[:, None]
        np.maximum(maha_y, 0.0, out=maha_y)
        base -= 0.5 * maha_y
        return base

    def _log_joint_screened(self, X, Y, Y32, Ysq_w):
        """Screened E-step (see ``e_step``): ``((n, k, log_joint), gathered)``, the kept pairs
        with their exact float64 log-joint, and ``gathered[k] = (rows, Y[rows])`` for the
        M-step; ``(None, None)`` when too many pairs survive the screening."""
        base, quad, W, Xt = self._e_terms(X)
        N, K = base.shape
        cross32 = self._cross(Y32, W, Xt)
        approx = base - 0.5 * (Ysq_w[:, None] - 2.0 * cross32 + quad)
        err = _SCREEN_F32_REL * (Ysq_w[:, None] + quad)                  # |error| bound
        best = np.argmax(approx, axis=1)
        floor = approx[np.arange(N), best] - err[np.arange(N), best] - _SCREEN_NATS
        keep = approx + err >= floor[:, None]
        if keep.sum() > _SCREEN_MAX_FILL * N * K:
            return None, None
        Wk = np.ascontiguousarray(W.transpose(2, 1, 0))                 # (K, L+1, D)

        def exact(k):
            rows = np.flatnonzero(keep[:, k])
            G = Y[rows]                                                  # (n_k, D) float64
            # einsum, not a (n_k, D) @ (D, L+1) BLAS call: multi-threaded BLAS on such thin
            # products costs milliseconds each in thread synchronisation on a busy machine.
            cross = np.einsum("nl,nl->n", np.einsum("nd,ld->nl", G, Wk[k]), Xt[rows])
            maha = np.maximum(Ysq_w[rows] - 2.0 * cross + quad[rows, k], 0.0)
            return rows, G, base[rows, k] - 0.5 * maha

        ks = np.flatnonzero(keep.any(axis=0))
        res = _map_components(exact, ks)
        gathered = {k: (rows, G) for k, (rows, G, _) in zip(ks, res)}
        pairs_n = [r[0] for r in res]
        pairs_k = [np.full(r[0].size, k) for k, r in zip(ks, res)]
        values = [r[2] for r in res]
        return (np.concatenate(pairs_n), np.concatenate(pairs_k), np.concatenate(values)), gathered

    def _m_step(self, X, Y, R, Ysq_sum, first, gathered=None):
        """Maximise the expected complete log-likelihood given responsibilities R (N, K).

        ``Y`` centred on ``self._y_mean`` and ``Ysq_sum`` its column sums of squares. With
        ``gathered`` (from the screened E-step; R is zero outside it) the moments
        ``Y^T (R * x~)`` are summed over the gathered rows only.
        """
        N, D = Y.shape
        L = X.shape[1]
        rk = R.sum(axis=0)                                               # (K,)
        keep = rk >= max(self.min_component_mass, 1e-12)
        if not np.any(keep):
            keep[np.argmax(rk)] = True
        kept = np.flatnonzero(keep)
        if not np.all(keep):
            R = R[:, keep]
            rk = rk[keep]
        K = R.shape[1]
        pi = rk / rk.sum()
        # Weighted moments: Sxx_k (L+1, L+1) and Syx_k (D, L+1) over x~ = [x - xm, 1]
        # (x centred on its global mean, y on its mean, so the moments below do not cancel
        # catastrophically for targets far from 0, e.g. pixels).
        Xc = X - self._x_mean
        Xt = np.concatenate([Xc, np.ones((N, 1))], axis=1)
        outer = (Xt[:, :, None] * Xt[:, None, :]).reshape(N, (L + 1) ** 2)
        Sxx = (R.T @ outer).reshape(K, L + 1, L + 1)                     # (K, L+1, L+1)
        if gathered is None:
            # RX[:, l*K + k] = r_nk x~_nl (l-major), then one GEMM Y^T RX.
            RX = np.empty((N, (L + 1) * K))
            for j in range(L + 1):
                np.multiply(R, Xt[:, j:j + 1], out=RX[:, j * K:(j + 1) * K])
            Syx = (Y.T @ RX).reshape(D, L + 1, K).transpose(2, 0, 1)     # (K, D, L+1)
            del RX
        else:
            Syx = np.zeros((K, L + 1, D))

            def moments(j):
                rows, G = gathered[kept[j]]
                Syx[j] = np.einsum("nd,nl->ld", G, R[rows, j, None] * Xt[rows])

            _map_components(moments, [j for j in range(K) if kept[j] in gathered])
            Syx = Syx.transpose(0, 2, 1)
        # c_k and Gamma_k (weighted covariance, eigenvalues clipped at lam) from the moments.
        cc = Sxx[:, :L, L] / rk[:, None]                                 # centred means
        c = cc + self._x_mean
        Gamma = Sxx[:, :L, :L] / rk[:, None, None] - np.einsum("kl,km->klm", cc, cc)
        Gamma = 0.5 * (Gamma + Gamma.transpose(0, 2, 1))
        evals, evecs = np.linalg.eigh(Gamma)
        evals = np.maximum(evals, self._gamma_floor)
        Gamma = np.einsum("kij,kj,klj->kil", evecs, evals, evecs)
        # A_k, b_k: all K weighted least-squares problems in one batched solve. A component
        # whose weighted x-scatter is (nearly) singular gets a tiny ridge on the A block; if
        # that is not enough, lstsq (minimum-norm solution).
        scale = np.trace(Sxx, axis1=1, axis2=2) / (L + 1)
        S = Sxx.copy()
        ev = np.linalg.eigvalsh(S)
        bad = ev[:, 0] < 1e-10 * ev[:, -1]
        if np.any(bad):
            S[np.ix_(np.nonzero(bad)[0], np.arange(L), np.arange(L))] += (
                1e-8 * scale[bad, None, None] * np.eye(L)[None])
        Ab = np.linalg.solve(S, Syx.transpose(0, 2, 1)).transpose(0, 2, 1)  # (K, D, L+1)
        if np.any(bad):
            for k in np.nonzero(bad)[0]:
                if np.linalg.eigvalsh(S[k])[0] < 1e-12 * scale[k]:
                    Ab[k] = np.linalg.lstsq(Sxx[k], Syx[k].T, rcond=None)[0].T
        # sigma2_d = (1/N) sum_k [sum_n r_nk y_dn^2 - 2 ab_dk . Syx_kd + ab_dk^T Sxx_k ab_dk].
        cross = np.einsum("kdl,kdl->d", Ab, Syx)
        quad = np.einsum("kdl,klm,kdm->d", Ab, Sxx, Ab, optimize=True)
        sigma2 = (Ysq_sum - 2.0 * cross + quad) / N
        sigma2 = np.maximum(sigma2, 0.0)
        if first:
            med = float(np.median(sigma2))
            if not med > 0:
                med = float(np.mean(sigma2)) or 1.0
            self._sigma_floor_abs = max(self.sigma_floor * med, np.finfo(float).tiny)
        sigma2 = np.maximum(sigma2, self._sigma_floor_abs)
        A = np.ascontiguousarray(Ab[:, :, :L])
        # undo the centring of x and y
        b = np.ascontiguousarray(Ab[:, :, L]) - A @ self._x_mean + self._y_mean
        self.params_ = GLLiMParams(pi=pi, c=c, Gamma=Gamma, A=A, b=b, sigma2=sigma2)
        return int((~keep).sum())

    # ------------------------------------------------------------------ public API
    def fit(self, X, Y) -> "GLLiM":
        """Fit by EM. X: (N, L) targets, Y: (N, D) observations. Returns self."""
        X, Y = self._validate(X, Y)
        t0 = time.perf_counter()
        N, D = Y.shape
        rng = np.random.default_rng(self.random_state)
        self._x_mean = X.mean(axis=0)
        var_x = float(np.mean(np.var(X, axis=0)))
        self._gamma_floor = self.gamma_reg * (var_x if var_x > 0 else 1.0)
        labels = _kmeans_pp(X, self.n_components, rng)
        R = np.zeros((N, self.n_components))
        R[np.arange(N), labels] = 1.0
        self._y_mean = Y.mean(axis=0)
        Yc = Y - self._y_mean                                            # (N, D), once
        Ysq = Yc * Yc
        Ysq_sum = Ysq.sum(axis=0)                                        # (D,)
        Y32 = Yc.astype(np.float32) if self._use_screening(N, D) else None
        gathered = None
        if Y32 is not None:      # hard k-means labels: the moments need only each k's rows
            gathered = {}
            for k in range(self.n_components):
                rows = np.flatnonzero(labels == k)
                if rows.size:
                    gathered[k] = (rows, Yc[rows])
        self.n_screened_ = 0
        self.n_removed_ = self._m_step(X, Yc, R, Ysq_sum, first=True, gathered=gathered)
        self.log_likelihoods_ = []
        self.converged_ = False
        self.n_iter_ = 0
        for it in range(1, self.max_iter + 1):
            Ysq_w = Ysq @ (1.0 / self.params_.sigma2)
            gathered = None
            if Y32 is not None:
                pairs, gathered = self._log_joint_screened(X, Yc, Y32, Ysq_w)
                self.n_screened_ += gathered is not None
            if gathered is None:
                log_joint = self._log_joint(X, Yc, Ysq_w)
                m = log_joint.max(axis=1, keepdims=True)
                E = np.exp(log_joint - m, out=log_joint)
                tot = E.sum(axis=1, keepdims=True)
                log_norm = np.log(tot)[:, 0] + m[:, 0]
            else:       # softmax over the kept pairs only (every row keeps its best one)
                pn, pk, lj = pairs
                m = np.full(N, -np.inf)
                np.maximum.at(m, pn, lj)
                e = np.exp(lj - m[pn])
                tot = np.bincount(pn, weights=e, minlength=N)
                log_norm = np.log(tot) + m
            ll = float(np.mean(log_norm))
            self.log_likelihoods_.append(ll)
            self.n_iter_ = it
            if self.verbose:
                print(f"[gllim] iter {it:3d}  K={self.params_.n_components:3d}  "
                      f"mean log-lik {ll:.6f}" + ("  (screened)" if gathered is not None
                                                  else ""))
            if it > 1:
                prev = self.log_likelihoods_[-2]
                if abs(ll - prev) <= self.tol * max(abs(prev), 1e-300):
                    self.converged_ = True
                    break
                progress = ll - self.log_likelihoods_[0]
                if (self.tol_gain is not None and it > 2 and progress > 0
                        and ll - prev <= self.tol_gain * progress):
                    self.converged_ = True
                    break
            if gathered is None:
                R = np.divide(E, tot, out=E)
            else:
                R = np.zeros((N, self.params_.n_components))
                R[pn, pk] = e / tot[pn]
            self.n_removed_ += self._m_step(X, Yc, R, Ysq_sum, first=False, gathered=gathered)
            del gathered
        self.lower_bound_ = self.log_likelihoods_[-1]
        self.n_components_ = self.params_.n_components
        self.fit_time_ = time.perf_counter() - t0
        return self

    def _check_fitted(self):
        if not hasattr(self, "params_"):
            raise RuntimeError("this GLLiM instance is not fitted yet; call fit(X, Y) first")

    def score(self, X, Y) -> float:
        """Mean joint log-likelihood log p(x, y) of the given pairs."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        Y = np.asarray(Y, dtype=np.float64)
        centres = (X.mean(axis=0), Y.mean(axis=0))
        Yc = Y - centres[1]
        Ysq_w = (Yc ** 2) @ (1.0 / self.params_.sigma2)
        return float(np.mean(logsumexp(self._log_joint(X, Yc, Ysq_w, centres=centres),
                                       axis=1)))

    def predict(self, Y) -> np.ndarray:
        """Posterior mean E[x | y] for each fully observed row of Y (N, D) -> (N, L)."""
        self._check_fitted()
        return predict_full(self.params_, np.asarray(Y, dtype=np.float64))[0]

    @classmethod
    def from_params(cls, params: GLLiMParams, **kwargs) -> "GLLiM":
        """A fitted estimator wrapping existing parameters (e.g. loaded from a model file)."""
        params.validate()
        obj = cls(n_components=params.n_components, **kwargs)
        obj.params_ = params
        obj.n_components_ = params.n_components
        return obj

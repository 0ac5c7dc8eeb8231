"""One-source calibration that is safe on small sets: checks, densification, K by
cross-validation over positions, and the noise model of the hierarchical posterior.

:func:`fit_one_source` is what ``sbm-train`` runs for one source:

1. :func:`check_positions` refuses sets too small or degenerate to calibrate, with what to record.
2. The mean vectors are densified (:mod:`.densify`) between neighbouring positions.
3. Without an explicit K, K is chosen by ``folds``-fold cross-validation *over positions*:
   each fold's positions are removed (with everything interpolated from them), the rest
   densified and fitted, and the removed positions' white-noise mean vectors localised. Only
   interior positions are held out (not those on the convex hull of the set): the model is used
   inside the recorded field, and holding out an edge position measures extrapolation, which
   no K does well. Fields spanning two or more target dimensions choose among ``K_CANDIDATES``
   (capped by what each fold supports) by that held-out error. Fields spanning **one**
   dimension use the :data:`GAPS` rule: K = m x (distinct positions - 1), m affine pieces per
   gap between neighbouring positions, m among :data:`PIECES_PER_GAP` (at most ``subdiv // 2``,
   two dense vectors per piece), the largest m whose held-out error is within one standard
   error of the best (in each fold K is m x the fold's own gaps). Why the largest: every
   held-out position sits in a hole of its fold, so the folds never measure the error *at* a
   recorded position, and that error falls with m: one piece per gap cannot follow the
   interaural phase turning inside a gap, and the model misplaces its own recordings. Measured
   on the Surrey room-A HATS (13 positions, +-30 degrees, white-noise means localised by their
   own model): 0.12 / 0.045 / 0.015 degrees for m = 1 / 2 / 3; speech at the trained positions
   0.30 / 0.17 / 0.13 degrees (ARCTIC; PHAT 0.29). The fixed candidates of two-dimensional
   fields chose K = 12 there (CV 0.48) and worse K for 7 positions (the folds leave 20-degree
   gaps), hence the rule (``one_d_rule=False`` adds one piece per gap to the candidates
   instead). The error of the chosen K
   (mean absolute error per target dimension) is what the calibration is worth at unrecorded
   positions; ``sbm-train`` prints it and stores it in the model. It is pessimistic: the folds
   leave gaps twice the grid step.
4. ``frame_corr``: how many consecutive feature frames make one independent observation,
   measured on the training recordings as the ratio of the variance of ``corr_window``-frame
   means to ``frame_var / corr_window``; it enters the hierarchical posterior
   (:mod:`.posterior`).
5. ``cov_scale``: the same folds localise each held-out position's mean vector as a window of
   ``REF_FRAMES`` active frames with the hierarchical posterior; ``cov_scale`` is the median
   ratio of squared error to posterior variance (times its fit ratio), over the median of a
   one-degree chi-square: robust to the few positions the folds leave far from any other.
   The localiser multiplies its covariances by it, so the reported uncertainty matches what
   cross-validation measured (the posterior keeps its closed form; the factor is one number).
   Like the error, it errs on the safe side. The 95 % quantile version (``cov_scale_q95``,
   stored for reference) was tried: on Surrey room A it gave *lower* coverage at trained
   positions (0.77 against 1.00), and on the demo's virtual-head grid it was 257 against 54
   (a few positions with large elevation errors), which pushed the confidence of every
   estimate under av_fusion's speaking threshold.
6. ``cov_floor`` (:func:`window_floor`, run by ``sbm-train`` on the fitted model): the mean
   squared error per target dimension of the localiser's windows of the training recordings
   themselves, added to the scaled posterior covariance. ``cov_scale`` is measured on mean
   vectors at positions the folds left out; a *window* of a recording at a recorded position
   is off by more than the posterior says, and by an amount that does not shrink as the
   window gets more active points (in a room: onset before the reverberation builds up, tail
   after the source stops). With m = 3 components per gap on Surrey room A, ``cov_scale``
   fell to 2.5 (from 15.6 with m = 1) and the 95 % region held the truth for 60 % / 51 % of
   speech windows at trained positions; with the floor (RMS 0.29 degrees there, 0.006 in the
   anechoic chamber) 99.9 %, and the ranking of confidences (a monotone function of the
   spread) is unchanged. Measured at recorded positions only: it bounds the reported spread
   from below, it does not replace ``cov_scale``. ``sbm-train`` stores it for fields spanning
   one dimension (those of the components-per-gap rule, where ``cov_scale`` collapsed): on the
   SONICOM grids (two dimensions, fixed K candidates, ``cov_scale`` 52-89) it changed no
   error or ranking and moved the coverage of trained cases from 99.0-99.7 % to 99.2-100 %
   (further from the 80-99 % aimed at) and of held-out rows and cross-head cases by +0.5 to
   +4 points (still 29-64 %).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import numpy as np

from .densify import densify
from .features import FeatureConfig, features_from_spectra, stft
from .gllim import GLLiM
from .posterior import PosteriorEngine, SufficientStats

#: K values tried by cross-validation (capped by what each fold can support).
K_CANDIDATES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
#: Candidate rule for fields that span one target dimension: one affine component per gap
#: between consecutive recorded positions (K = distinct positions - 1). Cross-validated like
#: the fixed K values (in each fold it is the fold's own positions - 1). ``"<m>xgaps"``
#: (:func:`gaps_label`) is the same rule with m components per gap.
GAPS = "gaps"
#: Components per gap the rule of one-dimensional fields chooses from (see the module doc).
PIECES_PER_GAP = (1, 2, 3)


def gaps_label(m: int) -> str:
    """Label of the rule with ``m`` components per gap: "gaps", "2xgaps", ..."""
    return GAPS if int(m) == 1 else f"{int(m)}x{GAPS}"


def pieces_per_gap(label) -> Optional[int]:
    """m of a :func:`gaps_label` label, None for a plain K."""
    if label == GAPS:
        return 1
    if isinstance(label, str) and label.endswith("x" + GAPS) and label[:-len(GAPS) - 1].isdigit():
        return int(label[:-len(GAPS) - 1])
    return None


#: Fewest positions for a one-source calibration.
MIN_POSITIONS = 5
#: Median of a chi-square variable with one degree of freedom.
_CHI2_1_MEDIAN = 0.454936
#: Active frames of the reference window used to calibrate the covariance (0.72 s, half active).
REF_FRAMES = 45
#: Dense training vectors aimed at when the subdivision is automatic.
DENSE_TARGET = 1500


class CalibrationError(ValueError):
    """The calibration set cannot give a usable model; the message says what to record."""


@dataclass
class CalibrationResult:
    gllim: GLLiM
    X: np.ndarray                    # the (dense) training targets the model was fitted on
    n_positions: int
    subdiv: int
    n_components: int                # asked for (chosen by CV or given)
    cv_error: Optional[List[float]]  # mean abs held-out error per target dimension
    cv_table: dict = field(default_factory=dict)     # K or GAPS -> mean held-out error
    frame_corr: float = 1.0
    cov_scale: float = 1.0
    warnings: List[str] = field(default_factory=list)
    k_rule: str = "cv"               # "cv" (chosen), GAPS (chosen rule) or "given"
    pieces_per_gap: Optional[int] = None   # m of the GAPS rule (K = m x gaps), else None
    cv_sem: dict = field(default_factory=dict)       # K or label -> standard error of cv_table
    cov_scale_median: float = 1.0    # = cov_scale (the median-matched factor)
    cov_scale_q95: float = 1.0       # the factor matching the 95 % quantile instead
    n_heldout: int = 0               # positions the cross-validation held out


def grid_steps(X: np.ndarray) -> np.ndarray:
    """Typical spacing of the positions per target dimension (median neighbour gap)."""
    out = []
    for col in np.asarray(X, float).T:
        u = np.unique(np.round(col, 9))
        gaps = np.diff(u)
        out.append(float(np.median(gaps)) if gaps.size else 1.0)
    return np.asarray(out)


def check_positions(X: np.ndarray, names: Sequence[str]) -> List[str]:
    """Raise :class:`CalibrationError` for unusable sets; return warnings for weak ones."""
    X = np.asarray(X, float)
    N, L = X.shape
    warnings = []
    uniq, counts = np.unique(np.round(X, 6), axis=0, return_counts=True)
    if len(uniq) < MIN_POSITIONS:
        raise CalibrationError(
            f"{N} recording(s) at {len(uniq)} distinct position(s): a calibration needs at "
            f"least {MIN_POSITIONS} distinct positions spread over the field of view; record "
            f"more (200-400 for a camera's whole image, a few dozen for a small field)")
    if np.any(counts > 1):
        warnings.append(f"{int(np.sum(counts[counts > 1]))} recordings share "
                        f"{int(np.sum(counts > 1))} position(s); repeated positions add no "
                        f"coverage: move the loudspeaker between recordings")
    for d in range(L):
        if np.ptp(uniq[:, d]) <= 1e-9 * (1.0 + np.abs(uniq[:, d]).max()):
            raise CalibrationError(
                f"all positions have the same {names[d]} ({uniq[0, d]:g}): the model cannot "
                f"learn that coordinate; record positions at several values of {names[d]}, "
                f"or train on the other coordinate only (sbm-train --azimuth-only)")
    return warnings


def auto_subdiv(n_positions: int, dims: int, target: int = DENSE_TARGET) -> int:
    """Subdivisions per edge so that the dense set has about ``target`` vectors (1..8)."""
    if n_positions <= 0:
        return 1
    s = (target / n_positions) ** (1.0 / max(dims, 1))
    return int(np.clip(np.floor(s), 1, 8))


def interior(X: np.ndarray) -> np.ndarray:
    """Indices of positions strictly inside the recorded field (not on its convex hull)."""
    X = np.asarray(X, float)
    if X.shape[1] == 1 or np.linalg.matrix_rank(X - X.mean(axis=0)) < X.shape[1]:
        spread = np.ptp(X, axis=0) > 0
        lo, hi = X.min(axis=0), X.max(axis=0)
        on_edge = np.any(((X == lo) | (X == hi)) & spread, axis=1)
        return np.nonzero(~on_edge)[0]
    from scipy.spatial import ConvexHull, QhullError
    Z = X / grid_steps(X)
    try:
        hull = ConvexHull(Z)
    except QhullError:
        return np.arange(len(X))
    eq = hull.equations
    dist = Z @ eq[:, :-1].T + eq[:, -1]
    return np.nonzero(np.all(dist < -1e-6, axis=1))[0]


def _folds(candidates: np.ndarray, k: int, seed: int) -> List[np.ndarray]:
    k = int(min(k, len(candidates)))
    order = np.random.default_rng([seed, 29]).permutation(candidates)
    return [np.sort(order[i::k]) for i in range(k)]


def frame_correlation(recordings: Sequence[np.ndarray], cfg: FeatureConfig,
                      frame_var: np.ndarray, corr_window: int = 32,
                      max_recordings: int = 100) -> float:
    """Frames per independent observation (>= 1), measured on the training recordings."""
    step = max(1, len(recordings) // max_recordings)
    ratios = []
    fv = np.maximum(frame_var, 1e-12)
    for x in recordings[::step]:
        Y = features_from_spectra(stft(x, cfg), cfg)[0]
        nw = Y.shape[0] // corr_window
        if nw < 2:
            continue
        means = Y[:nw * corr_window].reshape(nw, corr_window, -1).mean(axis=1)
        ratios.append(np.median(means.var(axis=0, ddof=1) / (fv / corr_window)))
    if not ratios:
        return float(cfg.n_fft / cfg.hop)          # no long recording: the STFT overlap
    return float(np.clip(np.median(ratios), 1.0, corr_window))


def _window_posterior(g: GLLiM, Y: np.ndarray, frame_noise: Optional[np.ndarray],
                      n_frames: int = REF_FRAMES, n_bins: Optional[int] = None):
    """Posterior means and variances (N, L) of mean vectors seen as ``n_frames``-frame windows
    (hierarchical posterior with ``frame_noise``; plain GLLiM noise when it is None)."""
    noise = None if frame_noise is None else (g.params_.sigma2, frame_noise)
    eng = PosteriorEngine(g.params_, n_bins=n_bins, noise=noise)
    n = np.full(Y.shape[1], float(n_frames))
    means, var = [], []
    for y in Y:
        post = eng.posterior(SufficientStats(n=n, s=n_frames * y, q=n_frames * y * y))
        means.append(post.mean())
        var.append(np.diag(post.covariance()) * post.fit_ratio)
    return np.array(means), np.array(var)


def _n_distinct(X: np.ndarray) -> int:
    return len(np.unique(np.round(X, 6), axis=0))


def spanned_dims(X: np.ndarray) -> int:
    """Number of target dimensions along which the positions vary."""
    X = np.asarray(X, float)
    return int(np.sum(np.ptp(X, axis=0) > 1e-9 * (1.0 + np.abs(X).max())))


#: 95 % quantile of a chi-square variable with one degree of freedom.
_CHI2_1_Q95 = 3.841459


def fit_one_source(X: np.ndarray, Y: np.ndarray, cfg: FeatureConfig,
                   names: Sequence[str], frame_var: np.ndarray, frame_corr: float = 1.0,
                   n_components=None,
                   subdiv: Optional[int] = None, folds: int = 5, max_iter: int = 100,
                   tol: float = 1e-6, seed: int = 0, candidates=K_CANDIDATES,
                   log: Optional[Callable[[str], None]] = None,
                   one_d_rule: bool = True, pieces=PIECES_PER_GAP) -> CalibrationResult:
    """Check, densify, choose K (unless given) and fit; see the module docstring.

    ``n_components``: None (cross-validated choice among ``candidates``; when the positions
    span one dimension, the :data:`GAPS` rule with m among ``pieces`` components per gap), a
    positive int, or a :func:`gaps_label` (:data:`GAPS`: one component per gap).
    """
    say = log or (lambda msg: None)
    X = np.asarray(X, float)
    Y = np.asarray(Y, float)
    warnings = check_positions(X, names)
    for w in warnings:
        say("warning: " + w)
    N, L = X.shape
    scale = grid_steps(X)
    if subdiv is None:
        subdiv = auto_subdiv(N, spanned_dims(X))
    subdiv = max(1, int(subdiv))

    def dense(idx):
        return densify(X[idx], Y[idx], cfg.feature_type, cfg.n_freq, subdiv, scale)

    def k_of(label, pos):
        m = pieces_per_gap(label)
        return int(label) if m is None else m * max(1, _n_distinct(pos) - 1)

    inner = interior(X)
    if len(inner) < 2:
        inner = np.arange(N)
    fold_sets = _folds(inner, folds, seed)
    fold_data = []
    for held in fold_sets:
        keep = np.setdiff1d(np.arange(N), held)
        fold_data.append((held, X[keep], *dense(keep)))
    min_dense = min(Xd.shape[0] for _, _, Xd, _ in fold_data)
    if isinstance(n_components, str):
        if pieces_per_gap(n_components) is None or pieces_per_gap(n_components) < 1:
            raise ValueError(f"n_components: a positive int, None or {GAPS!r} "
                             f"(or '<m>x{GAPS}'), got {n_components!r}")
        tried = [n_components]
    elif n_components is not None and n_components > 0:
        tried = [int(n_components)]
    else:
        tried = [k for k in candidates if k <= max(1, min_dense // 4)] or [1]
        if spanned_dims(X) == 1 and one_d_rule:
            # 1-D fields: the rule, m components per gap (see the module doc)
            tried = [gaps_label(m) for m in pieces if m == 1 or m <= subdiv // 2] or [GAPS]
        elif spanned_dims(X) == 1:
            tried.append(GAPS)
    frame_noise = float(frame_corr) * np.asarray(frame_var, float)
    table, per_dim, ratio, ratio95, sem = {}, {}, {}, {}, {}
    for lab in tried:
        errs, rat = [], []
        for held, Xk, Xd, Yd in fold_data:
            K = k_of(lab, Xk)
            if K > Xd.shape[0]:
                break
            g = GLLiM(n_components=K, max_iter=max_iter, tol=tol, random_state=seed).fit(Xd, Yd)
            m, v = _window_posterior(g, Y[held], frame_noise)
            errs.append(np.abs(m - X[held]))
            rat.append((m - X[held]) ** 2 / np.maximum(v, 1e-300))
        if len(errs) < len(fold_data):
            continue
        e = np.concatenate(errs)
        r = np.concatenate(rat).ravel()
        table[lab] = float(np.mean(e))
        pos_err = e.mean(axis=1)
        sem[lab] = float(np.std(pos_err, ddof=1) / np.sqrt(len(pos_err))) \
            if len(pos_err) > 1 else 0.0
        per_dim[lab] = [float(v) for v in e.mean(axis=0)]
        ratio[lab] = float(np.median(r) / _CHI2_1_MEDIAN)
        ratio95[lab] = float(np.quantile(r, 0.95) / _CHI2_1_Q95)
        errs_txt = ", ".join(f"{n} {v:.2f}" for n, v in zip(names, per_dim[lab]))
        m = pieces_per_gap(lab)
        txt = f"K={lab}" if m is None else \
            f"K={'' if m == 1 else f'{m} x '}(positions-1) ({k_of(lab, X)})"
        say(f"{txt}: held-out error {errs_txt}")
    if not table:
        raise CalibrationError(
            f"no K could be cross-validated on {N} positions ({subdiv} subdivisions): record "
            f"more positions, or give a smaller K (sbm-train -K)")
    if len(tried) == 1:
        lab = tried[0]
    elif all(pieces_per_gap(t) is not None for t in table):
        # the rule: the most components per gap within one standard error of the best
        best = min(table, key=table.get)
        lab = max((t for t in table if table[t] <= table[best] + sem[best]),
                  key=pieces_per_gap)
        say(f"chosen: {pieces_per_gap(lab)} component(s) per gap (the most within one "
            f"standard error, {sem[best]:.2f}, of the best held-out error)")
    else:
        lab = min(table, key=table.get)
    Xd, Yd = dense(np.arange(N))
    K = min(k_of(lab, X), Xd.shape[0])
    g = GLLiM(n_components=K, max_iter=max_iter, tol=tol, random_state=seed).fit(Xd, Yd)
    rule = ("given" if n_components is not None
            else GAPS if pieces_per_gap(lab) is not None else "cv")
    return CalibrationResult(gllim=g, X=Xd, n_positions=N, subdiv=subdiv, n_components=K,
                             cv_error=per_dim[lab], cv_table=table, frame_corr=float(frame_corr),
                             cov_scale=max(1.0, ratio[lab]), warnings=warnings,
                             k_rule=rule, pieces_per_gap=pieces_per_gap(lab), cv_sem=sem,
                             cov_scale_median=max(1.0, ratio[lab]),
                             cov_scale_q95=max(1.0, ratio95[lab]),
                             n_heldout=int(sum(len(f[0]) for f in fold_data)))


#: Hop (s) of the windows :func:`window_floor` slides over each training recording.
FLOOR_HOP_S = 0.05


def window_floor(model, recordings: Sequence[np.ndarray], targets: np.ndarray,
                 hop_s: float = FLOOR_HOP_S) -> List[float]:
    """Variance floor per target dimension: the mean squared error of the localiser's windows
    of the model's own training recordings.

    Each recording is localised as the localiser does (``model``'s default window, sliding by
    ``hop_s``) with every time-frequency point active (the condition of the mean vectors the
    model was fitted on: the adaptive mask needs silence to learn its floor, and a recording
    of stationary noise has none). The model places the *mean vectors* of these recordings
    within hundredths of a degree, but a window sees part of the recording (the onset before
    the room's reverberation builds up, the tail after the source stops), and in a room the
    windows' estimates are off by much more: Surrey room A, 13 positions, K = 36: RMS 0.29
    degrees against a posterior standard deviation of 0.03 (anechoic: 0.006 against 0.002).
    That error does not shrink with the number of active points, so it enters the reported
    covariance as a floor added to the scaled posterior covariance (see the module doc)
    rather than as a factor on it. Measured at recorded positions: the smallest honest floor.
    """
    from .localizer import localize_signal

    targets = np.asarray(targets, float)
    sq, n = np.zeros(targets.shape[1]), 0
    for x, t in zip(recordings, targets):
        for _, est in localize_signal(model, np.asarray(x, float), hop_s=hop_s,
                                      noise_floor=1e-12):
            if est is None:
                continue
            d = np.asarray(est.sources[0].position, float) - t
            if np.all(np.isfinite(d)):
                sq += d * d
                n += 1
    return [float(v) for v in (sq / n if n else sq)]


#: Active frames of the two-source reference window (1.2 s, the localiser's two-source window,
#: half active).
REF_FRAMES_TWO = 75


@dataclass
class TwoSourceCheck:
    """What :func:`two_source_check` measured on fresh mixtures of the recordings."""
    cov_scale: float                 # median-matched covariance factor
    cov_scale_q95: float             # the factor matching the 95 % quantile instead
    mix_error: List[float]           # mean absolute error per target dimension (both sources)
    n_mix: int


def two_source_check(g: GLLiM, recordings: Sequence[np.ndarray], targets: np.ndarray,
                     cfg: FeatureConfig, n_mix: int = 400, seed: int = 1,
                     level_std_db: float = 0.5) -> TwoSourceCheck:
    """Covariance factor and error of a two-source model on ``n_mix`` fresh mixtures.

    Two-source models have no hierarchical noise model, and their posterior covariance (GLLiM's
    sigma2 over every active time-frequency point) was measured 660 times too small on the
    Surrey room-A HATS, even at the recorded positions: the 95 % region held the truth for 3 %
    of two-talker windows. ``n_mix`` *fresh* mixtures of the training recordings (another seed
    than the training pairs, the same level spread) are localised as windows of
    :data:`REF_FRAMES_TWO` active frames, with the same engine as the localiser's two-source
    mode; the factor is the median ratio of squared error to posterior variance over the
    median of a one-degree chi-square (as :func:`fit_one_source` does with held-out
    positions). The positions are recorded ones, so this is the smallest honest factor: errors
    between positions and in reverberant speech are larger still.

    ``mix_error`` is the mean absolute error of the same estimates per target dimension, over
    both sources (each mixture's estimate compared in the better of the two source orders).
    It is *not* cross-validated: the pairs and level differences are new, the positions are
    recorded ones, so it is optimistic for positions between them.
    """
    from .dataset import two_source_set

    X, Y = two_source_set(recordings, targets, cfg, n_pairs=n_mix, seed=seed,
                          level_std_db=level_std_db)
    m, v = _window_posterior(g, Y, None, REF_FRAMES_TWO, n_bins=cfg.n_freq)
    r = ((m - X) ** 2 / np.maximum(v, 1e-300)).ravel()
    dim = X.shape[1] // 2
    same = np.abs(m - X)
    swap = np.abs(m - np.concatenate([X[:, dim:], X[:, :dim]], axis=1))
    pick = (swap.sum(axis=1) < same.sum(axis=1))[:, None]
    err = np.where(pick, swap, same)                                   # (n_mix, 2 dim)
    per_dim = 0.5 * (err[:, :dim].mean(axis=0) + err[:, dim:].mean(axis=0))
    return TwoSourceCheck(cov_scale=max(1.0, float(np.median(r) / _CHI2_1_MEDIAN)),
                          cov_scale_q95=max(1.0, float(np.quantile(r, 0.95) / _CHI2_1_Q95)),
                          mix_error=[float(e) for e in per_dim], n_mix=int(X.shape[0]))


def two_source_cov_scale(g: GLLiM, recordings: Sequence[np.ndarray], targets: np.ndarray,
                         cfg: FeatureConfig, n_mix: int = 400, seed: int = 1,
                         level_std_db: float = 0.5) -> tuple:
    """Covariance factor of a two-source model: (median factor, 95 % quantile factor), as
    measured by :func:`two_source_check`."""
    c = two_source_check(g, recordings, targets, cfg, n_mix=n_mix, seed=seed,
                         level_std_db=level_std_db)
    return c.cov_scale, c.cov_scale_q95

"""Audio-visual fusion: which face is speaking? (pure, no ROS)

Inputs are in image pixels: sound-source estimates (mean and posterior covariance, from the SBM
localiser) and face boxes (from any face detector).

Matching rule
-------------
Each face f is represented by its **mouth point** ``m_f = (u_f, v_f + mouth_offset * h_f)``
(``mouth_offset`` = 0.25: the middle of the lower half of the box, roughly where the mouth is) and
a **face-size covariance** ``S_f = diag((face_sigma * w_f)^2, (face_sigma * h_f)^2)``, which
accounts for the mouth's uncertain position inside the box and for the box itself. For a sound
source s with mean ``mu_s`` and covariance ``C_s`` the combined covariance is
``Sigma_sf = C_s + S_f`` and

    d2(s, f) = (m_f - mu_s)^T Sigma_sf^{-1} (m_f - mu_s)          (squared Mahalanobis distance)

A pair is **admissible** when ``d2 <= gate^2`` (gate = 3.0: a 3-sigma gate; d2 is chi-square with
2 degrees of freedom when the face really is the source, so 3 sigma keeps ~98.9 %). Among the
admissible pairs, sources and faces are assigned **one-to-one** by minimising the sum of
negative log-likelihoods ``0.5 * d2 + 0.5 * log det(2 pi Sigma_sf)`` (Hungarian algorithm,
:func:`scipy.optimize.linear_sum_assignment`), so with two sources and two faces each source gets
its own face, and a large face cannot win only because its size term inflates the covariance.

Speaking score
--------------
Each matched face receives the evidence ``e = clip(confidence_s, 0, 1)`` at the sound's time t;
unmatched faces receive 0. The score follows the evidence with a first-order filter with two time
constants: ``score += (1 - exp(-dt / tau)) * (e - score)`` with ``tau = attack_s`` when the
evidence is above the score (fast rise) and ``tau = release_s`` when below (slow decay);
between sound updates the score decays towards 0 with ``release_s``. A face is **speaking** with
hysteresis: it becomes speaking when its score reaches ``on_threshold`` and stops only when the
score falls under ``off_threshold`` -- so a face stays speaking across short pauses of the talker.

Time alignment
--------------
:class:`TimedBuffer` keeps a short history of stamped messages (faces, sounds); a sound estimate at
time t is matched against the face detections whose stamp is closest to t, if within a tolerance.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, replace
from typing import Dict, Generic, Iterable, List, Optional, Sequence, Tuple, TypeVar

import numpy as np
from scipy.optimize import linear_sum_assignment

T = TypeVar('T')


@dataclass(frozen=True)
class Face:
    """A face box in pixels: centre (u, v), width w, height h."""

    id: str
    u: float
    v: float
    w: float
    h: float
    score: float = 1.0

    def mouth(self, mouth_offset: float) -> np.ndarray:
        return np.array([self.u, self.v + mouth_offset * self.h])

    @property
    def box(self) -> Tuple[float, float, float, float]:
        return (self.u - self.w / 2, self.v - self.h / 2, self.u + self.w / 2,
                self.v + self.h / 2)


@dataclass(frozen=True)
class Sound:
    """A sound-source estimate in pixels: mean (u, v), covariance (2, 2) px^2, confidence;
    ``voice``: the ROS4HRI voice id that carried it ('' = none), shown on the overlay."""

    id: str
    u: float
    v: float
    cov: np.ndarray = field(default_factory=lambda: np.eye(2), compare=False)
    confidence: float = 1.0
    voice: str = ''

    @property
    def mean(self) -> np.ndarray:
        return np.array([self.u, self.v])


@dataclass(frozen=True)
class MatchConfig:
    gate: float = 3.0               # Mahalanobis gate (in sigmas)
    mouth_offset: float = 0.25      # mouth point below the box centre, fraction of box height
    face_sigma: float = 0.25        # face-size std, fraction of box width / height
    min_confidence: float = 0.0     # sound sources below this confidence are ignored
    min_variance_px2: float = 1.0   # floor on the covariance eigenvalues (px^2)

    def validate(self) -> 'MatchConfig':
        if not self.gate > 0:
            raise ValueError(f'gate must be > 0, got {self.gate}')
        if not self.face_sigma >= 0:
            raise ValueError(f'face_sigma must be >= 0, got {self.face_sigma}')
        if not -0.5 <= self.mouth_offset <= 0.5:
            raise ValueError(f'mouth_offset must be within [-0.5, 0.5], got {self.mouth_offset}')
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f'min_confidence must be within [0, 1], got {self.min_confidence}')
        if not self.min_variance_px2 > 0:
            raise ValueError('min_variance_px2 must be > 0')
        return self


@dataclass(frozen=True)
class Match:
    sound: Sound
    face: Face
    d2: float          # squared Mahalanobis distance
    cost: float        # negative log-likelihood used by the assignment


def sanitize_cov(cov, min_var: float = 1.0) -> np.ndarray:
    """Symmetric, positive-definite 2x2 covariance (eigenvalues floored at ``min_var``); a
    non-finite input becomes a huge isotropic covariance (the source then matches nothing)."""
    C = np.asarray(cov, float).reshape(2, 2)
    if not np.all(np.isfinite(C)):
        return np.eye(2) * 1e12
    C = 0.5 * (C + C.T)
    w, V = np.linalg.eigh(C)
    w = np.maximum(w, min_var)
    return (V * w) @ V.T


def face_covariance(face: Face, face_sigma: float) -> np.ndarray:
    return np.diag([(face_sigma * face.w) ** 2, (face_sigma * face.h) ** 2])


def pair_statistics(sound: Sound, face: Face, cfg: MatchConfig) -> Tuple[float, float]:
    """(d2, negative log-likelihood) of a face's mouth point under the sound estimate."""
    S = sanitize_cov(sound.cov, cfg.min_variance_px2) + face_covariance(face, cfg.face_sigma)
    r = face.mouth(cfg.mouth_offset) - sound.mean
    d2 = float(r @ np.linalg.solve(S, r))
    sign, logdet = np.linalg.slogdet(2 * np.pi * S)
    return d2, 0.5 * d2 + 0.5 * float(logdet)


def _pair_arrays(sound: Sound, U, V, Wd, Hd, cfg: MatchConfig) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`pair_statistics` of one sound against faces given as arrays (centre, size)."""
    C = sanitize_cov(sound.cov, cfg.min_variance_px2)
    s11 = C[0, 0] + (cfg.face_sigma * Wd) ** 2
    s22 = C[1, 1] + (cfg.face_sigma * Hd) ** 2
    s12 = C[0, 1]
    det = s11 * s22 - s12 * s12
    r0, r1 = U - sound.u, V + cfg.mouth_offset * Hd - sound.v
    d2 = (s22 * r0 * r0 - 2 * s12 * r0 * r1 + s11 * r1 * r1) / det
    return d2, 0.5 * d2 + 0.5 * (2 * math.log(2 * math.pi) + np.log(det))


def match_sources(sounds: Sequence[Sound], faces: Sequence[Face],
                  cfg: MatchConfig = MatchConfig()) -> List[Match]:
    """One-to-one matches of sound sources to faces, gated (see the module docstring).

    Returns the matches sorted by sound order; a source with no admissible face is absent.
    Linear in the number of faces: the statistics are computed on arrays, and the assignment
    is solved over the faces admissible for some source only.
    """
    sounds = [s for s in sounds if s.confidence >= cfg.min_confidence
              and np.isfinite(s.u) and np.isfinite(s.v) and np.all(np.isfinite(s.cov))]
    faces = [f for f in faces if np.all(np.isfinite((f.u, f.v, f.w, f.h)))]
    if not sounds or not faces:
        return []
    box = np.array([(f.u, f.v, f.w, f.h) for f in faces], float).T
    stats = [_pair_arrays(s, *box, cfg) for s in sounds]
    d2 = np.array([st[0] for st in stats])
    nll = np.array([st[1] for st in stats])
    ok = d2 <= cfg.gate ** 2
    cols = np.flatnonzero(ok.any(axis=0))
    if not cols.size:
        return []
    d2, nll, ok = d2[:, cols], nll[:, cols], ok[:, cols]
    big = (np.abs(nll[ok]).max() + 1.0) * 1e3 + 1e6   # 'forbidden' cost, larger than any sum
    rows, cc = linear_sum_assignment(np.where(ok, nll, big))
    out = [Match(sounds[i], faces[cols[j]], float(d2[i, j]), float(nll[i, j]))
           for i, j in zip(rows, cc) if ok[i, j]]
    return sorted(out, key=lambda mt: sounds.index(mt.sound))


# ----------------------------------------------------------------------------- scores
@dataclass
class _Track:
    score: float
    t: float
    speaking: bool = False
    last_seen: float = 0.0


class SpeakingScores:
    """Per-face speaking score with attack/release smoothing and on/off hysteresis."""

    def __init__(self, attack_s: float = 0.15, release_s: float = 1.0,
                 on_threshold: float = 0.5, off_threshold: float = 0.3,
                 forget_s: float = 10.0):
        if not attack_s > 0 or not release_s > 0:
            raise ValueError('attack_s and release_s must be > 0')
        if not 0.0 <= off_threshold <= on_threshold <= 1.0:
            raise ValueError(f'need 0 <= off_threshold ({off_threshold}) <= on_threshold '
                             f'({on_threshold}) <= 1')
        self.attack_s, self.release_s = float(attack_s), float(release_s)
        self.on_threshold, self.off_threshold = float(on_threshold), float(off_threshold)
        self.forget_s = float(forget_s)
        self._tracks: Dict[str, _Track] = {}
        self._last_t: Optional[float] = None

    def reset(self) -> None:
        self._tracks.clear()
        self._last_t = None

    @property
    def ids(self) -> List[str]:
        return list(self._tracks)

    def _advance(self, tr: _Track, t: float, evidence: float) -> None:
        dt = t - tr.t
        if dt < 0:          # out-of-order update: apply without time evolution
            dt = 0.0
        tau = self.attack_s if evidence > tr.score else self.release_s
        alpha = 1.0 - math.exp(-dt / tau) if dt > 0 else 0.0
        tr.score += alpha * (evidence - tr.score)
        tr.t = max(tr.t, t)
        self._hysteresis(tr)

    def _hysteresis(self, tr: _Track) -> None:
        if tr.speaking and tr.score < self.off_threshold:
            tr.speaking = False
        elif not tr.speaking and tr.score >= self.on_threshold:
            tr.speaking = True

    def update(self, t: float, evidence: Dict[str, float], face_ids: Iterable[str]) -> None:
        """One sound update at time t (s): ``evidence`` {face id: e in [0, 1]} for matched
        faces; every other id in ``face_ids`` (the faces visible at t) gets evidence 0."""
        ids = set(face_ids) | set(evidence)
        for fid in ids:
            e = float(np.clip(evidence.get(fid, 0.0), 0.0, 1.0))
            tr = self._tracks.get(fid)
            if tr is None:   # a new face starts at 0 at the previous update time
                t0 = t if self._last_t is None or self._last_t > t else self._last_t
                tr = self._tracks[fid] = _Track(score=0.0, t=t0, last_seen=t)
            tr.last_seen = max(tr.last_seen, t)
            self._advance(tr, t, e)
        self._last_t = t if self._last_t is None else max(self._last_t, t)
        self._forget(t)

    def _forget(self, t: float) -> None:
        for fid in [k for k, tr in self._tracks.items() if t - tr.last_seen > self.forget_s]:
            del self._tracks[fid]

    def score(self, face_id: str, t: Optional[float] = None) -> float:
        """Score at time t (decayed with ``release_s`` since the last update; no state change)."""
        tr = self._tracks.get(face_id)
        if tr is None:
            return 0.0
        if t is None or t <= tr.t:
            return tr.score
        return tr.score * math.exp(-(t - tr.t) / self.release_s)

    def is_speaking(self, face_id: str, t: Optional[float] = None) -> bool:
        """Hysteresis state at time t (the decayed score must stay >= off_threshold)."""
        tr = self._tracks.get(face_id)
        if tr is None:
            return False
        s = self.score(face_id, t)
        return s >= self.off_threshold if tr.speaking else s >= self.on_threshold


# ----------------------------------------------------------------------------- time alignment
class TimedBuffer(Generic[T]):
    """Stamped items (time in s) kept for ``history_s``; ``closest(t, tol)`` finds the item
    nearest in time. A stamp going backwards by more than ``history_s`` (bag loop, sim time
    reset) clears the buffer."""

    def __init__(self, history_s: float = 2.0, max_items: int = 1000):
        self.history_s = float(history_s)
        self.max_items = int(max_items)
        self._t: List[float] = []
        self._items: List[T] = []

    def __len__(self) -> int:
        return len(self._t)

    def clear(self) -> None:
        self._t.clear()
        self._items.clear()

    def add(self, t: float, item: T) -> bool:
        """Insert; returns True when the buffer was cleared by a backward time jump."""
        jumped = bool(self._t) and t < self._t[-1] - self.history_s
        if jumped:
            self.clear()
        k = bisect.bisect_right(self._t, t)
        self._t.insert(k, t)
        self._items.insert(k, item)
        newest = self._t[-1]
        while self._t and (self._t[0] < newest - self.history_s or len(self._t) > self.max_items):
            self._t.pop(0)
            self._items.pop(0)
        return jumped

    def latest(self) -> Optional[Tuple[float, T]]:
        return (self._t[-1], self._items[-1]) if self._t else None

    def closest(self, t: float, tolerance: float) -> Optional[Tuple[float, T]]:
        if not self._t:
            return None
        k = bisect.bisect_left(self._t, t)
        cands = [i for i in (k - 1, k) if 0 <= i < len(self._t)]
        i = min(cands, key=lambda i: abs(self._t[i] - t))
        if abs(self._t[i] - t) > tolerance:
            return None
        return self._t[i], self._items[i]


# ----------------------------------------------------------------------------- face ids
def iou(a: Face, b: Face) -> float:
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0


class _BoxIndex:
    """Boxes indexed by size level and grid cell, to find the ones a box may overlap with an
    IoU >= ``min_iou`` (> 0) without looking at every box.

    IoU >= t needs intersection >= t * union, so each box's longer side is at least t times the
    other's: with level e = frexp(longer side)[1] (2^(e-1) <= side < 2^e) the levels of such
    boxes differ by at most ``span`` = ceil(log2(1 / t)) + 1. A box is filed under the cells of
    side 2^e it covers at its own level (at most 2 x 2); a query looks at the cells it covers at
    each level within ``span`` of its own. Boxes with a non-finite or empty size are not filed
    (their IoU with anything is 0 or NaN).
    """

    def __init__(self, min_iou: float):
        self.span = int(math.ceil(math.log2(1.0 / min_iou))) + 1
        self._cells: Dict[Tuple[int, int, int], List[int]] = {}

    @staticmethod
    def _level(f: Face) -> Optional[int]:
        m = max(f.w, f.h)
        if not (math.isfinite(m) and m > 0 and math.isfinite(f.u) and math.isfinite(f.v)):
            return None
        return math.frexp(m)[1]

    @staticmethod
    def _cells_of(f: Face, e: int):
        size = math.ldexp(1.0, e)
        x0, y0, x1, y1 = f.box
        for cx in range(math.floor(x0 / size), math.floor(x1 / size) + 1):
            for cy in range(math.floor(y0 / size), math.floor(y1 / size) + 1):
                yield (e, cx, cy)

    def add(self, k: int, f: Face) -> None:
        e = self._level(f)
        if e is not None:
            for c in self._cells_of(f, e):
                self._cells.setdefault(c, []).append(k)

    def candidates(self, f: Face) -> List[int]:
        """Indices of the filed boxes that may overlap ``f`` enough, in filing order."""
        e = self._level(f)
        if e is None:
            return []
        found = set()
        for level in range(e - self.span, e + self.span + 1):
            for c in self._cells_of(f, level):
                found.update(self._cells.get(c, ()))
        return sorted(found)


class FaceIdAssigner:
    """Stable ids for faces the detector left without one (``Detection2D.id == ''``): a face
    takes the id of the remembered face it overlaps most (IoU >= ``min_iou``), otherwise a new
    ``face_<n>``. Faces are remembered for ``max_age`` frames, so a frame where the detector
    missed someone (or saw nobody) does not renumber the faces. Faces with an id keep it.

    Near-linear in the number of faces: each face is compared only with the remembered faces
    a size-level grid (:class:`_BoxIndex`) gives as possible overlaps (with ``min_iou`` <= 0
    every remembered face qualifies, and all are compared)."""

    def __init__(self, min_iou: float = 0.3, prefix: str = 'face_', max_age: int = 15):
        self.min_iou = float(min_iou)
        self.prefix = prefix
        self.max_age = int(max_age)
        self._known: Dict[str, Tuple[Face, int]] = {}   # id -> (last box, frame index)
        self._frame = 0
        self._next = 0

    def _best(self, f: Face, known: List[Tuple[str, Face]], cands: Iterable[int],
              used: set) -> Optional[str]:
        best, best_iou = None, self.min_iou
        for k in cands:
            kid, p = known[k]
            if kid in used:
                continue
            o = iou(f, p)
            if o >= best_iou:
                best, best_iou = kid, o
        return best

    def assign(self, faces: Sequence[Face]) -> List[Face]:
        self._frame += 1
        out: List[Face] = []
        used = set(f.id for f in faces if f.id)
        known = [(kid, p) for kid, (p, _) in self._known.items() if kid not in used]
        index = _BoxIndex(self.min_iou) if self.min_iou > 0 else None
        for k, (_, p) in enumerate(known if index is not None else ()):
            index.add(k, p)
        for f in faces:
            if f.id:
                out.append(f)
                continue
            cands = index.candidates(f) if index is not None else range(len(known))
            best = self._best(f, known, cands, used)
            if best is None:
                best = f'{self.prefix}{self._next}'
                self._next += 1
            used.add(best)
            out.append(replace(f, id=best))
        for f in out:
            self._known[f.id] = (f, self._frame)
        for kid in [k for k, (_, n) in self._known.items() if self._frame - n > self.max_age]:
            del self._known[kid]
        return out


def check_faces_in_image(faces: Sequence[Face], width: int, height: int,
                         margin: float = 0.5) -> Tuple[List[Face], List[str]]:
    """Keep faces whose box is finite, non-empty and whose centre lies inside a width x height
    image (boxes may be clipped by the border); returns (kept, reasons for each rejected)."""
    kept, bad = [], []
    for f in faces:
        vals = (f.u, f.v, f.w, f.h)
        if not all(np.isfinite(vals)):
            bad.append(f'{f.id or "face"}: non-finite box {vals}')
        elif f.w <= 0 or f.h <= 0:
            bad.append(f'{f.id or "face"}: empty box {f.w}x{f.h}')
        elif not (-margin <= f.u <= width - 1 + margin and -margin <= f.v <= height - 1 + margin):
            bad.append(f'{f.id or "face"}: centre ({f.u:.1f}, {f.v:.1f}) outside the '
                       f'{width}x{height} image')
        else:
            kept.append(f)
    return kept, bad


def covariance_from_flat(cov6x6: Sequence[float]) -> Optional[np.ndarray]:
    """The (u, v) block of a row-major 6x6 PoseWithCovariance covariance, or None if it is all
    zero / non-finite (producer gave none)."""
    c = np.asarray(cov6x6, float).reshape(-1)
    if c.size < 8:
        return None
    C = np.array([[c[0], c[1]], [c[6], c[7]]])
    if not np.all(np.isfinite(C)) or (C[0, 0] <= 0 and C[1, 1] <= 0):
        return None
    return 0.5 * (C + C.T)

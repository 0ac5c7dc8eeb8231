"""Voice tracking: per-window direction estimates in, voices with stable ids out.

The localiser answers each window on its own. :class:`VoiceTracker` joins those answers over time
into **voices**: tracks with stable string ids (``"v1"``, ``"v2"``, ...), the unit ROS4HRI
(REP 155) calls a voice. It is pure (numpy + scipy), knows nothing of ROS, and is driven by the
stream of windows in stamp order::

    from sbm_ros.core.tracker import VoiceTracker, TrackerParams, Detection

    tracker = VoiceTracker(TrackerParams())            # defaults below
    for stamp, estimate, speech_prob in windows:       # stamps in seconds, increasing
        dets = [Detection(az, el, cov) for (az, el), cov in estimate]   # 0, 1 or 2 sources
        out = tracker.update(stamp, dets, speech=speech_prob)
        out.voices        # list of Voice (confirmed tracks): id, az/el, velocity, covariance,
                          # is_speaking, last_seen, n_updates, ...
        out.assignments   # per detection: the voice id it fed, or None
        out.born, out.died  # ids that appeared / disappeared at this update

Call :meth:`VoiceTracker.update` for **every** window, also when the localiser gave no estimate
(``detections=[]``): time passes, voices stop speaking and die by the clock of the stamps.
``speech`` is the window's speech activity (a bool or a probability, see :mod:`.vad`); a window
that is not speech (``speech < speech_threshold``) feeds no voice: its detections are returned
unassigned (still localised, typed by the caller), and tracks are only predicted.

The model (all parameters in :class:`TrackerParams`):

* **State** per track: ``(az, el, v_az, v_el)`` in degrees and degrees/s with a 4 x 4 covariance,
  a Kalman filter with **mean-reverting velocity** (Ornstein-Uhlenbeck, time constant
  ``velocity_tau_s``): a walking talker is followed, and during a pause the velocity decays so a
  silent voice does not drift away. Process noise: white acceleration of ``accel_std`` deg/s^2.
  The position standard deviation is capped at ``max_position_std_deg`` during long silences.
* **Measurement** covariance: the estimate's own 2 x 2 covariance times ``cov_scale`` plus a
  floor ``cov_floor_deg``^2 on the diagonal. The GLLiM posterior covariance is too small (the
  model's sigma2 is fitted on temporal means), so the floor dominates in practice; a missing or
  non-finite covariance uses the floor alone.
* **Assignment**: per window, detections to confirmed tracks by
  :func:`scipy.optimize.linear_sum_assignment` on the negative log-likelihood of the innovation
  (Mahalanobis distance + log det S, S in deg^2), pairs outside the chi-square gate ``gate_chi2``
  (2 dof) excluded, and each detection may instead go to "no voice" at the cost
  ``new_voice_cost``: a detection far from a voice (with the defaults about 5.5 deg from a voice
  just heard, 6 deg from one silent for seconds) is not pulled into it. Then the leftovers go
  to tentative tracks the same way. The assignment does not look at
  the order of the detections, so the two-source estimate's canonical order flipping as two
  talkers cross cannot swap identities; the velocity carries each track through the crossing.
* **Birth**: an unassigned speech detection starts a *tentative* track; it is confirmed (gets an
  id, appears in ``voices``) after ``birth_hits`` detections within ``birth_window_s``. A
  tentative track not fed for ``tentative_timeout_s`` is dropped. Nothing is born within
  ``min_separation_deg`` of a confirmed voice (the spurious second source of a one-talker
  window): such a detection starts no track, and a tentative track that comes that close to a
  confirmed voice (or to one confirmed at the same update) is dropped.
  With ``birth_before_speech`` (default) the detections of windows that are not speech feed
  tentative tracks too (never a voice, and a tentative track is only confirmed at a speech
  window): the localiser answers 0.1-0.2 s before the speech detector has filled its block, so
  those hits are already in when the speech decision comes, and a new talker's voice is born
  (and speaking) at the first speech window instead of ``birth_hits`` - 1 windows later.
  ``sbm-bench --only voices`` (webrtc3, demo models): rise max 0.36 -> 0.28 s on the demo
  scene, 0.36 -> 0.32 on return, 0.36 -> 0.34 on noises (the new voices' first utterances).
* **Reclaim**: a tentative track due for confirmation continues, instead, the nearest confirmed
  voice within ``reclaim_deg`` that was not fed at this update but was fed within the last
  ``reclaim_within_s`` (the voice takes the track's state; no new id). The talker's estimates
  have jumped away from his voice (a two-source estimate's first windows, the window mixing two
  talkers' turns as they cross, an elevation error) and the voice was pulled or left behind:
  without this, he would get a new id. The price: somebody new who starts talking within
  ``reclaim_deg`` of a voice heard in the last ``reclaim_within_s`` takes over that voice's id.
  ``sbm-bench --only voices`` (webrtc3, demo models): id switches on the crossing scene 4 -> 2,
  unchanged (0) on the demo, return and noises scenes; with the quick models the demo scene's
  switch (a new id for Beatrice as the first overlap begins) goes away too.
* **Death**: a confirmed voice not fed by a speech detection for ``death_timeout_s`` dies; a
  talker who comes back after that gets a new id (a person manager re-identifies voices).
* **is_speaking**: rises at the first speech detection assigned to the voice (with its
  confirmation for a new voice); falls as soon as a window is not speech, or when the voice has
  not been *heard* for ``speaking_hold_s``. A detection hears its voice unless its ``share`` of
  the newest audio (:attr:`sbm_ros.core.localizer.SourceEstimate.share`, 1 when unknown) is
  below ``min_share``: when one of two talkers stops, the localiser's window still holds his
  speech for up to 1.2 s and its two-source answers keep his direction, which kept his voice
  fed, and speaking, until the other talker stopped too. (A one-source answer's share is the
  active fraction of the newest audio: it falls as the talker's audio fades, whatever the
  speech detector's hangover.) Such a detection still feeds the voice (position, death clock,
  no new voice). ``sbm-bench --only voices`` replayed on the
  stored localiser output (webrtc3, demo models): overlapped fall max 0.61 -> 0.42 s (demo),
  0.57 -> 0.34 (crossing), 1.07 -> 0.43 (return); blocks where a voice speaks while its person
  is silent (more than 0.5 s after / 0.1 s before an utterance) 54 -> 13 on the crossing
  scene, 34 -> 0 on noises, 14 -> 10 on return, 3 -> 0 on the demo.
* **Bad input**: detections with non-finite positions are ignored (counted in
  ``VoiceTracker.n_rejected``); a stamp going back by more than ``reset_backward_s`` (a bag
  replayed in a loop) resets the tracker (``TrackerUpdate.reset`` is True, every voice dies);
  a smaller step back is treated as no time passing.

Assignment library: ``scipy.optimize.linear_sum_assignment`` (scipy is already a dependency).
``filterpy`` or ``stonesoup`` were not used: at most two detections per window and a 4-state
linear filter need a dozen lines of Kalman algebra, while the parts that matter here (birth on
speech only, is_speaking, order-free two-source assignment, death by stamp clock) would be
custom code around either library anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["TrackerParams", "Detection", "Voice", "TrackerUpdate", "VoiceTracker"]

_BIG = 1e9


@dataclass
class TrackerParams:
    """Settings of :class:`VoiceTracker` (degrees, seconds); see the module docstring."""

    birth_hits: int = 3                 # detections that confirm a tentative track ...
    birth_window_s: float = 0.5         # ... within this time
    tentative_timeout_s: float = 0.3    # a tentative track not fed for this long is dropped
    death_timeout_s: float = 8.0        # a voice with no speech detection for this long dies
    gate_chi2: float = 13.8             # chi-square gate (2 dof; 13.8 = 99.9 %)
    min_separation_deg: float = 4.0     # no birth this close to a confirmed voice
    cov_scale: float = 1.0              # x the estimate's own covariance ...
    cov_floor_deg: float = 2.5          # ... + this std^2 on the diagonal
    accel_std: float = 3.0              # process noise: white acceleration (deg/s^2)
    velocity_tau_s: float = 2.5         # velocity decays with this time constant
    init_speed_std: float = 5.0         # prior std of a new track's velocity (deg/s)
    max_position_std_deg: float = 3.0   # cap on the position std during silences
    new_voice_cost: float = 8.0         # a detection costlier than this to a voice starts anew
    speaking_hold_s: float = 0.25       # is_speaking falls this long after the last detection
    #                                     that heard the voice ...
    min_share: float = 0.15            # ... one with a smaller share of the newest audio
    #                                     feeds the voice without hearing it (0 = off)
    speech_threshold: float = 0.5       # speech >= this: the window may feed voices
    reset_backward_s: float = 1.0       # a stamp this far back resets the tracker
    reclaim_deg: float = 12.0           # a track due for birth this close to a voice not fed
    #                                     now continues that voice instead (0 = off) ...
    reclaim_within_s: float = 3.0       # ... if that voice was fed this recently
    birth_before_speech: bool = True    # non-speech windows' detections are birth hits too
    id_prefix: str = "v"

    def __post_init__(self):
        for name in ("birth_window_s", "tentative_timeout_s", "death_timeout_s", "gate_chi2",
                     "min_separation_deg", "cov_floor_deg", "velocity_tau_s", "new_voice_cost",
                     "max_position_std_deg", "reset_backward_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"TrackerParams.{name} must be a finite number > 0, got {v!r}")
        for name in ("cov_scale", "accel_std", "init_speed_std", "speaking_hold_s",
                     "reclaim_deg", "reclaim_within_s", "min_share"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"TrackerParams.{name} must be a finite number >= 0, got {v!r}")
        if not (isinstance(self.birth_hits, int) and self.birth_hits >= 1):
            raise ValueError(f"TrackerParams.birth_hits must be an integer >= 1, "
                             f"got {self.birth_hits!r}")
        if not 0.0 <= float(self.speech_threshold) <= 1.0:
            raise ValueError(f"TrackerParams.speech_threshold must be in [0, 1], "
                             f"got {self.speech_threshold!r}")


@dataclass
class Detection:
    """One source of one window: direction (degrees, az LEFT+, el UP+) and its covariance."""

    azimuth_deg: float
    elevation_deg: float
    covariance: Optional[np.ndarray] = None     # (2, 2) deg^2; None: the floor only
    confidence: float = 1.0
    pixel: Optional[tuple] = None               # (u, v) if known, carried to the voice
    share: float = 1.0                          # of the newest audio (two-source answers)

    @property
    def position(self) -> np.ndarray:
        return np.array([self.azimuth_deg, self.elevation_deg], dtype=float)

    @property
    def valid(self) -> bool:
        try:
            return bool(np.all(np.isfinite(self.position)))
        except (TypeError, ValueError):
            return False


@dataclass
class Voice:
    """A confirmed track as seen after an update (a snapshot; safe to keep)."""

    id: str
    azimuth_deg: float
    elevation_deg: float
    velocity_deg_s: tuple                       # (v_az, v_el)
    covariance: np.ndarray                      # (2, 2) position covariance, deg^2
    is_speaking: bool
    last_seen: float                            # stamp of the last speech detection
    first_seen: float                           # stamp of the track's first detection
    n_updates: int
    confidence: float = 0.0                     # of the last detection
    pixel: Optional[tuple] = None               # of the last detection, if it had one


@dataclass
class TrackerUpdate:
    stamp: float
    voices: List[Voice]
    assignments: List[Optional[str]]           # per input detection: voice id or None
    born: List[str] = field(default_factory=list)
    died: List[str] = field(default_factory=list)
    speech: bool = False
    reset: bool = False


class _Track:
    __slots__ = ("x", "P", "t", "id", "hits", "first", "last", "n", "conf", "pixel",
                 "speaking", "heard")

    def __init__(self, z, R, stamp, params: TrackerParams):
        self.x = np.array([z[0], z[1], 0.0, 0.0])
        self.P = np.zeros((4, 4))
        self.P[:2, :2] = R
        self.P[2, 2] = self.P[3, 3] = params.init_speed_std ** 2
        self.t = stamp
        self.id: Optional[str] = None
        self.hits = [stamp]
        self.first = self.last = stamp
        self.n = 1
        self.conf = 0.0
        self.pixel = None
        self.speaking = False
        self.heard = -math.inf          # stamp of the last detection that heard the track


class VoiceTracker:
    """Voices with stable ids from per-window estimates (see the module docstring)."""

    def __init__(self, params: Optional[TrackerParams] = None):
        self.params = params or TrackerParams()
        self._tracks: List[_Track] = []
        self._next_id = 1
        self._stamp: Optional[float] = None
        self.n_rejected = 0

    # ------------------------------------------------------------------ public
    @property
    def voices(self) -> List[Voice]:
        """The confirmed voices after the last update."""
        return [self._snapshot(t) for t in self._tracks if t.id is not None]

    def reset(self) -> List[str]:
        """Forget every track (ids keep counting up); returns the ids of the voices that died."""
        died = [t.id for t in self._tracks if t.id is not None]
        self._tracks = []
        self._stamp = None
        return died

    def update(self, stamp: float, detections: Sequence[Detection] = (),
               speech=True) -> TrackerUpdate:
        """One window: ``stamp`` (s), its 0..2 :class:`Detection`, its speech activity."""
        p = self.params
        stamp = float(stamp)
        if not math.isfinite(stamp):
            raise ValueError(f"stamp must be finite, got {stamp!r}")
        reset = False
        died: List[str] = []
        if self._stamp is not None and stamp < self._stamp:
            if self._stamp - stamp > p.reset_backward_s:
                died = self.reset()
                reset = True
            else:
                stamp = self._stamp
        self._stamp = stamp
        is_speech = self._speech_flag(speech)
        dets = list(detections or [])
        assignments: List[Optional[str]] = [None] * len(dets)
        for trk in self._tracks:
            self._predict(trk, stamp)
        born: List[str] = []
        if is_speech:
            born = self._associate(stamp, dets, assignments)
        elif p.birth_before_speech:
            self._associate(stamp, dets, [None] * len(dets), speech=False)
        else:
            self.n_rejected += sum(1 for d in dets if not self._usable(d))
        died += self._prune(stamp)
        for trk in self._tracks:
            heard = trk.heard == stamp and trk.id is not None and is_speech
            if heard:
                trk.speaking = True
            elif not is_speech or stamp - trk.heard > p.speaking_hold_s:
                trk.speaking = False
        return TrackerUpdate(stamp=stamp, voices=self.voices, assignments=assignments, born=born,
                             died=died, speech=is_speech, reset=reset)

    # ------------------------------------------------------------------ internals
    def _speech_flag(self, speech) -> bool:
        if isinstance(speech, (bool, np.bool_)):
            return bool(speech)
        try:
            v = float(speech)
        except (TypeError, ValueError):
            raise ValueError(f"speech must be a bool or a probability, got {speech!r}") from None
        if not math.isfinite(v):
            return False
        return v >= self.params.speech_threshold

    def _usable(self, d) -> bool:
        return isinstance(d, Detection) and d.valid

    def _meas_cov(self, d: Detection) -> np.ndarray:
        p = self.params
        R = np.eye(2) * p.cov_floor_deg ** 2
        C = d.covariance
        if C is not None:
            C = np.asarray(C, dtype=float)
            if C.shape == (2, 2) and np.all(np.isfinite(C)):
                C = 0.5 * (C + C.T)
                w, V = np.linalg.eigh(C)
                R = R + p.cov_scale * (V * np.clip(w, 0.0, None)) @ V.T
        return R

    def _predict(self, trk: _Track, stamp: float) -> None:
        dt = stamp - trk.t
        if dt <= 0:
            return
        p = self.params
        phi = math.exp(-dt / p.velocity_tau_s)
        g = p.velocity_tau_s * (1.0 - phi)
        F = np.eye(4)
        F[0, 2] = F[1, 3] = g
        F[2, 2] = F[3, 3] = phi
        q = p.accel_std ** 2
        Q1 = q * np.array([[dt ** 3 / 3.0, dt ** 2 / 2.0], [dt ** 2 / 2.0, dt]])
        Q = np.zeros((4, 4))
        for i in (0, 1):
            Q[np.ix_([i, i + 2], [i, i + 2])] = Q1
        trk.x = F @ trk.x
        trk.P = F @ trk.P @ F.T + Q
        cap = p.max_position_std_deg ** 2
        for i in (0, 1):
            if trk.P[i, i] > cap:
                s = math.sqrt(cap / trk.P[i, i])
                trk.P[i, :] *= s
                trk.P[:, i] *= s
        trk.t = stamp

    def _nll(self, trk: _Track, z, R):
        S = trk.P[:2, :2] + R
        r = z - trk.x[:2]
        try:
            d2 = float(r @ np.linalg.solve(S, r))
        except np.linalg.LinAlgError:
            return _BIG, _BIG
        return d2, d2 + math.log(max(np.linalg.det(S), 1e-12))

    def _assign(self, tracks: List[_Track], idx: List[int], zs, Rs, gate: float):
        """Pairs (track, detection index) inside ``gate``, minimum total cost; a detection
        may stay unassigned at ``new_voice_cost`` (one "none" row per detection)."""
        if not tracks or not idx:
            return []
        n = len(tracks)
        cost = np.full((n + len(idx), len(idx)), _BIG)
        for a, trk in enumerate(tracks):
            for b, j in enumerate(idx):
                d2, c = self._nll(trk, zs[j], Rs[j])
                if d2 <= gate:
                    cost[a, b] = c
        cost[n + np.arange(len(idx)), np.arange(len(idx))] = self.params.new_voice_cost
        rows, cols = linear_sum_assignment(cost)
        return [(tracks[a], idx[b]) for a, b in zip(rows, cols) if a < n and cost[a, b] < _BIG]

    def _correct(self, trk: _Track, z, R, d: Detection, stamp: float) -> None:
        H = np.zeros((2, 4))
        H[0, 0] = H[1, 1] = 1.0
        S = trk.P[:2, :2] + R
        K = trk.P @ H.T @ np.linalg.inv(S)
        trk.x = trk.x + K @ (z - trk.x[:2])
        IKH = np.eye(4) - K @ H
        trk.P = IKH @ trk.P @ IKH.T + K @ R @ K.T          # Joseph form
        trk.last = stamp
        trk.n += 1
        trk.hits.append(stamp)
        trk.conf = float(d.confidence) if d.confidence is not None else 0.0
        trk.pixel = tuple(d.pixel) if d.pixel is not None else None
        if self._hears(d):
            trk.heard = stamp

    def _hears(self, d: Detection) -> bool:
        """False for a detection with a share of the newest audio below ``min_share``."""
        try:
            share = float(d.share)
        except (TypeError, ValueError):
            return True
        return not share < self.params.min_share            # NaN: unknown, heard

    def _associate(self, stamp, dets, assignments, speech: bool = True) -> List[str]:
        """Detections to voices, then to tentative tracks, the rest start tentative tracks.
        ``speech`` False (a window that is not speech, ``birth_before_speech``): no voice is
        fed nor confirmed, only the tentative tracks are (their hits count at the next speech
        window)."""
        p = self.params
        ok = []
        for j, d in enumerate(dets):
            if self._usable(d):
                ok.append(j)
            else:
                self.n_rejected += 1
        zs = {j: dets[j].position for j in ok}
        Rs = {j: self._meas_cov(dets[j]) for j in ok}
        confirmed = [t for t in self._tracks if t.id is not None]
        tentative = [t for t in self._tracks if t.id is None]
        free = list(ok)
        for trk, j in self._assign(confirmed, free, zs, Rs, p.gate_chi2):
            if speech:
                self._correct(trk, zs[j], Rs[j], dets[j], stamp)
                assignments[j] = trk.id
            free.remove(j)
        born = []
        dropped = []
        for trk, j in self._assign(tentative, free, zs, Rs, p.gate_chi2):
            self._correct(trk, zs[j], Rs[j], dets[j], stamp)
            free.remove(j)
            if self._near(trk.x[:2], confirmed):
                dropped.append(trk)
                continue
            trk.hits = [h for h in trk.hits if stamp - h <= p.birth_window_s]
            if speech and len(trk.hits) >= p.birth_hits:
                old = self._reclaimer(trk, confirmed, stamp)
                if old is not None:
                    old.x, old.P, old.t = trk.x.copy(), trk.P.copy(), trk.t
                    old.last, old.n = stamp, old.n + len(trk.hits)
                    old.heard = max(old.heard, trk.heard)
                    old.conf, old.pixel = trk.conf, trk.pixel
                    dropped.append(trk)
                    assignments[j] = old.id
                    continue
                trk.id = f"{p.id_prefix}{self._next_id}"
                self._next_id += 1
                born.append(trk.id)
                confirmed.append(trk)
            assignments[j] = trk.id
        self._tracks = [t for t in self._tracks if all(t is not d for d in dropped)]
        for j in free:
            if self._near(zs[j], confirmed):
                continue
            trk = _Track(zs[j], Rs[j], stamp, p)
            if self._hears(dets[j]):
                trk.heard = stamp
            trk.conf = float(dets[j].confidence or 0.0)
            trk.pixel = tuple(dets[j].pixel) if dets[j].pixel is not None else None
            if speech and p.birth_hits <= 1:
                trk.id = f"{p.id_prefix}{self._next_id}"
                self._next_id += 1
                born.append(trk.id)
                assignments[j] = trk.id
            self._tracks.append(trk)
        return born

    def _reclaimer(self, trk: _Track, confirmed, stamp: float) -> Optional[_Track]:
        """The confirmed voice, not fed at ``stamp``, nearest to ``trk`` within
        ``reclaim_deg`` (None: none, or reclaiming off)."""
        lim = self.params.reclaim_deg
        best, out = lim, None
        for t in confirmed:
            if t.last >= stamp or stamp - t.last > self.params.reclaim_within_s:
                continue
            d = float(np.hypot(*(trk.x[:2] - t.x[:2])))
            if d <= best:
                best, out = d, t
        return out

    def _near(self, z, confirmed) -> bool:
        lim = self.params.min_separation_deg
        return any(float(np.hypot(*(np.asarray(z) - t.x[:2]))) < lim for t in confirmed)

    def _prune(self, stamp) -> List[str]:
        p = self.params
        keep, died = [], []
        for t in self._tracks:
            if t.id is None:
                if stamp - t.last <= p.tentative_timeout_s:
                    keep.append(t)
            elif stamp - t.last <= p.death_timeout_s:
                keep.append(t)
            else:
                died.append(t.id)
        self._tracks = keep
        return died

    def _snapshot(self, t: _Track) -> Voice:
        return Voice(id=t.id, azimuth_deg=float(t.x[0]), elevation_deg=float(t.x[1]),
                     velocity_deg_s=(float(t.x[2]), float(t.x[3])),
                     covariance=t.P[:2, :2].copy(), is_speaking=bool(t.speaking),
                     last_seen=float(t.last), first_seen=float(t.first), n_updates=int(t.n),
                     confidence=float(t.conf), pixel=t.pixel)

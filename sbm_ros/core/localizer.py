"""Streaming localisers: audio in, direction (or pixel) estimates out.

:class:`SBMLocalizer` chains the streaming feature extractor, the adaptive activity mask, the
sliding-window sufficient statistics and the precomputed Theorem-1 engine. Pushing audio costs
O(D) per STFT frame; an estimate costs O(K D L^2) whatever the window length.

Choices where the paper is silent:

* **Activity mask.** ``chi_ft = 1`` iff ``|L|^2 + |R|^2 >= eps_f``. ``eps_f`` is, by default, a
  running low percentile of each bin's power over the last ``noise_window_s`` seconds times
  ``mask_margin_db`` (minimum statistics, so the node adapts to the room). A fixed per-bin noise
  floor (e.g. the time-averaged PSD of a noise-only recording, as in the paper) can be given
  instead with ``noise_floor=``.
* **Silence.** No estimate is returned unless the window holds at least ``min_fill`` of its
  frames and a fraction ``min_active_fraction`` of its (frame, bin) entries is active.
* **Confidence.** ``1 / (1 + r / confidence_scale)`` with ``r`` the RMS posterior standard
  deviation of the source (square root of the mean diagonal of its covariance block), in target
  units; ``confidence_scale`` defaults to 2 degrees, or 2 degrees' worth of pixels.
* **Reported covariance.** The posterior covariance times the model's ``cov_scale`` (and the
  posterior's fit ratio), plus the model's variance floor ``cov_floor`` per target dimension when
  it has one (one-source models from ``sbm-train`` on one-dimensional fields: the error of
  windows of its own training recordings, :func:`.calibration.window_floor`).
* **Outside the recorded field.** A model written by ``sbm-train`` stores the field it was
  calibrated on (``info["field"]``: bounding box of the positions and a margin of one grid step,
  at least a tenth of the span, per target dimension). GLLiM extrapolates linearly, and with few
  positions a window unlike the training data can land a posterior mean anywhere (hundreds of
  millions of degrees were seen with K = 32 on 37 recordings). Estimates are therefore
  **clipped and flagged**: ``outside_by`` is the distance of the raw posterior mean to the
  bounding box (target units), ``in_field`` is False when it exceeds the margin, and the
  published position is clipped to the box plus the margin; the squared clipping offset is
  added to the covariance diagonal so the reported uncertainty still covers the raw answer. A
  non-finite mean is published at the field's centre, ``in_field`` False, confidence 0. Models
  without a field (older files, the benchmark's own models) are not clipped.
* **Two sources.** The L = 4 posterior mean is split into two sources in the model's canonical
  order; each source's covariance is the matching 2 x 2 block of the mixture covariance.
* **Automatic source count** (``n_sources=0`` with a one-source ``model`` and a two-source
  ``model_two`` of the same feature settings): the two-source answer is kept when its
  log-evidence ``log p(S | model)`` exceeds the one-source one by more than
  ``auto_threshold`` nats per active time-frequency entry, and the two estimates are at least
  ``auto_min_separation`` apart (target units); otherwise the one-source answer is reported.
  The GLLiM ``sigma2`` is fitted on temporal-mean vectors and understates how much single
  frames scatter (more so for one source than for mixtures), which biases a raw evidence
  comparison towards two sources. When both models carry ``frame_var`` (sbm-train stores
  it), the evidence is therefore evaluated with ``sigma2 + frame_var``: on the virtual head
  this moved the median per-entry ratio to 0.08 for one talker and 0.28 for two (and 0.7
  during the demo's overlaps, where the 10th percentile was 0.37); the default threshold 0.3
  keeps one-talker windows at about 6 % two-source answers. The estimates themselves always
  come from the models' own ``sigma2``.
* **Speech onset** (``onset_gap_s``, on by default in the automatic mode only: 0.12 s): when an
  active frame follows at least ``onset_gap_s`` of quiet frames (fewer than
  ``min_active_fraction`` of their bins active), the window's frames older than that gap are
  dropped if they hold enough activity for an estimate of their own (the previous talker's
  turn), and no estimate is given until ``onset_min_s`` (0.12 s) of new frames are in; the window
  then grows back to its full length. Without this the 1.2 s window of the automatic mode kept
  answering with the previous talker's direction for up to 0.8 s into the next talker's turn
  (or with a two-source answer mixing the two turns), so a voice tracker gave the new talker's
  first words to the previous talker's voice. ``sbm-bench --only voices`` (demo models): id
  switches on the crossing scene 2 -> 0 for every speech-activity detector; a pause within one
  talker's speech costs nothing but the ``onset_min_s`` wait. ``onset_gap_s=0`` turns it off.
  ``onset_min_s`` was 0.2 s: the new talker's first estimate then came 0.22-0.26 s into his
  turn, and with the tracker's birth hits his voice rose 0.32 s after his onset; at 0.12 s
  (``sbm-bench --only voices``, demo models, webrtc3) rise max on the return scene 0.32 -> 0.28 s,
  crossing utterance 6 0.32 -> 0.28, switches, found, spurious and ghosts unchanged for every
  speech-activity detector.
* **Second talker joining** (``join_s``, automatic mode only: 0.4 s): when the window's
  evidence picks one source, the newest ``join_s`` of the window is tested on its own: if its
  evidence ratio exceeds ``join_threshold`` (0.5, stricter than ``auto_threshold``: short
  windows scatter more) and its two-source estimate's sources are ``auto_min_separation``
  apart, that two-source answer is given. A talker who starts while another one talks fills
  only a small part of the 1.2 s window, which kept answering with the first talker alone
  for 0.4-0.6 s (and its first two-source answers put the newcomer at a wrong elevation);
  0.4 s windows of two talkers pass 0.5 in most windows, of one talker in about 1 %.
  ``sbm-bench --only voices`` (webrtc3, demo models), overlapped rise max: demo 0.65 -> 0.29 s,
  return 0.38 -> 0.30 (now dario's own start), crossing: bruno joining 0.64 -> 0.28 (the max,
  0.68, is alice's start, alone, late in the speech detector); windows of one talker with a
  two-source answer 8.5 -> 9.7 %, of two talkers 84 -> 96 %. Cost: two evidence evaluations
  of the 0.4 s statistics per one-source answer (demo scene at 25 estimates/s: estimate CPU
  0.86 -> 1.24 s per 30 s of audio).
* **The newest audio decides** (automatic mode, with ``join_s``): two more cases where the
  window's older part outweighs what is heard now. (1) A two-source answer one of whose
  sources holds less than ``stale_share`` (0.02) of the newest audio (see the share below: a
  talker or a sound that stopped, with no quiet gap for the onset rule, e.g. under a fan that
  keeps frames active) is replaced by the answer of the newest ``join_s`` alone (two sources
  if it passes the ``join_s`` test above, else one). (2) A one-source answer more than
  ``turn_deg`` (5 degrees; for a pixel model its equivalent at the camera's focal length;
  0 = off) from the one-source answer of the newest ``join_s`` is replaced by the latter: a turn
  taken without a pause, where the 1.2 s window's answer stays with the previous talker (or
  drifts from him to the next one) for over half a second.
  ``sbm-bench --only voices`` replayed on the scenes (webrtc3, demo models): noises, erik's
  return at 23.5 s under the fan (and a clap) rise 0.34 -> 0.26 s (stale rule; at 0.04-0.06
  instead of 0.02 a spurious voice appears).
  Turn rule, crossing scene (alice at (-4, 3), bruno at (6, -3), 11.7 deg apart): bruno starts
  0.02 s after alice's 1.08 s utterance 10 stopped (13.88 s); the 1.2 s window's one-source
  answers stayed 0.8-3.6 deg from alice (9-11 deg from bruno) until 14.28 s, then came two
  two-source answers and again alice's direction until 14.48 s, so the tracker fed his first
  words to her voice: her ``is_speaking`` fell 0.84 s after she stopped, his rose 0.42 s after
  he started, with every speech detector, also with every window marked speech. Neither the
  window's evidence ratio (0.02-0.28 until 14.28 s, below ``auto_threshold``) nor the
  ``join_s`` test (0.11-0.26 < 0.5: the newest 0.4 s hold the two talkers one after the
  other, not together) nor ``auto_min_separation`` (2 deg) is involved, nor the tracker (the
  detections were within 3.6 deg of alice; their share, the active fraction, 0.23-0.48, above
  ``min_share``). With ``turn_deg`` 5 the answer leaves alice at 14.08 s and is on bruno from
  14.16 s: silero_or_webrtc3, crossing, rise max 0.42 -> 0.22 s, fall max 0.84 -> 0.50 s
  (alice's utterance 10 0.84 -> 0.44; the 0.50 is bruno's utterance 11, unchanged: alice
  starts 0.14 s after him); webrtc3, crossing, bruno's utterance 11 rise 0.42 -> 0.26 s (the
  max stays 0.76 s: alice's first words that webrtc3 does not mark); noises, erik's return
  rise 0.28 -> 0.20 s (silero_or_webrtc3); every other utterance, found, switches, spurious
  voices and ghosts unchanged on the four scenes (3 and 8 deg give the same figures). The rule
  fired in 1/470 one-source answers on the demo scene, 15/340 on crossing, 1/464 on return,
  16/340 on noises. It was off until then: with ``join_s`` 0.3 or 0.5 instead of 0.4 the
  crossing scene has a ghost voice, but with 0.5 it has it without the rule too, and with 0.3
  it comes from two-source answers (alice 8 deg low at 15.3 s), not from a turn answer
  (without the rule the tracker did not confirm them). Comparing with the mean of the newest
  ``join_s``'s evidence posterior (sigma2 + frame_var, which the ``join_s`` test evaluates
  anyway) instead of its estimate would save the extra posterior, but gives 2 id switches on
  the crossing scene with webrtc3 (measured again: alice's voice taken by bruno where they are
  2-6 deg apart), so the comparison uses the estimates' posteriors.
  Cost: one more posterior of the newest ``join_s`` per one-source answer that the ``join_s``
  test did not turn into two (the four scenes at 25 estimates/s: localiser CPU +6 %).
* **Share of the newest audio** (``share_s``, automatic mode only: 0.2 s): each source gets
  ``SourceEstimate.share``, the fraction of the (frame, bin) entries of the window's newest
  ``share_s`` that are active and belong to it. For a two-source answer: the weights of a
  two-component mixture, fitted by EM to the active entries, whose components are the
  one-source model's mean features at the sources' positions (variance
  ``sigma2 + frame_var``), times the fraction of the entries that is active (0 for both
  sources when none is); for a one-source answer: that active fraction. The 1.2 s window keeps
  a talker who stopped in its two-source answers for up to 1.2 s; his share drops within about
  0.15 s (demo scene: 0.4-0.8 while he talks, 0.1-0.2 once he stopped, before the activity
  weighting); a one-source answer's share drops as the talker's audio fades. The positions
  are unchanged; the voice tracker uses the share for ``is_speaking`` (:mod:`.tracker`).
  Cost: one mixture fit over the newest 25 frames per two-source answer (~0.9 ms).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from .features import NoiseFloorTracker, StreamingFeatureExtractor
from .model import SBMModel
from .posterior import Posterior, PosteriorEngine, SlidingWindow, SufficientStats


@dataclass
class SourceEstimate:
    position: np.ndarray        # (l,) in the model's target units
    covariance: np.ndarray      # (l, l)
    confidence: float
    in_field: bool = True       # False: the posterior mean lay outside the recorded field
    outside_by: float = 0.0     # distance of the raw posterior mean to the field (target units)
    share: float = 1.0          # its share of the newest audio (automatic mode, else 1)

    def to_dict(self, names) -> dict:
        return {"position": {n: float(v) for n, v in zip(names, self.position)},
                "covariance": np.round(self.covariance, 6).tolist(),
                "confidence": round(float(self.confidence), 4),
                "in_field": bool(self.in_field),
                "outside_by": (round(float(self.outside_by), 4)
                               if np.isfinite(self.outside_by) else None),
                "share": round(float(self.share), 4)}


@dataclass
class Estimate:
    sources: List[SourceEstimate]
    active_fraction: float
    n_active: int
    end_sample: int             # index (exclusive) of the last sample in the window
    n_frames: int
    posterior: Optional[Posterior] = field(default=None, repr=False)


class SBMLocalizer:
    """Sliding-window SBM localiser for one model.

    Parameters
    ----------
    model : SBMModel
    window_s : float, optional
        Window length (default 0.72 s for one source, 1.2 s for two, as in the paper).
    min_active_fraction : float
        Minimum fraction of active (frame, bin) entries for an estimate.
    min_fill : float
        Minimum fraction of the window that must be filled with frames.
    noise_window_s, noise_percentile, mask_margin_db : float
        Adaptive noise floor (see module docstring).
    noise_refresh_s : float
        The noise floor's percentile is recomputed once per this much audio (0.5 s; every
        0.1 s while its history is filling). It moves slowly (a low percentile of the last
        ``noise_window_s``) and cost a fifth of the one-source localiser when recomputed every
        0.1 s.
    noise_floor : array (F,) or float, optional
        Fixed per-bin noise power instead of the adaptive tracker (the margin is still applied).
    confidence_scale : float, optional
        See module docstring.
    onset_gap_s, onset_min_s : float, optional
        Speech onset (see module docstring): a quiet gap this long before an active frame drops
        the older frames (default 0.12 s in the automatic mode, 0 = off otherwise); then no
        estimate until this much new audio is in (0.12 s).
    share_s : float, optional
        Share of the newest audio (see module docstring) of each source of a two-source answer,
        over this much audio (default 0.2 s in the automatic mode, 0 = off otherwise).
    join_s, join_threshold : float, optional
        Second talker joining (automatic mode, see module docstring): when the window gives one
        source, the two-source answer of its newest ``join_s`` (default 0.4 s; 0 = off, and
        the two rules below with it) is taken if its evidence ratio exceeds
        ``join_threshold`` (0.5).
    stale_share, turn_deg : float, optional
        The newest audio decides (see module docstring): a two-source answer with a source
        holding less than ``stale_share`` (0.02; 0 = off) of the newest audio, or a one-source
        answer more than ``turn_deg`` degrees (default 5; 0 = off; a pixel model with a camera
        uses the pixel distance of that angle at its focal length) from that of the newest
        ``join_s``, is replaced by the answer of the newest ``join_s``.
    """

    def __init__(self, model: SBMModel, window_s: Optional[float] = None,
                 min_active_fraction: float = 0.02, min_fill: float = 0.5,
                 noise_window_s: float = 4.0, noise_percentile: float = 10.0,
                 mask_margin_db: float = 6.0, noise_floor=None,
                 confidence_scale: Optional[float] = None,
                 model_two: Optional[SBMModel] = None, n_sources: Optional[int] = None,
                 auto_threshold: float = 0.3, auto_min_separation: Optional[float] = None,
                 onset_gap_s: Optional[float] = None, onset_min_s: float = 0.12,
                 noise_refresh_s: float = 0.5,
                 share_s: Optional[float] = None, join_s: Optional[float] = None,
                 join_threshold: float = 0.5, stale_share: float = 0.02,
                 turn_deg: float = 5.0):
        self.model = model
        cfg = model.feature_config
        self.cfg = cfg
        if n_sources is None:
            n_sources = model.n_sources
        if n_sources not in (0, 1, 2):
            raise ValueError(f"n_sources must be 0 (automatic), 1 or 2, got {n_sources}")
        if n_sources == 0:
            if model.n_sources != 1 or model_two is None or model_two.n_sources != 2:
                raise ValueError("automatic source count (n_sources=0) needs a one-source "
                                 "model and a two-source model_two")
            if model_two.feature_config != cfg:
                raise ValueError("model and model_two have different feature settings: "
                                 f"{cfg} vs {model_two.feature_config}")
            if (model_two.target_space, model_two.dims_per_source) != (
                    model.target_space, model.dims_per_source):
                raise ValueError("model and model_two have different target spaces")
        elif n_sources != model.n_sources:
            raise ValueError(f"n_sources={n_sources} but the model localises "
                             f"{model.n_sources} source(s)")
        self.n_sources = n_sources
        self.model_two = model_two if n_sources == 0 else None
        self.auto_threshold = float(auto_threshold)
        if window_s is None:
            window_s = 0.72 if n_sources == 1 else 1.2
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = float(window_s)
        self.window_frames = max(1, int(round(window_s * cfg.frame_rate)))
        self.min_active_fraction = float(min_active_fraction)
        self.min_fill = float(min_fill)
        self.mask_margin_db = float(mask_margin_db)
        self.engine = PosteriorEngine(model.params, n_bins=cfg.n_freq,
                                      noise=_noise_model(model))
        self.engine_two = None
        if self.model_two is not None:
            self.engine_two = PosteriorEngine(self.model_two.params, n_bins=cfg.n_freq)
            self.evidence_engines = (self.engine, self.engine_two)
            if model.frame_var is not None and self.model_two.frame_var is not None:
                self.evidence_engines = tuple(
                    PosteriorEngine(_with_frame_noise(m), n_bins=cfg.n_freq)
                    for m in (model, self.model_two))
        self.extractor = StreamingFeatureExtractor(cfg)
        self.tracker = NoiseFloorTracker(cfg.n_freq, cfg.frame_rate, window_s=noise_window_s,
                                         percentile=noise_percentile, margin_db=mask_margin_db,
                                         decimate=2, refresh_s=noise_refresh_s)
        self.fixed_eps = None
        if noise_floor is not None:
            nf = np.broadcast_to(np.asarray(noise_floor, dtype=np.float64), (cfg.n_freq,))
            self.fixed_eps = nf * 10 ** (mask_margin_db / 10)
        self.window = SlidingWindow(cfg.dim, self.window_frames, n_bins=cfg.n_freq)
        self._camera_fx = None              # pixels per tan(angle), for thresholds in degrees
        if model.target_space == "pixels" and model.camera:
            self._camera_fx = float(model.camera.get("fx")
                                    or np.asarray(model.camera["K"]).ravel()[0])
        if confidence_scale is None:
            confidence_scale = 2.0
            if self._camera_fx is not None:
                confidence_scale = 2.0 * self._camera_fx * np.tan(np.radians(1.0))
        self.confidence_scale = float(confidence_scale)
        if auto_min_separation is None:
            auto_min_separation = self.confidence_scale
        self.auto_min_separation = float(auto_min_separation)
        self.frames_pushed = 0
        self.last_evidence_ratio = float("nan")
        self.last_join_ratio = float("nan")
        self.field = _field_box(model)
        if onset_gap_s is None:
            onset_gap_s = 0.12 if n_sources == 0 else 0.0
        if not (np.isfinite(onset_gap_s) and onset_gap_s >= 0):
            raise ValueError(f"onset_gap_s must be >= 0, got {onset_gap_s}")
        if not (np.isfinite(onset_min_s) and onset_min_s > 0):
            raise ValueError(f"onset_min_s must be > 0, got {onset_min_s}")
        self.onset_gap_s = float(onset_gap_s)
        self.onset_min_s = float(onset_min_s)
        self._gap_frames = int(round(self.onset_gap_s * cfg.frame_rate))
        self._onset_min_frames = max(1, int(round(self.onset_min_s * cfg.frame_rate)))
        self._quiet_run = 0             # consecutive quiet frames at the window's newest end
        self._fresh: Optional[int] = None   # frames since an onset that dropped older speech
        self.n_onset_drops = 0
        if share_s is None:
            share_s = 0.2 if n_sources == 0 else 0.0
        if not (np.isfinite(share_s) and share_s >= 0):
            raise ValueError(f"share_s must be >= 0, got {share_s}")
        self.share_s = float(share_s)
        self._share_frames = int(round(self.share_s * cfg.frame_rate))
        self._forward = _ForwardMap(model) if self._share_frames > 0 else None
        if join_s is None:
            join_s = 0.4 if n_sources == 0 else 0.0
        if not (np.isfinite(join_s) and join_s >= 0):
            raise ValueError(f"join_s must be >= 0, got {join_s}")
        self.join_s = float(join_s) if n_sources == 0 else 0.0
        self.join_threshold = float(join_threshold)
        self._join_frames = int(round(self.join_s * cfg.frame_rate))
        self.n_joins = 0
        if not (np.isfinite(stale_share) and stale_share >= 0):
            raise ValueError(f"stale_share must be >= 0, got {stale_share}")
        self.stale_share = float(stale_share)
        if not (np.isfinite(turn_deg) and turn_deg >= 0):
            raise ValueError(f"turn_deg must be >= 0, got {turn_deg}")
        self.turn_deg = float(turn_deg)
        self._turn_dist = self.turn_deg          # in target units
        if self._camera_fx is not None:
            self._turn_dist = self._camera_fx * float(np.tan(np.radians(min(turn_deg, 80.0))))
        self.n_turns = 0
        self.n_stale = 0

    def reset(self, keep_noise_floor: bool = True) -> None:
        """Flush the window and the pending samples (e.g. after a time jump or a gap)."""
        self.extractor.reset()
        self.window.clear()
        self.frames_pushed = 0
        self._quiet_run = 0
        self._fresh = None
        if not keep_noise_floor:
            self.tracker.reset()

    def push_audio(self, x: np.ndarray) -> int:
        """Feed float (n, 2) audio at the model's rate; returns the number of new frames."""
        Y, P = self.extractor.push(x)
        if Y.shape[0] == 0:
            return 0
        if self.fixed_eps is not None:
            eps = self.fixed_eps
        else:
            self.tracker.update(P)
            eps = self.tracker.threshold()
        if eps is None:
            chi = np.zeros(P.shape, dtype=bool)      # noise floor not known yet: nothing active
        else:
            chi = P >= eps
        if self._gap_frames > 0:
            self._push_with_onsets(Y, chi)
        else:
            self.window.push_many(Y, chi)
        self.frames_pushed += Y.shape[0]
        return Y.shape[0]

    def _push_with_onsets(self, Y: np.ndarray, chi: np.ndarray) -> None:
        """Push frames; at a speech onset (an active frame after ``onset_gap_s`` of quiet
        frames) drop the window's frames older than the quiet gap if they hold activity."""
        w = self.window
        quiet = chi.mean(axis=1) < self.min_active_fraction
        start = 0
        dropped_at = None
        for i in range(Y.shape[0]):
            if quiet[i]:
                self._quiet_run += 1
                continue
            if self._quiet_run >= self._gap_frames:
                w.push_many(Y[start:i], chi[start:i])
                start = i
                old = w.n_frames - min(self._quiet_run, w.n_frames)
                need = self.min_active_fraction * self.window_frames * w.n_bins
                if old > 0 and w.active_in_oldest(old) >= need:
                    w.drop_oldest(old)
                    dropped_at = i
                    self.n_onset_drops += 1
            self._quiet_run = 0
        w.push_many(Y[start:], chi[start:])
        if dropped_at is not None:
            self._fresh = Y.shape[0] - dropped_at
        elif self._fresh is not None:
            self._fresh += Y.shape[0]
        if self._fresh is not None and w.n_frames >= self.window_frames:
            self._fresh = None

    @property
    def end_sample(self) -> int:
        """Exclusive index (since the last reset) of the last sample of the newest frame."""
        if self.frames_pushed == 0:
            return 0
        return (self.frames_pushed - 1) * self.cfg.hop + self.cfg.n_fft

    def estimate(self) -> Optional[Estimate]:
        """Estimate from the current window, or None when it is too empty or too silent."""
        w = self.window
        if self._fresh is not None:         # speech onset: only the new talker's frames
            if self._fresh < self._onset_min_frames:
                return None
        elif w.n_frames < max(1, int(self.min_fill * self.window_frames)):
            return None
        frac = w.active_fraction
        if frac < self.min_active_fraction:
            return None
        stats = w.stats
        post = None
        n_src = self.model.n_sources
        lps = self.model.dims_per_source
        shares = None
        if self.engine_two is not None:
            # The evidences first (log-evidence only); the one-source posterior only when it
            # is the answer (or the evidence engine).
            e1, e2 = self.evidence_engines
            if e1 is self.engine:
                post = self.engine.posterior(stats)
                ev1 = post.log_evidence
            else:
                ev1 = e1.log_evidence(stats)
            ratio = (e2.log_evidence(stats) - ev1) / max(stats.n_active, 1)
            self.last_evidence_ratio = ratio
            if ratio > self.auto_threshold:
                post2 = self.engine_two.posterior(stats)
                m2 = post2.mean()
                if np.linalg.norm(m2[:lps] - m2[lps:]) >= self.auto_min_separation:
                    post, n_src = post2, 2
            if n_src == 1 and 0 < self._join_frames < w.n_frames:
                recent = self._newest_stats()
                post2 = self._join(recent) if recent is not None else None
                if post2 is not None:
                    post, n_src = post2, 2
                elif self.turn_deg > 0 and recent is not None:
                    if post is None:
                        post = self.engine.posterior(stats)
                    p1 = self.engine.posterior(recent)
                    if np.linalg.norm(p1.mean()[:lps] - post.mean()[:lps]) > self._turn_dist:
                        post = p1
                        self.n_turns += 1
            elif (n_src == 2 and self.stale_share > 0 and self._forward is not None
                  and 0 < self._join_frames < w.n_frames):
                m = post.mean()
                shares = self._shares([m[:lps], m[lps:]])
                if min(shares) < self.stale_share:
                    recent = self._recent_answer()
                    if recent is not None:
                        (post, n_src), shares = recent, None
        if post is None:
            post = self.engine.posterior(stats)
        used = self.model_two if n_src == 2 and self.model_two is not None else self.model
        mean, cov = post.mean(), post.covariance() * (used.cov_scale * post.fit_ratio)
        floor = used.cov_floor
        if floor is not None and floor.shape == (cov.shape[0],):
            cov = cov + np.diag(floor)
        sources = []
        for m in range(n_src):
            sl = slice(m * lps, (m + 1) * lps)
            pos, c = mean[sl].copy(), cov[sl, sl].copy()
            inside, outside_by = True, 0.0
            if self.field is not None:
                pos, c, inside, outside_by = _clip_to_field(pos, c, *self.field)
            r = float(np.sqrt(max(np.trace(c) / lps, 0.0))) if np.all(np.isfinite(c)) else np.inf
            sources.append(SourceEstimate(position=pos, covariance=c,
                                          confidence=1.0 / (1.0 + r / self.confidence_scale),
                                          in_field=inside, outside_by=outside_by))
        if n_src == 1 and self._share_frames > 0:
            sources[0].share = self.window.newest_active_fraction(self._share_frames)
        if n_src > 1 and self._forward is not None:
            if shares is None:
                shares = self._shares([mean[m * lps:(m + 1) * lps] for m in range(n_src)])
            for src, sh in zip(sources, shares):
                src.share = float(sh)
        return Estimate(sources=sources, active_fraction=frac, n_active=post.n_active,
                        end_sample=self.end_sample, n_frames=w.n_frames, posterior=post)

    def _recent_answer(self):
        """(posterior, source count) of the window's newest ``join_s`` alone (its two-source
        answer if :meth:`_join` takes it), or None when it is too quiet."""
        stats = self._newest_stats()
        if stats is None:
            return None
        self.n_stale += 1
        two = self._join(stats)
        return (two, 2) if two is not None else (self.engine.posterior(stats), 1)

    def _newest_stats(self) -> Optional[SufficientStats]:
        """Statistics of the window's newest ``join_s``, or None when too little of it is
        active (``min_active_fraction``)."""
        w = self.window
        stats = w.newest_stats(self._join_frames)
        if stats.n_active < self.min_active_fraction * min(self._join_frames, w.n_frames) * (
                w.n_bins):
            return None
        return stats

    def _join(self, stats: SufficientStats):
        """The two-source posterior of ``stats`` (the window's newest ``join_s``,
        :meth:`_newest_stats`) when its evidence ratio exceeds ``join_threshold`` and its
        sources are ``auto_min_separation`` apart, else None (see the module docstring)."""
        n = stats.n_active
        e1, e2 = self.evidence_engines
        ratio = (e2.log_evidence(stats) - e1.log_evidence(stats)) / n
        self.last_join_ratio = ratio
        if not ratio > self.join_threshold:
            return None
        post2 = self.engine_two.posterior(stats)
        m2 = post2.mean()
        lps = self.model.dims_per_source
        if np.linalg.norm(m2[:lps] - m2[lps:]) < self.auto_min_separation:
            return None
        self.n_joins += 1
        return post2

    def _shares(self, positions) -> np.ndarray:
        """The two sources' shares of the (frame, bin) entries of the newest ``share_s`` of the
        window: the weights of a mixture of the one-source model's mean features at the
        sources' positions, fitted by EM to the active entries, times the fraction of the
        entries that is active (zeros when none is). EM runs on a histogram of the entries'
        log-likelihood ratios (400 bins over +-40; the responsibilities of entries further out
        are 0 or 1 whatever the weight)."""
        Y, chi = self.window.newest(self._share_frames)
        if len(positions) != 2 or not chi.any():
            return np.zeros(len(positions))
        r = self._forward.llr(Y, chi, self.window.n_bins, *positions)
        # np.histogram's equal bins over [-max, max] (the last one closed), by bincount
        width = 2.0 * _SHARE_LLR_MAX / _SHARE_BINS
        idx = np.minimum(((np.clip(r, -_SHARE_LLR_MAX, _SHARE_LLR_MAX) + _SHARE_LLR_MAX)
                          / width).astype(np.intp), _SHARE_BINS - 1)
        counts = np.bincount(idx, minlength=_SHARE_BINS)
        keep = np.flatnonzero(counts)
        counts = counts[keep].astype(np.float64) / r.size
        # responsibility of the first source, 1 / (1 + exp(-(mid + log(w / (1 - w))))), as
        # w / (w + (1 - w) exp(-mid)): no log or exp inside the loop
        e = np.exp(-(-_SHARE_LLR_MAX + (keep + 0.5) * width))
        w = 0.5
        for _ in range(_SHARE_EM_ITER):
            w = float(counts @ (w / (w + (1.0 - w) * e)))
            w = min(max(w, 1e-6), 1.0 - 1e-6)
        frac = float(chi.mean())
        return np.array([w * frac, (1.0 - w) * frac])


_SHARE_EM_ITER = 30
_SHARE_BINS = 400
_SHARE_LLR_MAX = 40.0


class _ForwardMap:
    """The one-source model's mean features at a position, ``sum_k p(k | x) (A_k x + b_k)``,
    and the log-likelihood ratio of two positions for each (frame, bin) entry: Gaussian
    features around the means with variance ``sigma2``, plus ``frame_var`` when the model has
    it (single frames scatter more than the means)."""

    def __init__(self, model: SBMModel):
        p = model.params
        self.p = p
        self.Gi = np.linalg.inv(p.Gamma)
        self.logw = np.log(np.maximum(p.pi, 1e-300)) - 0.5 * np.linalg.slogdet(p.Gamma)[1]
        var = np.asarray(p.sigma2, dtype=np.float64)
        if model.frame_var is not None:
            var = var + model.frame_var
        self.var = np.maximum(var, 1e-12)
        K, D, L = p.A.shape
        self._A = np.ascontiguousarray(p.A.reshape(K, D * L))   # w @ A without a copy of A[k]
        self._DL = (D, L)

    def mean(self, x) -> np.ndarray:
        p = self.p
        x = np.asarray(x, dtype=np.float64)
        r = x[None, :] - p.c
        lw = self.logw - 0.5 * np.einsum("ki,kij,kj->k", r, self.Gi, r)
        w = np.exp(lw - lw.max())
        w /= w.sum()
        w = np.where(w > 1e-9 * w.max(), w, 0.0)          # the others add nothing
        return (w @ self._A).reshape(self._DL) @ x + w @ p.b

    def llr(self, Y, chi, n_bins: int, x0, x1) -> np.ndarray:
        """(m,) log-likelihood ratio, position ``x0`` against ``x1``, of each active (frame,
        bin) entry of ``Y`` (T, D) / ``chi`` (T, F) (the bin's feature blocks together)."""
        m0, m1 = self.mean(x0), self.mean(x1)
        a = (m0 - m1) / self.var
        c = (a * 0.5 * (m0 + m1)).reshape(-1, n_bins).sum(axis=0)
        T = Y.shape[0]
        return ((Y * a).reshape(T, -1, n_bins).sum(axis=1) - c)[chi]


def _field_box(model: SBMModel):
    """(lo, hi, margin) arrays of the model's recorded field per source dimension, or None."""
    f = model.info.get("field") if isinstance(model.info, dict) else None
    if not f:
        return None
    try:
        lo, hi, margin = (np.asarray(f[k], dtype=np.float64) for k in ("lo", "hi", "margin"))
    except (KeyError, TypeError, ValueError):
        return None
    lps = model.dims_per_source
    if not (lo.shape == hi.shape == margin.shape == (lps,)) or not np.all(np.isfinite(
            np.concatenate([lo, hi, margin]))):
        return None
    return lo, hi, np.maximum(margin, 0.0)


def _clip_to_field(pos, cov, lo, hi, margin):
    """(position, covariance, in_field, outside_by) after clipping to the box + margin."""
    if not np.all(np.isfinite(pos)):
        return (0.5 * (lo + hi), np.diag((0.5 * (hi - lo) + margin) ** 2 + 1e-12), False,
                float("inf"))
    outside_by = float(np.linalg.norm(pos - np.clip(pos, lo, hi)))
    clipped = np.clip(pos, lo - margin, hi + margin)
    inside = bool(np.all(np.abs(pos - np.clip(pos, lo, hi)) <= margin + 1e-9))
    if not inside:
        d = pos - clipped
        cov = cov + np.diag(d * d)
    return clipped, cov, inside, outside_by


def _noise_model(model: SBMModel):
    """(sigma2, frame_corr * frame_var) of a hierarchical model file, else None."""
    if not model.hierarchical:
        return None
    return model.params.sigma2, model.frame_corr * model.frame_var


def _with_frame_noise(model: SBMModel):
    from .gllim import GLLiMParams
    p = model.params
    return GLLiMParams(pi=p.pi, c=p.c, Gamma=p.Gamma, A=p.A, b=p.b,
                       sigma2=p.sigma2 + model.frame_var)


def localize_signal(model: SBMModel, x: np.ndarray, window_s: Optional[float] = None,
                    hop_s: float = 0.1, **kwargs):
    """Slide an :class:`SBMLocalizer` over a whole signal; yields (time_s, Estimate or None).

    ``time_s`` is the time of the last sample of the window's newest STFT frame.
    """
    loc = SBMLocalizer(model, window_s=window_s, **kwargs)
    rate = model.feature_config.sample_rate
    hop = max(1, int(round(hop_s * rate)))
    first = int(round(loc.window_s * rate))
    pos = 0
    targets = list(range(first, x.shape[0] + 1, hop)) or [x.shape[0]]
    for end in targets:
        loc.push_audio(x[pos:end])
        pos = end
        yield loc.end_sample / rate, loc.estimate()

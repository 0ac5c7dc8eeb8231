"""Source signals for the virtual head: white noise and synthetic speech (espeak-ng).

Speech is synthesised by the ``espeak-ng`` command line (Debian package ``espeak-ng``):
``espeak-ng -v VOICE [-s SPEED] [-p PITCH] -b 1 --stdin -w out.wav`` with the text on stdin
(UTF-8), resampled from espeak's 22050 Hz to ``rate`` with ``resample_poly``, leading and
trailing silence trimmed (below -50 dB re peak, 20 ms kept), and normalised to ``rms``.
Results are cached as ``.npy`` under ``$SBM_CACHE_DIR/speech`` keyed on all arguments and the
espeak-ng version.

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
    "espeak_languages", "resolve_language", "VOICES", "COUNT_WORDS",
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

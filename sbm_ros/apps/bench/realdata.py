"""Real measured data: SBM-1, SBM-2 and PHAT-histogram on measured heads and rooms.

Data (``--data-dir``; see ``../shared/data/README.md`` and :data:`DOWNLOAD`): the Surrey
binaural room impulse responses of a Cortex HATS (Room A, T60 about 0.32 s, and the anechoic
chamber; azimuth only, 5 deg steps), the SONICOM human-head HRIRs of the ``spatialaudiometrics``
wheel (two subjects, azimuth x elevation, anechoic), three CMU ARCTIC utterances (real speech)
and three espeak-ng sentences (:func:`sbm_ros.sim.speech`). Rendering:
:class:`sbm_ros.sim.measured.MeasuredHead` (where the ear choice of the Surrey files is stated).

Protocol
--------
* **Field**: azimuth -30..+30 deg. Surrey: elevation 0, azimuth-only models (L = 1 per source).
  SONICOM: the elevation rows -30..+30 deg (10 deg apart), models of (azimuth, elevation).
* **Training** goes through the package's own path, so every change of the method shows up
  here: one 1 s white-noise recording per training direction (rendered with microphone
  self-noise at ``--snr-db``, peak-normalised, PCM16) is written to a dataset folder
  (``targets.csv`` + WAVs) in a temporary directory and fitted with
  :func:`sbm_ros.core.training.train_model` with ``sbm-train``'s defaults (:data:`TRAIN_KW`
  is empty: one source runs the small-set calibration, K chosen from the data; two talkers:
  ``n_sources=2`` with :data:`PAIRS` white-noise pairs and K = :data:`K2`). PHAT-histogram
  is fitted on the same WAVs (read back).
* **Test**: each utterance convolved with the test direction's response plus self-noise at
  ``--snr-db``; SBM runs :func:`sbm_ros.core.localizer.localize_signal` (0.72 s windows for one
  source, 1.2 s for two, hop :data:`HOP_S`, adaptive noise-floor mask); the file's estimate is
  the per-coordinate median over its windows. PHAT runs on the whole file (two peaks for two
  talkers; a single peak counts for both talkers).
* **Cases**: Surrey, per room: *trained* (train and test the 13 directions 5 deg apart),
  *held-out* (train the 7 at multiples of 10 deg, test the 6 between), *two talkers* (SBM-2
  trained on the 13; test: two utterances at equal level at two of the 13 directions at least
  10 deg apart; the utterance u with the utterance u + 1, or in quick mode, with one utterance,
  with itself shifted by half its length); *room change* both ways (train one room, test the
  other, trained directions).
  SONICOM, per subject: *trained* (train and test the 13 x 7 grid), *held-out rows* (train the
  rows -30, -10, 10, 30, test the whole rows -20, 0, 20), and *cross-head* (train one subject's
  grid, test the other's).
* **Measures**: azimuth (and elevation) absolute error of the file estimates, mean ± sd over
  files (two talkers: over talkers, each matched to the estimate of the better assignment);
  "> 5°": GTEA (``hypot(d_az, d_el)``) above 5 deg for SBM, azimuth error for PHAT;
  **coverage**: fraction of window estimates whose reported 95 % region (``d' C^-1 d`` below the
  chi-square 95 % quantile with L degrees of freedom) contains the truth; **rho**: Spearman
  rank correlation, over windows, between the reported confidence (``SourceEstimate
  .confidence``, which falls as the posterior spread grows) and the window's GTEA. A useful
  confidence falls as the error grows: **negative rho is good**.

Quick mode (the test suite): Room A trained (every other direction tested) and held-out, Room A
two talkers (4 pairs), anechoic -> Room A, SONICOM subject 1 with the row 0 held out (10 deg
azimuth steps); one ARCTIC utterance and one espeak-ng sentence; hop 0.3 s.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from sbm_ros.apps.bench.common import RATE, BenchConfig, _log
from sbm_ros.core.audio_io import read_wav

DOWNLOAD = (
    "the Surrey BRIRs `UniS_Room_A_BRIR_16k.sofa` and `UniS_Anechoic_BRIR_16k.sofa` from "
    "https://github.com/IoSR-Surrey/RealRoomBRIRs (MIT) into `<data-dir>/surrey_brirs/`; CMU "
    "ARCTIC utterances (16 kHz mono WAV, e.g. speaker aew from http://festvox.org/cmu_arctic/ or "
    "the examples of LCAV/pyroomacoustics) into `<data-dir>/speech/`; the SONICOM heads with "
    "`pip install --no-deps spatialaudiometrics` (PyPI wheel); then pass `--data-dir` or set "
    "`SBM_DATA_DIR`")
ENV_VAR = "SBM_DATA_DIR"
FIELD_AZ = tuple(float(a) for a in range(-30, 31, 5))
ROWS_EL = (-30.0, -20.0, -10.0, 0.0, 10.0, 20.0, 30.0)
ESPEAK_SENTENCES = (
    ("en", "Please call Stella and ask her to bring these things with her from the store."),
    ("en+f3", "The birch canoe slid on the smooth planks; glue the sheet to the dark blue "
              "background."),
    ("en-us+f2", "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a "
                 "snack for her brother Bob."),
)
TRAIN_KW: dict = {}                         # as `sbm-train` without options
PAIRS = {False: 5000, True: 600}            # two-talker training pairs (full, quick)
#: two-talker K (full, quick); None: sbm-train's default (100, capped at half the distinct
#: position pairs: 39 for 13 directions). Room A, 5000 pairs: K = 20 gave 0.62 / 0.85 deg
#: (ARCTIC / espeak-ng) against PHAT's 0.43 / 0.49; the capped default 0.33 / 0.41.
K2 = {False: None, True: 10}
HOP_S = {False: 0.1, True: 0.3}             # window hop (full, quick)
CHI2_95 = {1: 3.841458820694124, 2: 5.991464547107979}
SPEECH_RMS = 0.1


# --------------------------------------------------------------------------- data folder
def _checkout_data_dir() -> str:
    """``../shared/data`` next to the checkout this module runs from."""
    here = os.path.dirname(os.path.abspath(__file__))
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    return os.path.normpath(os.path.join(checkout, "..", "shared", "data"))


def resolve_data_dir(explicit: Optional[str] = None) -> Tuple[Optional[str], str]:
    """(data folder or None, how it was found or why not).

    ``explicit`` (``--data-dir``) wins; else ``../shared/data`` relative to the checkout if it
    exists; else the environment variable ``SBM_DATA_DIR``; else None.
    """
    if explicit:
        if os.path.isdir(explicit):
            return os.path.abspath(explicit), "--data-dir"
        return None, f"--data-dir {explicit!r} is not a folder"
    cand = _checkout_data_dir()
    if os.path.isdir(cand):
        return cand, "../shared/data next to the checkout"
    env = os.environ.get(ENV_VAR)
    if env:
        if os.path.isdir(env):
            return os.path.abspath(env), f"${ENV_VAR}"
        return None, f"${ENV_VAR}={env!r} is not a folder"
    return None, f"no --data-dir, no {cand}, no ${ENV_VAR}"


# --------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One train/test condition: heads, directions, number of talkers, target dimensions."""

    key: str
    label: str
    group: str                  # "surrey" or "sonicom"
    train: str                  # head key: "A", "anechoic", "S1", "S2"
    test: str
    train_dirs: tuple           # ((az, el), ...)
    test_dirs: tuple            # ((az, el), ...) or, two talkers, (((az, el), (az, el)), ...)
    n_sources: int = 1
    dims: int = 1               # 1: azimuth-only model; 2: (azimuth, elevation)


def _dirs(azs, els=(0.0,)) -> tuple:
    return tuple((float(a), float(e)) for e in els for a in azs)


def _talker_pairs(dirs, n: Optional[int], seed: int) -> tuple:
    """Pairs of ``dirs`` at least 10 deg apart in azimuth; ``n`` of them drawn (None: all)."""
    pairs = [(a, b) for i, a in enumerate(dirs) for b in dirs[i + 1:]
             if abs(a[0] - b[0]) >= 10.0 - 1e-9]
    if n is not None and n < len(pairs):
        rng = np.random.default_rng([int(seed), 1010])
        pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), n, replace=False))]
    return tuple(pairs)


def plan_cases(quick: bool, seed: int = 0) -> List[Case]:
    """The cases of the full run, or quick mode's subset."""
    full = _dirs(FIELD_AZ)
    tens = _dirs(FIELD_AZ[::2])
    between = _dirs(FIELD_AZ[1::2])
    room_label = {"A": "Room A", "anechoic": "anechoic"}
    cases = []
    rooms = ("A",) if quick else ("A", "anechoic")
    for r in rooms:
        cases.append(Case(f"{r}-trained", f"Surrey {room_label[r]}, trained", "surrey", r, r,
                          full, tens if quick else full))
        cases.append(Case(f"{r}-heldout", f"Surrey {room_label[r]}, held-out", "surrey", r, r,
                          tens, between))
        cases.append(Case(f"{r}-two", f"Surrey {room_label[r]}, two talkers", "surrey", r, r,
                          full, _talker_pairs(full, 4 if quick else None, seed), n_sources=2))
    changes = (("anechoic", "A"),) if quick else (("anechoic", "A"), ("A", "anechoic"))
    for tr, te in changes:
        cases.append(Case(f"{tr}-to-{te}", f"Surrey {room_label[tr]} → {room_label[te]}",
                          "surrey", tr, te, full, tens if quick else full))
    az_s = FIELD_AZ[::2] if quick else FIELD_AZ
    grid = _dirs(az_s, ROWS_EL)
    if quick:
        cases.append(Case("S1-row0", "SONICOM 1, row 0° held out", "sonicom", "S1", "S1",
                          _dirs(az_s, [e for e in ROWS_EL if e != 0.0]), _dirs(az_s, (0.0,)),
                          dims=2))
        return cases
    for s in ("S1", "S2"):
        n = s[1]
        cases.append(Case(f"{s}-trained", f"SONICOM {n}, trained", "sonicom", s, s, grid, grid,
                          dims=2))
        cases.append(Case(f"{s}-rows", f"SONICOM {n}, rows −20/0/20° held out", "sonicom", s,
                          s, _dirs(az_s, (-30.0, -10.0, 10.0, 30.0)),
                          _dirs(az_s, (-20.0, 0.0, 20.0)), dims=2))
    for tr, te in (("S1", "S2"), ("S2", "S1")):
        cases.append(Case(f"{tr}-to-{te}", f"SONICOM {tr[1]} → {te[1]} (cross-head)",
                          "sonicom", tr, te, grid, grid, dims=2))
    return cases


# --------------------------------------------------------------------------- the data
@dataclass
class _Trained:
    model: object
    phat: object
    K: int
    n_train: int
    train_s: float


@dataclass
class _World:
    """The heads, test speech and trained models of one run (models cached by training set)."""

    data_dir: str
    tmp: str
    bc: BenchConfig
    heads: Dict[str, object] = field(default_factory=dict)
    models: Dict[tuple, _Trained] = field(default_factory=dict)

    def head(self, key: str):
        from sbm_ros.sim.measured import MeasuredHead

        if key not in self.heads:
            if key in ("A", "anechoic"):
                self.heads[key] = MeasuredHead.surrey(self.data_dir, key, rate=RATE)
            else:
                self.heads[key] = MeasuredHead.sonicom(int(key[1:]), rate=RATE)
        return self.heads[key]

    def trained(self, case: Case) -> _Trained:
        key = (case.train, case.train_dirs, case.n_sources, case.dims)
        if key not in self.models:
            self.models[key] = self._train(case, len(self.models))
        return self.models[key]

    def _train(self, case: Case, number: int) -> _Trained:
        from sbm_ros.core.dataset import append_sample
        from sbm_ros.core.model import SBMModel
        from sbm_ros.core.phat import PhatHistogram
        from sbm_ros.core.training import train_model
        from sbm_ros.sim import white_noise

        head = self.head(case.train)
        folder = os.path.join(self.tmp, f"ds{number:02d}")
        names = ["azimuth_deg", "elevation_deg"][:case.dims]
        recs = []
        head_code = sum(map(ord, case.train))
        for az, el in case.train_dirs:
            i = head.index(az, el)
            s = white_noise(1.0, RATE, seed=[self.bc.seed, 10, head_code, i])
            x = head.render(s, i, self.bc.snr_db, noise_seed=[self.bc.seed, 11, head_code, i])
            x = 0.9 * x / max(float(np.max(np.abs(x))), 1e-12)
            name = append_sample(folder, x, RATE, [az, el][:case.dims], names)
            recs.append(read_wav(os.path.join(folder, name), target_rate=RATE)[0])
        path = os.path.join(self.tmp, f"model{number:02d}.npz")
        kw = dict(TRAIN_KW)
        if case.n_sources == 2:
            kw.update(pairs=PAIRS[self.bc.quick])
            if K2[self.bc.quick] is not None:
                kw.update(n_components=K2[self.bc.quick])
        t0 = time.perf_counter()
        res = train_model(folder, path, n_sources=case.n_sources, seed=self.bc.seed,
                          azimuth_only=case.dims == 1, **kw)
        train_s = time.perf_counter() - t0
        _log(f"real data: trained {case.train} N={len(recs)} sources={case.n_sources}: "
             f"{res.summary()}")
        azs = np.array([d[0] for d in case.train_dirs])
        ph = PhatHistogram(sample_rate=RATE).fit(recs, azs)
        return _Trained(SBMModel.load(path), ph, res.n_components, res.n_recordings, train_s)


def _arctic(data_dir: str) -> List[np.ndarray]:
    out = []
    for p in sorted(glob.glob(os.path.join(data_dir, "speech", "*.wav"))):
        x, _ = read_wav(p, target_rate=RATE, allow_mono=True)
        out.append(x[:, 0])
    return out


def _espeak() -> List[np.ndarray]:
    from sbm_ros.sim import speech

    return [speech(text, voice=voice, rate=RATE) for voice, text in ESPEAK_SENTENCES]


def _norm(s: np.ndarray) -> np.ndarray:
    return s * (SPEECH_RMS / max(float(np.sqrt(np.mean(s ** 2))), 1e-12))


def load_test_speech(data_dir: str, quick: bool) -> Tuple[Dict[str, List[np.ndarray]], List[str]]:
    """{kind: mono utterances at RMS 0.1} for "ARCTIC" and "espeak-ng", and notes on gaps."""
    from sbm_ros.sim import espeak_available

    kinds, notes = {}, []
    arctic = _arctic(data_dir)
    if arctic:
        kinds["ARCTIC"] = [_norm(s) for s in arctic[:1 if quick else None]]
    else:
        notes.append(f"no ARCTIC speech (no WAV in {os.path.join(data_dir, 'speech')})")
    if espeak_available():
        kinds["espeak-ng"] = [_norm(s) for s in _espeak()[:1 if quick else None]]
    else:
        notes.append("no espeak-ng speech (espeak-ng is not installed)")
    return kinds, notes


# --------------------------------------------------------------------------- evaluation
def _windows(model, x: np.ndarray, hop_s: float):
    """(positions (W, S, l), covariances (W, S, l, l), confidences (W, S)) of the windows
    with an estimate."""
    from sbm_ros.core.localizer import localize_signal

    pos, cov, conf = [], [], []
    for _, e in localize_signal(model, x, hop_s=hop_s):
        if e is None:
            continue
        pos.append([s.position for s in e.sources])
        cov.append([s.covariance for s in e.sources])
        conf.append([s.confidence for s in e.sources])
    return np.array(pos, float), np.array(cov, float), np.array(conf, float)


def _order(est: np.ndarray, true: np.ndarray) -> list:
    """Row order of ``est`` (2, l) of the better assignment to ``true`` (2, l)."""
    a = np.linalg.norm(est - true, axis=1).sum()
    b = np.linalg.norm(est[::-1] - true, axis=1).sum()
    return [0, 1] if a <= b else [1, 0]


def _truth(case: Case, d) -> np.ndarray:
    """(S, l) true targets of test item ``d``."""
    items = d if case.n_sources == 2 else (d,)
    return np.array([[az, el][:case.dims] for az, el in items], float)


@dataclass
class _Acc:
    """Accumulated errors of one (case, speech kind)."""

    sbm_az: list = field(default_factory=list)
    sbm_el: list = field(default_factory=list)
    sbm_gtea: list = field(default_factory=list)
    phat_az: list = field(default_factory=list)
    win_err: list = field(default_factory=list)
    win_cov: list = field(default_factory=list)
    win_conf: list = field(default_factory=list)
    files: int = 0
    sbm_missing: int = 0
    phat_missing: int = 0
    sbm_est: list = field(default_factory=list)      # (truth, estimate) per source, for plots


def _evaluate_file(acc: _Acc, case: Case, tr: _Trained, x: np.ndarray, true: np.ndarray,
                   hop_s: float) -> None:
    acc.files += 1
    S, dims = case.n_sources, case.dims
    pos, cov, conf = _windows(tr.model, x, hop_s)
    if pos.shape[0] == 0:
        acc.sbm_missing += 1
    else:
        for w in range(pos.shape[0]):
            p, c, k = pos[w], cov[w], conf[w]
            if S == 2:
                o = _order(p, true)
                p, c, k = p[o], c[o], k[o]
            for s in range(S):
                d = p[s] - true[s]
                try:
                    m2 = float(d @ np.linalg.solve(c[s], d))
                except np.linalg.LinAlgError:
                    m2 = np.inf
                acc.win_err.append(float(np.linalg.norm(d)))
                acc.win_cov.append(m2 <= CHI2_95[dims])
                acc.win_conf.append(float(k[s]))
        est = np.median(pos, axis=0)                        # (S, l), canonical slots
        if S == 2:
            est = est[_order(est, true)]
        for s in range(S):
            d = np.abs(est[s] - true[s])
            acc.sbm_az.append(float(d[0]))
            if dims == 2:
                acc.sbm_el.append(float(d[1]))
            acc.sbm_gtea.append(float(np.linalg.norm(d)))
            acc.sbm_est.append((true[s].tolist(), est[s].tolist()))
    ph = tr.phat.predict(x, S)
    if ph.size == 0:
        acc.phat_missing += 1
        return
    if ph.size < S:
        ph = np.repeat(ph[:1], S)
    t_az = true[:, 0]
    if S == 2 and abs(ph[0] - t_az[1]) + abs(ph[1] - t_az[0]) < abs(ph[0] - t_az[0]) + abs(
            ph[1] - t_az[1]):
        ph = ph[::-1]
    acc.phat_az += [float(v) for v in np.abs(ph[:S] - t_az)]


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 4 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).correlation)


def _ms(v) -> Optional[tuple]:
    v = np.asarray(v, float)
    return (float(np.mean(v)), float(np.std(v))) if v.size else None


def elevation_rows(est: list) -> Dict[str, dict]:
    """Per true elevation row of ``[(truth, estimate), ...]`` (two target dims): files, mean
    estimated elevation, mean absolute elevation error, and the share of *up/down
    confusions* (truth at least 10 deg off the horizontal plane, estimate at least 5 deg on the
    other side of it)."""
    out: Dict[str, dict] = {}
    if not est:
        return out
    tru = np.array([t for t, _ in est], float)
    val = np.array([e for _, e in est], float)
    for el in sorted(set(tru[:, 1].tolist())):
        m = tru[:, 1] == el
        e = val[m, 1]
        flip = (abs(el) >= 10.0) & (np.sign(e) == -np.sign(el)) & (np.abs(e) >= 5.0)
        out[f"{el:g}"] = dict(files=int(m.sum()), est_mean=float(e.mean()),
                              abs_err=float(np.mean(np.abs(e - el))),
                              updown_pct=float(np.mean(flip) * 100))
    return out


def interaural_interpolation(head, azimuths, train_rows, test_rows, rate: int = RATE,
                             n_fft: int = 1024, f_lo: float = 300.0) -> Dict[str, dict]:
    """Why a held-out elevation row is (not) interpolated, measured on the responses alone.

    For each test row and azimuth: the RMS (dB, over frequencies above ``f_lo``) between the
    row's interaural level difference and the linear blend of the two nearest trained rows
    around it (what a locally-linear map can interpolate), and the same distance to the blend
    around the *mirror* row (-el), averaged over ``azimuths``. When the mirror distance is the
    smaller, the interaural cues of that row look more like the other side of the horizontal
    plane than like its own neighbours: no interpolation of interaural features can place it.
    """
    H = np.fft.rfft(head.irs, n=n_fft, axis=1)
    f = np.fft.rfftfreq(n_fft, 1.0 / rate)
    band = f > f_lo

    def ild(az, el):
        i = head.index(az, el)
        m = np.abs(H[i][band]) + 1e-12
        return 20.0 * np.log10(m[:, 0] / m[:, 1])

    def blend(az, el):
        rows = np.asarray(sorted(train_rows), float)
        below, above = rows[rows < el], rows[rows > el]
        if not below.size or not above.size:
            return None
        a, b = below.max(), above.min()
        t = (el - a) / (b - a)
        return (1 - t) * ild(az, a) + t * ild(az, b)

    out = {}
    for el in test_rows:
        own, mirror = [], []
        for az in azimuths:
            x = ild(az, el)
            b0, b1 = blend(az, el), blend(az, -el)
            if b0 is None or b1 is None:
                continue
            own.append(np.sqrt(np.mean((x - b0) ** 2)))
            mirror.append(np.sqrt(np.mean((x - b1) ** 2)))
        if own:
            out[f"{el:g}"] = dict(own_db=float(np.mean(own)), mirror_db=float(np.mean(mirror)))
    return out


def _row(case: Case, kind: str, tr: _Trained, acc: _Acc) -> dict:
    gt = np.asarray(acc.sbm_gtea)
    ph = np.asarray(acc.phat_az)
    extra = {}
    if case.dims == 2:
        extra["el_rows"] = elevation_rows(acc.sbm_est)
    return dict(
        **extra, key=case.key, label=case.label, group=case.group, kind=kind,
        method=f"SBM-{case.n_sources}", n_sources=case.n_sources, dims=case.dims,
        K=tr.K, n_train=tr.n_train, n_test=len(case.test_dirs), files=acc.files,
        sbm=dict(az=_ms(acc.sbm_az), el=_ms(acc.sbm_el) if case.dims == 2 else None,
                 over5=float(np.mean(gt > 5.0) * 100) if gt.size else float("nan"),
                 coverage=float(np.mean(acc.win_cov) * 100) if acc.win_cov else float("nan"),
                 rho=_spearman(acc.win_conf, acc.win_err), windows=len(acc.win_err),
                 missing=acc.sbm_missing, est=acc.sbm_est),
        phat=dict(az=_ms(ph), over5=float(np.mean(ph > 5.0) * 100) if ph.size else float("nan"),
                  missing=acc.phat_missing))


def _run_case(world: _World, case: Case, number: int, speech: Dict[str, List[np.ndarray]],
              hop_s: float) -> List[dict]:
    tr = world.trained(case)
    head = world.head(case.test)
    rows = []
    diag = None
    if case.group == "sonicom" and case.train == case.test:
        train_rows = sorted({el for _, el in case.train_dirs})
        test_rows = sorted({el for _, el in case.test_dirs} - set(train_rows))
        if test_rows:
            diag = interaural_interpolation(head, sorted({az for az, _ in case.test_dirs}),
                                            train_rows, test_rows)
    for kind, utts in speech.items():
        acc = _Acc()
        for j, d in enumerate(case.test_dirs):
            true = _truth(case, d)
            for u in range(len(utts)):
                seed = [world.bc.seed, 20, number, j, u, len(kind)]
                if case.n_sources == 1:
                    x = head.render(utts[u], head.index(*d), world.bc.snr_db, noise_seed=seed)
                else:
                    u2 = (u + 1) % len(utts) if len(utts) > 1 else u
                    s2 = utts[u2] if u2 != u else np.roll(utts[u], len(utts[u]) // 2)
                    x = head.render_mixture([(utts[u], head.index(*d[0])),
                                             (s2, head.index(*d[1]))],
                                            world.bc.snr_db, noise_seed=seed)
                _evaluate_file(acc, case, tr, x, true, hop_s)
        rows.append(_row(case, kind, tr, acc))
        if diag:
            rows[-1]["interaural_interp"] = diag
    return rows


def run_realdata(bc: BenchConfig, out: dict, then=None) -> dict:
    """The real-data section: fills ``out["realdata"]`` (``rows`` or ``skipped``), returns it.

    ``then(world, cases, speech, hop_s)``, when given, runs with the same heads, trained
    models and speech before the scratch folder goes; its rows go to ``out["realdata"]
    ["sweep"]`` (the driver passes :func:`.realsweep.run_realsweep`)."""
    from sbm_ros.sim.measured import sonicom_files, surrey_file

    t0, c0 = time.perf_counter(), time.process_time()
    data_dir, how = resolve_data_dir(bc.data_dir)
    res: dict = dict(data_dir=data_dir, found_by=how, rows=[], notes=[],
                     hop_s=HOP_S[bc.quick], pairs=PAIRS[bc.quick], k2=K2[bc.quick],
                     snr_db=bc.snr_db)
    out["realdata"] = res
    if data_dir is None:
        res["skipped"] = f"no real-data folder ({how}). To run it, download {DOWNLOAD}."
        _log("real data: skipped: " + res["skipped"])
        return res
    speech, notes = load_test_speech(data_dir, bc.quick)
    res["notes"] += notes
    res["speech"] = {k: [round(len(s) / RATE, 2) for s in v] for k, v in speech.items()}
    if not speech:
        res["skipped"] = f"no test speech ({'; '.join(notes)}). Download {DOWNLOAD}."
        return res
    cases = plan_cases(bc.quick, bc.seed)
    have_surrey = all(os.path.exists(surrey_file(data_dir, r)) for r in ("A", "anechoic"))
    if not have_surrey:
        res["notes"].append(f"Surrey cases not run: no {surrey_file(data_dir, 'A')} and "
                            f"{surrey_file(data_dir, 'anechoic')}")
    if len(sonicom_files()) < 2:
        res["notes"].append("SONICOM cases not run: the two SOFA files of the "
                            "`spatialaudiometrics` wheel are missing (pip install "
                            "--no-deps spatialaudiometrics)")
    cases = [c for c in cases if (c.group == "surrey" and have_surrey)
             or (c.group == "sonicom" and len(sonicom_files()) >= 2)]
    if not cases:
        res["skipped"] = f"no measured responses ({'; '.join(res['notes'])}). Download " \
                         f"{DOWNLOAD}."
        return res
    tmp = tempfile.mkdtemp(prefix="sbm_bench_realdata_")
    try:
        world = _World(data_dir, tmp, bc)
        for n, case in enumerate(cases):
            tc = time.perf_counter()
            rows = _run_case(world, case, n, speech, HOP_S[bc.quick])
            res["rows"] += rows
            _log(f"real data: {case.label}: " + "; ".join(
                f"{r['kind']} {r['method']} az {_fmt_ms(r['sbm']['az'])}, PHAT "
                f"{_fmt_ms(r['phat']['az'])}" for r in rows)
                + f" ({time.perf_counter() - tc:.1f} s)")
        if then is not None:
            res["sweep"] = then(world, cases, speech, HOP_S[bc.quick])
        res["heads"] = {k: dict(name=h.name, directions=len(h), taps=h.irs.shape[1])
                        for k, h in world.heads.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["wall_s"] = time.perf_counter() - t0
    res["cpu_s"] = time.process_time() - c0
    _log(f"real data: {len(res['rows'])} rows in {res['wall_s']:.1f} s "
         f"(CPU {res['cpu_s']:.1f} s)")
    return res


def _fmt_ms(v) -> str:
    return "–" if v is None else f"{v[0]:.2f} ± {v[1]:.2f}"

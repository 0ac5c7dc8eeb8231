"""``sbm-bench``: the project's benchmark on the virtual binaural head (pure, no ROS).

Reproduces the experiments of Deleforge et al. 2015, §VI (protocol: ``/work/shared/design/
benchmark.md``) on the virtual head of :mod:`sbm_ros.sim`, then runs the method on real
measured heads and rooms, and writes ``<out-dir>/benchmark.md`` plus PNG plots; the tables are
also printed. Everything is deterministic from ``--seed`` except the measured times.
``--out-dir`` defaults to ``docs`` (the committed report) for the full run only; ``--quick``
writes to ``out/bench-quick``, ``--only virtual|realdata`` to ``out/bench-<section>``.

Sections
--------
1. Table I: one source (training: white noise at the 24 x 18 pixel grid; test: one espeak-ng
   counting utterance of 1-5 s at each of the 12 x 9 midway positions); SBM-1 with ILPD, ILD and
   IPD features and the PHAT-histogram baseline, reverberant and anechoic room.
2. Table II: two sources (N = 20,000 white-noise pairs synthesised from the training recordings,
   K = 100; 1,000 one-second test mixtures per type WN+WN, WN+S, S+S of the test recordings,
   level ratio N(0, 0.5) dB, sources 1.5-20 deg apart in azimuth and elevation).
3. Sliding window: one talker counting 1..20 and moving between numbers (720 ms window); two
   talkers counting at once in two languages (1200 ms window), via :class:`SBMLocalizer`.
4. Plots: error / time versus K and error versus N (paper Figs. 3 and 6), camera frame.
5. Speed: per-estimate latency of the sliding-window localiser vs the naive per-entry
   formulation and the K D L^2 FLOP bound; feature extraction; training times.
6. A second GLLiM implementation (PyPI ``xllim``, C++) on the one-source training set.
7. Real measured data (:mod:`.realdata`, ``--data-dir``): the Surrey HATS BRIRs (Room A and
   anechoic; trained and held-out directions, two talkers, room change both ways; azimuth only)
   and two SONICOM human heads (azimuth and elevation; elevation rows held out, cross-head), with
   CMU ARCTIC and espeak-ng speech; SBM-1 / SBM-2 (trained by ``train_model`` from a dataset
   folder, run by ``localize_signal``) and PHAT-histogram on the same signals, with the coverage
   of the reported 95 % region and Spearman's rho between confidence and error. Skipped, with
   download advice, when the data folder is missing. ``--only realdata`` runs it alone.

Measurement choices
-------------------
* **Errors**: absolute azimuth and elevation errors in degrees; the "GTEA" (ground-truth-to-
  estimate angle) of a source is ``hypot(d_az, d_el)`` (azimuth error only for PHAT).
  Table I "> 5 deg" counts GTEA > 5 deg. Table II: estimates are matched to the true sources by
  the better of the two assignments (smallest summed GTEA); a source whose GTEA exceeds 15 deg
  is an outlier, excluded from avg +- std and reported as a percentage.
* **Activity mask** of offline test signals: per-bin noise floor = time-averaged power
  spectrum of a 4 s noise-only segment of the virtual head's microphone self-noise (white,
  independent per ear, scaled to the recording's self-noise level, i.e. exactly the noise the
  head adds), times ``--mask-margin-db``. Mixtures use the sum of the two scaled floors. In the
  sliding-window scenes the floor is measured on the scene's own 1 s noise-only lead-in.
* **CPU time**: ``time.process_time`` around all the work of one method (feature extraction
  or STFT + features, mask, statistics, posterior), divided by the seconds of audio. It sums
  over threads (BLAS may use both cores). Latencies are wall-clock (``perf_counter``).
* **Two-source data**: spectrograms of the 1 s training recordings are stored once in
  complex64 (the STFT is linear, so a mixture's spectrogram is the gain-weighted sum) and the
  ILPD mean vectors of the pairs are computed in batches on two threads; the ILD and IPD
  models use the ILD and IPD blocks of the same vectors (identical to computing them apart).

Modules
-------
One per protocol: :mod:`.table1`, :mod:`.table2`, :mod:`.sweeps`, :mod:`.ambient`,
:mod:`.sliding`, :mod:`.speed`, :mod:`.xllim_compare`, :mod:`.realdata`; shared by them:
:mod:`.common` (configuration, scenes, helpers) and :mod:`.paper` (the paper's figures).
:mod:`.driver` runs them in turn (:func:`run`), :mod:`.plots` and :mod:`.report` write the PNGs
and ``benchmark.md`` (:mod:`.provenance`: machine and commit), :mod:`.cli` is the command
(:func:`main`, also ``python -m sbm_ros.apps.bench``).

The public names of the former single module are re-exported here, except the functions
``table1``, ``table2`` and ``sweeps``, which would hide their modules of the same name: import
them from those modules.
"""

from sbm_ros.apps.bench.ambient import ambient_sweep
from sbm_ros.apps.bench.cli import build_parser, main
from sbm_ros.apps.bench.common import (COLUMNS, FEATURES, OUTLIER_DEG, RATE, BenchConfig,
                                       Scene)
from sbm_ros.apps.bench.driver import run
from sbm_ros.apps.bench.paper import PAPER_T1, PAPER_T2, PAPER_TIMES
from sbm_ros.apps.bench.plots import make_plots
from sbm_ros.apps.bench.realdata import resolve_data_dir, run_realdata
from sbm_ros.apps.bench.report import DEVIATIONS, render_report
from sbm_ros.apps.bench.sliding import counting_scene, run_sliding
from sbm_ros.apps.bench.speed import feature_speed, gemm_gflops
from sbm_ros.apps.bench.table2 import make_mixtures, synth_pairs
from sbm_ros.apps.bench.xllim_compare import run_xllim

__all__ = [
    "BenchConfig", "COLUMNS", "DEVIATIONS", "FEATURES", "OUTLIER_DEG", "PAPER_T1", "PAPER_T2",
    "PAPER_TIMES", "RATE", "Scene", "ambient_sweep", "build_parser", "counting_scene",
    "feature_speed", "gemm_gflops", "main", "make_mixtures", "make_plots", "render_report",
    "resolve_data_dir", "run", "run_realdata", "run_sliding", "run_xllim", "synth_pairs",
]

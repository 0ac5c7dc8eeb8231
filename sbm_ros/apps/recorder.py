"""Record a demo run and score it: overlay video, PNG frames, direction plot, Markdown summary.

:class:`Recorder` attaches subscriptions to an rclpy node: ``overlay`` (sensor_msgs/Image from
``av_fusion``), ``sound_sources`` (vision_msgs/Detection2DArray, pixels) and ``sound_directions``
(geometry_msgs/PoseArray) from ``sbm_localizer``, ``speaking_faces`` (av_fusion) and, from
``virtual_head``, ``ground_truth/sound_sources`` and the latched ``virtual_head/scenario``
(ground truth of every utterance and ``t0_ns``, the stamp of scene time 0) and, with
``ros4hri``, ``/humans/candidate_matches`` (hri_msgs/IdsMatch). Overlay frames go
straight into an ffmpeg process (H.264 MP4, placed on the scene-time grid by their stamps; a
missing frame repeats the previous one); without ffmpeg they are written as a PNG sequence (with
a warning). :meth:`Recorder.finish` writes everything and returns the scores.

Scoring (:func:`score`), per utterance of person p over [start, end] (scene seconds):

* **Direction error** (degrees, great circle): the median of the localizer's direction estimates
  whose analysis window lies entirely inside a part of the utterance where p talks alone
  (other utterances count until 0.3 s after their end, for the reverberation); for an utterance
  without such a part (or too short for one window) the two-source estimates of the overlap
  are matched to the two talkers (cheapest assignment) instead. ``window_s`` is the localizer's
  window (0.72 s one source, 1.2 s two).
* **Marked speaking**: the people marked 'speaking' in ``speaking_faces`` in at least half of the
  frames of [start + 0.4 s, end] (the 0.4 s allow the estimate window to fill). The utterance
  counts as **correct** when p is among them and nobody who is silent throughout
  [start - 1 s, end] is (people who spoke up to 1 s before may still be marked: the speaking
  score decays with av_fusion's 1 s release).

ROS4HRI voices (:func:`score_voices`; when ``sbm_localizer`` runs with ``ros4hri``, each source of
``sound_sources`` fed to a voice carries the hypothesis ``voice:<id>``, and ``av_fusion``
publishes ``/humans/candidate_matches``):

* **Voice of an utterance**: each estimate whose window ends in [start, end + 0.3 s] is given
  to the nearest person talking then, if within ``LABEL_DEG`` (8°) of him (as ``sbm-bench
  --only voices`` does); the utterance's voice is the most frequent voice id among its
  talker's estimates (its share of them is reported).
* **Voice-id switches** per person: a change of voice between consecutive utterances of a
  person that have a voice, unless he was silent for longer than the voice death timeout (8 s;
  then a new id is expected: a re-appearance). Each person should keep one id: 0 switches.
* **VOICE↔FACE match** of an utterance: ``hri_msgs/IdsMatch`` has no stamp, so a match is
  dated by the latest ``sound_sources`` message (received here) that carried its voice; among
  the matches of the utterance's voice dated in [start, end + 0.3 s], the one with the highest
  confidence must name the talker's face.

``python -m sbm_ros.apps.recorder --ros-args -p out_dir:=DIR`` runs it as a node (writes on
Ctrl-C).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import threading
import warnings
from typing import Dict, List, Optional

import numpy as np

__all__ = ["Recorder", "VideoWriter", "score", "score_voices", "write_summary",
           "plot_directions"]

TAIL_S = 0.3          # reverberation tail counted after an utterance's end
ONSET_S = 0.4         # speaking marks are scored from this long after an utterance starts
RELEASE_S = 1.0       # a talker may still be marked this long after his utterance
LABEL_DEG = 8.0       # an estimate within this of a talker is his (voice scoring)
DEATH_TIMEOUT_S = 8.0  # sbm_localizer's voice_death_timeout_s default: a new id is expected


# ----------------------------------------------------------------------------- video
class VideoWriter:
    """Frames on a fixed-rate grid -> MP4 via ffmpeg, or a PNG sequence without ffmpeg."""

    def __init__(self, path: str, fps: float, log=print):
        self.path = path
        self.fps = float(fps)
        self.log = log
        self.proc = None
        self.size = None
        self.last_index = -1
        self.last = None
        self.n_written = 0
        self.seq_dir = None
        self.ffmpeg = shutil.which("ffmpeg")
        if self.ffmpeg is None:
            self.seq_dir = os.path.splitext(path)[0] + "_frames"
            warnings.warn(f"ffmpeg not found: writing the overlay as a PNG sequence in "
                          f"{self.seq_dir} instead of {path}", RuntimeWarning, stacklevel=2)
            self.log(f"WARNING: ffmpeg not found; overlay video -> PNG sequence {self.seq_dir}")
            os.makedirs(self.seq_dir, exist_ok=True)

    def _open(self, img):
        h, w = img.shape[:2]
        self.size = (w, h)
        if self.seq_dir is not None:
            return
        cmd = [self.ffmpeg, "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
               "-s", f"{w}x{h}", "-r", f"{self.fps:g}", "-i", "-", "-c:v", "libx264",
               "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", "-threads", "1",
               "-movflags", "+faststart", self.path]
        self._err = open(self.path + ".ffmpeg.log", "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=self._err)

    def _emit(self, img):
        if self.seq_dir is not None:
            import cv2
            cv2.imwrite(os.path.join(self.seq_dir, f"frame_{self.n_written:05d}.png"), img)
        else:
            try:
                self.proc.stdin.write(np.ascontiguousarray(img).tobytes())
            except (BrokenPipeError, OSError) as exc:
                self.log(f"WARNING: ffmpeg stopped accepting frames: {exc}")
                self.seq_dir = os.path.splitext(self.path)[0] + "_frames"
                os.makedirs(self.seq_dir, exist_ok=True)
        self.n_written += 1

    def add(self, index: int, img: np.ndarray) -> None:
        """Place ``img`` at frame ``index`` (gaps repeat the previous frame; late frames are
        dropped)."""
        if index <= self.last_index:
            return
        if self.size is None:
            self._open(img)
        if (img.shape[1], img.shape[0]) != self.size:
            import cv2
            img = cv2.resize(img, self.size)
        if self.last is not None:
            for _ in range(min(index - self.last_index - 1, int(5 * self.fps))):
                self._emit(self.last)
        self._emit(img)
        self.last, self.last_index = img, index

    def close(self) -> Optional[str]:
        """Finish the file; returns its path (or the PNG folder), None if nothing was written."""
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.wait(timeout=120)
            self._err.close()
            if self.proc.returncode != 0:
                self.log(f"WARNING: ffmpeg failed (code {self.proc.returncode}), see "
                         f"{self.path}.ffmpeg.log")
                return None
            try:
                os.remove(self.path + ".ffmpeg.log")
            except OSError:
                pass
            return self.path
        if self.seq_dir is not None and self.n_written:
            return self.seq_dir
        return None


# ----------------------------------------------------------------------------- scoring
def _intervals_minus(a0, a1, others):
    """[a0, a1] minus the union of ``others`` [(b0, b1)] -> list of intervals."""
    segs = [(a0, a1)]
    for b0, b1 in others:
        nxt = []
        for s0, s1 in segs:
            if b1 <= s0 or b0 >= s1:
                nxt.append((s0, s1))
                continue
            if b0 > s0:
                nxt.append((s0, b0))
            if b1 < s1:
                nxt.append((b1, s1))
        segs = nxt
    return segs


def _ang(a, b) -> float:
    from sbm_ros.core.geometry import angular_distance_deg
    return float(angular_distance_deg(np.asarray(a, float), np.asarray(b, float)))


def _overlap_estimates(u: Dict, utts: List, directions: List, window_two: float):
    """Two-source estimates of ``u`` while it overlaps another utterance (the one of each pair
    nearer ``u``'s truth, the other going to the other talker); and how many one-source
    estimates fell in those overlaps instead."""
    s, e = u["start_s"], u["end_s"]
    truth = (u["azimuth_deg"], u["elevation_deg"])
    est = []
    n_two_only = 0
    for k in u["overlaps"]:
        o = utts[k]
        a, b = max(s, o["start_s"]), min(e, o["end_s"])
        other = (o["azimuth_deg"], o["elevation_deg"])
        for t, d in directions:
            if not (a + window_two <= t <= b + 0.05):
                continue
            if len(d) == 2:
                c1 = _ang(d[0], truth) + _ang(d[1], other)
                c2 = _ang(d[1], truth) + _ang(d[0], other)
                est.append(d[0] if c1 <= c2 else d[1])
            else:
                n_two_only += 1
    return est, n_two_only


def _utterance_estimates(u: Dict, utts: List, directions: List, window_one: float,
                         window_two: float):
    """(estimates of ``u``'s direction, mode, one-source estimates during its overlaps).

    One-source estimates whose window lies where ``u`` is the only talker (others' tails
    included); failing those, two-source estimates during its overlaps."""
    s, e = u["start_s"], u["end_s"]
    others = [(o["start_s"], o["end_s"] + TAIL_S) for o in utts if o["index"] != u["index"]]
    solo = [seg for seg in _intervals_minus(s, e, others) if seg[1] - seg[0] >= window_one]
    est = [d[0] for t, d in directions if len(d) == 1
           and any(a + window_one <= t <= b + 0.05 for a, b in solo)]
    if not est and u["overlaps"]:
        est, n_two_only = _overlap_estimates(u, utts, directions, window_two)
        return est, "overlap (two-source)", n_two_only
    return est, "one talker", 0


def _score_localisation(row: Dict, est: List, truth, n_two_only: int) -> None:
    """Adds the median estimate and its error (degrees) to ``row``."""
    if est:
        E = np.asarray(est, float)
        med = np.median(E, axis=0)
        row["est_azimuth_deg"], row["est_elevation_deg"] = float(med[0]), float(med[1])
        row["error_deg"] = _ang(med, truth)
        row["window_error_median_deg"] = float(np.median([_ang(x, truth) for x in E]))
    else:
        row["est_azimuth_deg"] = row["est_elevation_deg"] = row["error_deg"] = None
        row["window_error_median_deg"] = None
        if n_two_only:
            row["mode"] += f": only one-source estimates ({n_two_only})"


def _score_speaking(row: Dict, u: Dict, utts: List, names: List[str], speaking: List,
                    sp_t: np.ndarray) -> None:
    """Adds who was marked speaking during ``u`` (from ONSET_S after its start) to ``row``:
    correct when the talker is marked and nobody else is but people talking during ``u`` (or
    up to RELEASE_S before its start)."""
    s, e, who = u["start_s"], u["end_s"], u["who"]
    sel = [i for i, t in enumerate(sp_t) if s + ONSET_S <= t <= e]
    frac = {}
    for n in names:
        if sel:
            frac[n] = float(np.mean([bool(speaking[i][1].get(n, False)) for i in sel]))
        else:
            frac[n] = 0.0
    marked = [n for n in names if frac[n] >= 0.5]
    busy = {o["who"] for o in utts if o["start_s"] < e and o["end_s"] + RELEASE_S > s}
    false = [n for n in marked if n not in busy]
    row["marked_fraction"] = frac
    row["marked"] = marked
    row["n_frames"] = len(sel)
    row["speaking_correct"] = bool(sel) and who in marked and not false


def _score_totals(info: Dict, rows: List[Dict], speaking: List) -> Dict:
    single = [r for r in rows if r["mode"] == "one talker"]
    errs_single = [r["error_deg"] for r in single if r["error_deg"] is not None]
    ov = [r for r in rows if r["mode"].startswith("overlap")]
    out = {
        "utterances": rows,
        "n_utterances": len(rows),
        "n_single": len(single),
        "single_within_3deg": sum(1 for x in errs_single if x <= 3.0),
        "single_localised": len(errs_single),
        "single_max_error_deg": max(errs_single) if errs_single else None,
        "single_mean_error_deg": float(np.mean(errs_single)) if errs_single else None,
        "n_overlap": len(ov),
        "overlap_errors_deg": [r["error_deg"] for r in ov],
        "speaking_correct": sum(1 for r in rows if r["speaking_correct"]),
        "speaking_accuracy": (sum(1 for r in rows if r["speaking_correct"]) / len(rows)
                              if rows else 0.0),
        "speaking_correct_overlap": sum(1 for r in ov if r["speaking_correct"]),
    }
    # silent people: how often were they (wrongly) marked?
    silent = [p["name"] for p in info["people"] if p.get("silent")]
    if speaking and silent:
        out["silent_marked_fraction"] = {
            n: float(np.mean([bool(d.get(n, False)) for _, d in speaking])) for n in silent}
    return out


def score(info: Dict, directions: List, speaking: List, window_one: float = 0.72,
          window_two: float = 1.2) -> Dict:
    """Per-utterance scores (see the module docstring).

    ``directions``: [(scene time s, [(az, el), ...])] of the localizer (one or two per message);
    ``speaking``: [(scene time s, {face id: bool speaking})].
    """
    utts = info["utterances"]
    names = [p["name"] for p in info["people"]]
    rows = []
    sp_t = np.array([t for t, _ in speaking]) if speaking else np.zeros(0)
    for u in utts:
        est, mode, n_two_only = _utterance_estimates(u, utts, directions, window_one,
                                                     window_two)
        row = dict(u)
        row["mode"] = mode
        row["n_estimates"] = len(est)
        _score_localisation(row, est, (u["azimuth_deg"], u["elevation_deg"]), n_two_only)
        _score_speaking(row, u, utts, names, speaking, sp_t)
        rows.append(row)
    return _score_totals(info, rows, speaking)


# ----------------------------------------------------------------------------- voices
def _talker_of(info: Dict, t: float, az: float, el: float) -> Optional[int]:
    """Index of the utterance whose talker (talking at ``t``, tail included) is nearest to the
    direction, within LABEL_DEG; None when nobody talking is that close."""
    best, idx = LABEL_DEG, None
    for u in info["utterances"]:
        if u["start_s"] <= t <= u["end_s"] + TAIL_S:
            d = _ang((az, el), (u["azimuth_deg"], u["elevation_deg"]))
            if d <= best:
                best, idx = d, u["index"]
    return idx


def _voice_switches(rows: List[Dict], death_timeout_s: float):
    """{person: {"ids": [voice ids in order], "switches": n, "reappearances": n}}."""
    out = {}
    for name in dict.fromkeys(r["who"] for r in rows):
        seq = [r for r in rows if r["who"] == name and r["voice"] is not None]
        ids = list(dict.fromkeys(r["voice"] for r in seq))
        sw = re = 0
        for a, b in zip(seq, seq[1:]):
            if a["voice"] != b["voice"]:
                if b["start_s"] - a["end_s"] > death_timeout_s:
                    re += 1
                else:
                    sw += 1
        out[name] = {"ids": ids, "switches": sw, "reappearances": re}
    return out


def _best_match(matches: List, voice: str, s: float, e: float):
    """(face id, confidence, number) of the best-confidence match of ``voice`` in [s, e]."""
    sel = [(c, f) for t, v, f, c in matches if v == voice and s <= t <= e]
    if not sel:
        return None, None, 0
    c, f = max(sel, key=lambda x: x[0])
    return f, float(c), len(sel)


def score_voices(info: Dict, estimates: List, matches: List, ros4hri: bool = True,
                 death_timeout_s: float = DEATH_TIMEOUT_S) -> Dict:
    """Voice ids and VOICE<->FACE matches per utterance (see the module docstring).

    ``estimates``: [(scene time s, [(az, el, voice id or None), ...])];
    ``matches``: [(scene time s, voice id, face id, confidence)].
    Returns ``{"ros4hri", "utterances": [{index, who, voice, voice_share, voice_votes,
    match_face, match_confidence, n_matches, match_correct}], "persons": {...},
    "voice_switches", "voice_found", "match_correct", "match_accuracy", "n_utterances",
    "n_matches"}``.
    """
    utts = info["utterances"]
    votes: Dict[int, Dict[str, int]] = {u["index"]: {} for u in utts}
    for t, srcs in estimates:
        for az, el, vid in srcs:
            if not vid:
                continue
            k = _talker_of(info, t, az, el)
            if k is not None:
                votes[k][vid] = votes[k].get(vid, 0) + 1
    rows = []
    for u in utts:
        v = votes[u["index"]]
        vid = max(v, key=lambda k: v[k]) if v else None
        row = {"index": u["index"], "who": u["who"], "start_s": u["start_s"],
               "end_s": u["end_s"], "voice": vid, "voice_votes": v,
               "voice_share": (v[vid] / sum(v.values())) if vid else None}
        face, conf, n = (None, None, 0) if vid is None else \
            _best_match(matches, vid, u["start_s"], u["end_s"] + TAIL_S)
        row.update(match_face=face, match_confidence=conf, n_matches=n,
                   match_correct=face is not None and face == u["who"])
        rows.append(row)
    persons = _voice_switches(rows, death_timeout_s)
    n = len(rows)
    ok = sum(1 for r in rows if r["match_correct"])
    return {"ros4hri": bool(ros4hri), "utterances": rows, "persons": persons,
            "voice_switches": sum(p["switches"] for p in persons.values()),
            "voice_found": sum(1 for r in rows if r["voice"] is not None),
            "match_correct": ok, "match_accuracy": ok / n if n else 0.0, "n_utterances": n,
            "n_matches": len(matches)}


# ----------------------------------------------------------------------------- outputs
def plot_directions(path: str, info: Dict, directions: List, speaking: List) -> str:
    """Estimated vs true azimuth / elevation over time and the speaking marks (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [p["name"] for p in info["people"]]
    colours = {n: c for n, c in zip(names, ["tab:blue", "tab:red", "tab:green", "tab:purple",
                                            "tab:orange", "tab:brown"])}
    fig, axes = plt.subplots(3, 1, figsize=(11, 8), sharex=True,
                             gridspec_kw={"height_ratios": [3, 2, 1.4]})
    for k, (ax, lab) in enumerate(zip(axes[:2], ["azimuth (deg, left +)",
                                                 "elevation (deg, up +)"])):
        for u in info["utterances"]:
            val = u["azimuth_deg"] if k == 0 else u["elevation_deg"]
            ax.plot([u["start_s"], u["end_s"]], [val, val], color=colours[u["who"]], lw=6,
                    alpha=0.35, solid_capstyle="butt")
        for n_src, mk in ((1, "o"), (2, "^")):
            pts = [(t, d[k]) for t, ds in directions if len(ds) == n_src for d in ds]
            if pts:
                P = np.asarray(pts)
                ax.plot(P[:, 0], P[:, 1], mk, ms=2.5, color="k",
                        label=f"estimate ({n_src}-source window)")
        ax.set_ylabel(lab)
        ax.grid(alpha=0.3)
    for n in names:
        axes[0].plot([], [], color=colours[n], lw=6, alpha=0.35, label=f"{n} (truth)")
    axes[0].legend(loc="upper right", fontsize=8, ncol=2)
    axes[0].set_title(f"Scenario {info.get('name', '')}: estimated vs true direction")
    ax = axes[2]
    for i, n in enumerate(names):
        for u in info["utterances"]:
            if u["who"] == n:
                ax.broken_barh([(u["start_s"], u["end_s"] - u["start_s"])], (i - 0.4, 0.35),
                               color=colours[n], alpha=0.35)
        ts = [t for t, d in speaking if d.get(n)]
        if ts:
            ax.plot(ts, [i + 0.2] * len(ts), "|", color=colours[n], ms=8)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.set_xlabel("scene time (s)")
    ax.set_title("talking (bars) and marked speaking by av_fusion (ticks)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _f(v, fmt="{:+.1f}"):
    return "—" if v is None else fmt.format(v)


def voices_totals_text(v: Dict) -> List[str]:
    """The voice totals as lines of text (summary and terminal)."""
    if not v or not v.get("ros4hri"):
        return ["ROS4HRI off: no voice ids, no VOICE↔FACE matches"]
    ids = "; ".join(f"{n} {', '.join(p['ids']) or '—'} ({p['switches']} switch"
                    f"{'' if p['switches'] == 1 else 'es'}"
                    + (f", {p['reappearances']} re-appearance(s)" if p["reappearances"] else "")
                    + ")" for n, p in v["persons"].items())
    return [f"voice ids: {ids}; {v['voice_switches']} id switch(es) in total, "
            f"{v['voice_found']}/{v['n_utterances']} utterances carried by a voice",
            f"VOICE↔FACE match names the talker's face: {v['match_correct']}/"
            f"{v['n_utterances']} utterances ({100 * v['match_accuracy']:.0f} %), "
            f"{v['n_matches']} candidate matches recorded"]


def _voices_summary(v: Optional[Dict]) -> List[str]:
    L = ["## Voices (ROS4HRI)\n"]
    if v and v.get("ros4hri"):
        L.append("| # | who | voice (share of his estimates) | best VOICE↔FACE match "
                 "(confidence, matches) | correct |")
        L.append("|---|---|---|---|---|")
        for r in v["utterances"]:
            vo = "—" if r["voice"] is None else f"{r['voice']} ({100 * r['voice_share']:.0f} %)"
            m = "—" if r["match_face"] is None else \
                f"{r['match_face']} ({r['match_confidence']:.2f}, {r['n_matches']})"
            L.append(f"| {r['index']} | {r['who']} | {vo} | {m} | "
                     f"{'yes' if r['match_correct'] else 'NO'} |")
        L.append("")
    L += [f"- {x}" for x in voices_totals_text(v)]
    L.append("")
    return L


def write_summary(path: str, info: Dict, scores: Dict, meta: Dict) -> str:
    """The Markdown summary of a run."""
    L = []
    L.append(f"# sbm_ros demo: scenario `{info.get('name', '')}`\n")
    for k, v in meta.items():
        L.append(f"- **{k}**: {v}")
    L.append("")
    L.append("## Per utterance\n")
    L.append("| # | who | lang | text | time (s) | true az, el (°) | estimated az, el (°) | "
             "error (°) | estimates | marked speaking | correct |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in scores["utterances"]:
        est = (f"{_f(r['est_azimuth_deg'])}, {_f(r['est_elevation_deg'])}"
               if r["est_azimuth_deg"] is not None else "—")
        L.append(f"| {r['index']} | {r['who']} | {r['language']} | {r['text']} | "
                 f"{r['start_s']:.2f}–{r['end_s']:.2f} | {r['azimuth_deg']:+.1f}, "
                 f"{r['elevation_deg']:+.1f} | {est} | {_f(r['error_deg'], '{:.2f}')} | "
                 f"{r['n_estimates']} ({r['mode']}) | {', '.join(r['marked']) or 'nobody'} | "
                 f"{'yes' if r['speaking_correct'] else 'NO'} |")
    L.append("")
    L.append("## Totals\n")
    s = scores
    L.append(f"- one talker at a time: **{s['single_within_3deg']}/{s['n_single']}** "
             f"utterances localised within 3° (mean error "
             f"{_f(s['single_mean_error_deg'], '{:.2f}')}°, max "
             f"{_f(s['single_max_error_deg'], '{:.2f}')}°)")
    if s["n_overlap"]:
        errs = ", ".join(_f(e, "{:.2f}") for e in s["overlap_errors_deg"])
        L.append(f"- two talkers at once: {s['n_overlap']} utterances, errors (°): {errs}")
    L.append(f"- speaking face correct: **{s['speaking_correct']}/{s['n_utterances']} "
             f"({100 * s['speaking_accuracy']:.0f} %)**, of which "
             f"{s['speaking_correct_overlap']}/{s['n_overlap']} with two talkers at once")
    if s.get("silent_marked_fraction"):
        L.append("- silent people marked speaking: " + ", ".join(
            f"{n} {100 * v:.1f} % of the frames" for n, v in s["silent_marked_fraction"].items()))
    L.append("")
    L += _voices_summary(scores.get("voices"))
    L.append("Scoring rules: see the docstring of `sbm_ros/apps/recorder.py` (direction error = "
             "median of the estimates whose window lies inside the utterance; 'marked' = marked "
             "speaking in at least half of the frames from 0.4 s after the start to the end).")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(L) + "\n")
    return path


def _with_voices(D: List, dirs: List, srcs: List) -> List:
    """[(scene time, [(az, el, voice id or None)])]: the directions with the voice ids of the
    ``sound_sources`` message of the same stamp (same sources in the same order; a message whose
    source count differs gets no voice ids)."""
    by_stamp = {s: [x[4] for x in ss] for s, ss in srcs}
    out = []
    for (t, d), (s, _) in zip(D, dirs):
        vs = by_stamp.get(s)
        if vs is None or len(vs) != len(d):
            vs = [None] * len(d)
        out.append((t, [(az, el, v) for (az, el), v in zip(d, vs)]))
    return out


# ----------------------------------------------------------------------------- recorder
class Recorder:
    """Subscriptions + buffers of a demo run (see the module docstring)."""

    def __init__(self, node, out_dir: str, video: bool = True, scenario_topic: str =
                 "virtual_head/scenario", log=None, ros4hri: bool = False):
        from geometry_msgs.msg import PoseArray
        from sensor_msgs.msg import Image
        from std_msgs.msg import String
        from vision_msgs.msg import Detection2DArray
        from sbm_ros.nodes.common import latched_qos, stream_qos
        self.node = node
        self.out_dir = os.path.abspath(out_dir)
        os.makedirs(self.out_dir, exist_ok=True)
        self.log = log or (lambda m: node.get_logger().info(m))
        self.lock = threading.Lock()
        self.info: Optional[Dict] = None
        self.t0_ns: Optional[int] = None
        self.directions: List = []        # (stamp_ns, [(az, el)])
        self.sources: List = []           # (stamp_ns, [(id, u, v, conf)])
        self.speaking: List = []          # (stamp_ns, {id: bool})
        self.truth: List = []             # (stamp_ns, [names])
        self.matches: List = []           # (stamp_ns of the voice's estimate, voice, face, conf)
        self._voice_stamp: Dict[str, int] = {}   # voice id -> stamp of its latest estimate
        self.ros4hri = bool(ros4hri)
        self.n_overlay = 0
        self.want_video = video
        self.video: Optional[VideoWriter] = None
        self.snapshots: Dict[float, tuple] = {}    # target scene time -> (|dt|, image)
        rel = stream_qos("reliable", 50)
        node.create_subscription(Image, "overlay", self._on_overlay, stream_qos("reliable", 5))
        node.create_subscription(PoseArray, "sound_directions", self._on_dirs, rel)
        node.create_subscription(Detection2DArray, "sound_sources", self._on_sources, rel)
        node.create_subscription(Detection2DArray, "speaking_faces", self._on_speaking, rel)
        node.create_subscription(Detection2DArray, "ground_truth/sound_sources", self._on_truth,
                                 rel)
        node.create_subscription(String, scenario_topic, self._on_info, latched_qos())
        if self.ros4hri:
            from hri_msgs.msg import IdsMatch
            from sbm_ros.nodes.hri_faces import MATCHES_TOPIC
            self._IdsMatch = IdsMatch
            node.create_subscription(IdsMatch, MATCHES_TOPIC, self._on_match, rel)

    # -- callbacks
    def _on_info(self, msg):
        info = json.loads(msg.data)
        with self.lock:
            first = self.info is None
            self.info = info
            if first:
                self.t0_ns = int(info["t0_ns"])
                self._plan_snapshots()
                if self.want_video:
                    self.video = VideoWriter(os.path.join(self.out_dir, "overlay.mp4"),
                                             info.get("fps", 15.0), log=self.log)

    def _plan_snapshots(self):
        """A few scene times worth a PNG: the middle of the first utterances of each talker,
        the first after a move and the middle of each overlap."""
        info = self.info
        times, seen = [], set()
        for u in info["utterances"]:
            if u["who"] not in seen and not u["overlaps"]:
                seen.add(u["who"])
                times.append(u["start_s"] + 0.6 * (u["end_s"] - u["start_s"]))
        for m in info.get("moves", []):
            for u in info["utterances"]:
                if u["who"] == m["who"] and u["start_s"] > m["end_s"]:
                    times.append(u["start_s"] + 0.6 * (u["end_s"] - u["start_s"]))
                    break
        done = set()
        for u in info["utterances"]:
            for k in u["overlaps"]:
                pair = tuple(sorted((u["index"], k)))
                if pair in done:
                    continue
                done.add(pair)
                o = info["utterances"][k]
                a, b = max(u["start_s"], o["start_s"]), min(u["end_s"], o["end_s"])
                times.append(a + 0.7 * (b - a))
        self.snapshots = {round(t, 3): (math.inf, None) for t in times[:8]}

    def scene_time(self, stamp) -> Optional[float]:
        from sbm_ros.nodes.common import stamp_to_ns
        if self.t0_ns is None:
            return None
        return (stamp_to_ns(stamp) - self.t0_ns) / 1e9

    def _on_overlay(self, msg):
        from sbm_ros.av import image_io
        t = self.scene_time(msg.header.stamp)
        if t is None:
            return
        try:
            img = image_io.to_bgr8(image_io.msg_to_array(msg), msg.encoding)
        except image_io.ImageError as exc:
            self.log(f"WARNING: overlay not recorded: {exc}")
            return
        with self.lock:
            self.n_overlay += 1
            for target, (dt, _) in self.snapshots.items():
                if abs(t - target) < dt:
                    self.snapshots[target] = (abs(t - target), img.copy())
            if self.video is not None:
                self.video.add(int(round(t * self.video.fps)), img)

    def _on_dirs(self, msg):
        from sbm_ros.core.geometry import direction_from_quaternion
        from sbm_ros.nodes.common import stamp_to_ns
        ds = []
        for p in msg.poses:
            q = p.orientation
            az, el = direction_from_quaternion((q.x, q.y, q.z, q.w))
            ds.append((float(az), float(el)))
        with self.lock:
            self.directions.append((stamp_to_ns(msg.header.stamp), ds))

    def _on_sources(self, msg):
        from sbm_ros.nodes.common import stamp_to_ns
        from sbm_ros.nodes.ros_convert import VOICE_CLASS_PREFIX
        n = len(VOICE_CLASS_PREFIX)
        ss = []
        for d in msg.detections:
            voice = next((str(r.hypothesis.class_id)[n:] for r in d.results[1:]
                          if str(r.hypothesis.class_id).startswith(VOICE_CLASS_PREFIX)), None)
            ss.append((d.id, d.bbox.center.position.x, d.bbox.center.position.y,
                       d.results[0].hypothesis.score if d.results else 1.0, voice or None))
        st = stamp_to_ns(msg.header.stamp)
        with self.lock:
            self.sources.append((st, ss))
            for x in ss:
                if x[4]:
                    self._voice_stamp[x[4]] = st

    def _on_match(self, msg):
        """A VOICE<->FACE candidate match, dated by its voice's latest estimate (IdsMatch has
        no stamp); other kinds of match are ignored."""
        M = self._IdsMatch
        if msg.id1_type == M.VOICE and msg.id2_type == M.FACE:
            voice, face = msg.id1, msg.id2
        elif msg.id1_type == M.FACE and msg.id2_type == M.VOICE:
            voice, face = msg.id2, msg.id1
        else:
            return
        with self.lock:
            st = self._voice_stamp.get(voice)
            if st is None and self.sources:
                st = self.sources[-1][0]
            if st is not None:
                self.matches.append((st, voice, face, float(msg.confidence)))

    def _on_speaking(self, msg):
        from sbm_ros.nodes.common import stamp_to_ns
        d = {det.id: bool(det.results and det.results[0].hypothesis.class_id == "speaking")
             for det in msg.detections}
        with self.lock:
            self.speaking.append((stamp_to_ns(msg.header.stamp), d))

    def _on_truth(self, msg):
        from sbm_ros.nodes.common import stamp_to_ns
        with self.lock:
            self.truth.append((stamp_to_ns(msg.header.stamp), [d.id for d in msg.detections]))

    # -- status / output
    def progress(self) -> Dict:
        with self.lock:
            t = None
            if self.truth and self.t0_ns is not None:
                t = (self.truth[-1][0] - self.t0_ns) / 1e9
            talking = self.truth[-1][1] if self.truth else []
            marked = [k for k, v in self.speaking[-1][1].items() if v] if self.speaking else []
            return {"scene_time": t, "estimates": len(self.directions),
                    "overlay_frames": self.n_overlay, "talking": talking, "marked": marked,
                    "duration": self.info["duration_s"] if self.info else None}

    def finish(self, meta: Optional[Dict] = None, window_one: float = 0.72,
               window_two: float = 1.2) -> Dict:
        """Close the video, write frames, plot, CSV/JSON and the summary; returns
        ``{"scores": ..., "files": {...}}``."""
        import cv2
        with self.lock:
            info = self.info
            video, self.video = self.video, None
            snaps = dict(self.snapshots)
            dirs, srcs, spk = list(self.directions), list(self.sources), list(self.speaking)
            matches = list(self.matches)
        files = {}
        if info is None:
            raise RuntimeError("no scenario information received from virtual_head "
                               "(topic virtual_head/scenario): nothing to score")
        t0 = self.t0_ns
        if video is not None:
            v = video.close()
            if v:
                files["video"] = v
        fdir = os.path.join(self.out_dir, "frames")
        os.makedirs(fdir, exist_ok=True)
        pngs = []
        for target, (dt, img) in sorted(snaps.items()):
            if img is not None and dt < 0.5:
                p = os.path.join(fdir, f"overlay_t{target:06.2f}s.png")
                cv2.imwrite(p, img)
                pngs.append(p)
        files["frames"] = pngs
        D = [((s - t0) / 1e9, d) for s, d in dirs]
        S = [((s - t0) / 1e9, d) for s, d in spk]
        sc = score(info, D, S, window_one, window_two)
        sc["voices"] = score_voices(info, _with_voices(D, dirs, srcs),
                                    [((s - t0) / 1e9, v, f, c) for s, v, f, c in matches],
                                    ros4hri=self.ros4hri)
        files["plot"] = plot_directions(os.path.join(self.out_dir, "directions.png"), info, D, S)
        with open(os.path.join(self.out_dir, "estimates.csv"), "w") as fh:
            fh.write("scene_time_s,stamp_ns,n_sources,source,azimuth_deg,elevation_deg\n")
            for (t, d), (s, _) in zip(D, dirs):
                for k, (az, el) in enumerate(d):
                    fh.write(f"{t:.4f},{s},{len(d)},{k},{az:.3f},{el:.3f}\n")
        files["estimates_csv"] = os.path.join(self.out_dir, "estimates.csv")
        with open(os.path.join(self.out_dir, "sound_sources.jsonl"), "w") as fh:
            for s, ss in srcs:
                fh.write(json.dumps({"scene_time_s": round((s - t0) / 1e9, 4), "sources": [
                    {"id": i, "u": round(u, 2), "v": round(v, 2), "confidence": round(c, 4),
                     "voice": vo} for i, u, v, c, vo in ss]}) + "\n")
        files["sources_jsonl"] = os.path.join(self.out_dir, "sound_sources.jsonl")
        if self.ros4hri:
            with open(os.path.join(self.out_dir, "candidate_matches.jsonl"), "w") as fh:
                for st, v, f, c in matches:
                    fh.write(json.dumps({"scene_time_s": round((st - t0) / 1e9, 4), "voice": v,
                                         "face": f, "confidence": round(c, 4)}) + "\n")
            files["matches_jsonl"] = os.path.join(self.out_dir, "candidate_matches.jsonl")
        with open(os.path.join(self.out_dir, "scores.json"), "w") as fh:
            json.dump({"scenario": info, "scores": sc, "meta": meta or {}}, fh, indent=1,
                      default=str)
        files["scores_json"] = os.path.join(self.out_dir, "scores.json")
        files["summary"] = write_summary(os.path.join(self.out_dir, "summary.md"), info, sc,
                                         meta or {})
        return {"scores": sc, "files": files}


def main(args=None) -> int:
    """Record until Ctrl-C, then write the outputs to the ``out_dir`` parameter."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from sbm_ros.nodes.common import Param, declare_parameters
    rclpy.init(args=args)
    node = rclpy.create_node("sbm_recorder")
    p = declare_parameters(node, [
        Param("out_dir", "out/demo", "Output folder of the recording.", read_only=True),
        Param("video", True, "Write the overlay video.", read_only=True),
        Param("ros4hri", False, "Also record /humans/candidate_matches (needs hri_msgs) and "
              "score the voices.", read_only=True)])
    rec = Recorder(node, p["out_dir"], video=p["video"], ros4hri=p["ros4hri"])
    node.get_logger().info(f"recording into {rec.out_dir} (Ctrl-C writes the outputs)")
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    try:
        res = rec.finish({"recorded by": "python -m sbm_ros.apps.recorder"})
        print(json.dumps(res["files"], indent=1), flush=True)
    except RuntimeError as exc:
        print(f"sbm_recorder: {exc}", file=sys.stderr)
        return 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

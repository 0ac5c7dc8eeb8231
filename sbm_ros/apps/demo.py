"""The sbm_ros demo: a scenario through the real nodes over DDS, recorded and scored.

``tools/dev demo`` (or ``python -m sbm_ros.apps.demo``) does, with progress on the terminal:

1. loads the scenario (default ``config/demo_scenario.yaml``) and prints its plan;
2. trains the models on the virtual head, once (cached, see below);
3. starts ``sbm_localizer``, ``av_fusion`` and ``virtual_head`` as separate processes
   (``python -m sbm_ros.nodes.<node> --ros-args ...``) on ``$ROS_DOMAIN_ID`` and records their
   outputs in this process (:class:`sbm_ros.apps.recorder.Recorder`);
4. writes to ``--out`` (default ``out/demo/``): ``overlay.mp4`` (the ``overlay`` topic), a few
   PNG frames in ``frames/``, ``directions.png`` (estimated vs true directions over time),
   ``summary.md`` (per utterance: who, language, true and estimated direction, error, who was
   marked speaking; totals; the ROS4HRI voices: the voice id that carried each utterance,
   voice-id switches per person, whether the VOICE<->FACE candidate match names the talker's
   face), ``estimates.csv``, ``sound_sources.jsonl``, ``candidate_matches.jsonl``,
   ``scores.json`` and the node logs in ``logs/``.

The nodes run with ``ros4hri: true`` (voices, ``/humans/candidate_matches``) when ``hri_msgs``
and ``tf2_msgs`` can be imported and the localizer declares the parameter; otherwise (or with
``--no-ros4hri``) the demo runs without and says that ROS4HRI is off.

Exit code 0 when the run completed (whatever the scores), 1 when a node died or nothing arrived,
2 for a bad command line or scenario.

Models (trained with the scenario's own head: same room, self-noise, sample rate, camera):

* one source: white noise (1 s) rendered on a 24 x 18 grid (432 positions) covering the
  camera's field of view (paper protocol), ILPD features, K = 32, **degree targets**
  (azimuth, elevation); the localizer projects to pixels with ``camera_info``;
* two sources: 10000 random pairs of those recordings (level difference N(0, 0.5 dB)), K = 60
  (the paper uses 20000 pairs and K = 100; halved to keep the first run short: about 100 s on
  2 cores; 4000 pairs with K = 40 left one talker's elevation ~5 deg off during overlaps).

They are cached in ``~/.cache/sbm_ros/models`` (``$SBM_CACHE_DIR/models``; ``--models-dir``)
under a hash of all these settings; ``--retrain`` forces training.

``--model-one FILE`` (and optionally ``--model-two FILE``) runs the scene with given model files
instead (no training), e.g. a model from a calibration sweep (``tools/dev calibrate``).

The localizer gets ``model_path`` (one source) and, when it declares them, ``model_path_two``
and ``n_sources: 0`` (automatic one/two-source mode). Otherwise it runs with the one-source
model only and the demo says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

#: the checkout (or the install prefix's site-packages) that holds the sbm_ros package
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
T_START = time.monotonic()


def say(msg: str) -> None:
    print(f"[demo {time.monotonic() - T_START:6.1f} s] {msg}", flush=True)


# ----------------------------------------------------------------------------- models
@dataclass(frozen=True)
class TrainSettings:
    grid_az: int = 24
    grid_el: int = 18
    duration_s: float = 1.0
    components: int = 32
    two_source: bool = True
    pairs: int = 10000
    components_two: int = 60
    features: str = "ilpd"
    units: str = "degrees"
    seed: int = 0
    max_iter: int = 100

    def describe(self) -> str:
        s = (f"one source: {self.grid_az}x{self.grid_el} grid of {self.duration_s:g} s white "
             f"noise over the camera field of view, {self.features}, K={self.components}, "
             f"{self.units} targets")
        if self.two_source:
            s += f"; two sources: {self.pairs} pairs, K={self.components_two}"
        return s


def model_key(sc, ts: TrainSettings) -> str:
    d = {"settings": asdict(ts), "room": sc.room, "snr_db": sc.snr_db,
         "sample_rate": sc.sample_rate, "camera": sc.camera.to_json_dict(),
         "version": 4}   # 2: models carry frame_var (automatic source count); 3: the
    # two-source model carries its covariance factor (cov_scale); 4: two-source EM stops with
    # TWO_SOURCE_TOL_GAIN
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def ensure_models(sc, ts: TrainSettings, models_dir: str, retrain: bool = False):
    """(one-source model path, two-source model path or None); trains what is missing."""
    from sbm_ros.core.training import train_model
    from sbm_ros.sim import make_training_set
    os.makedirs(models_dir, exist_ok=True)
    key = model_key(sc, ts)
    p1 = os.path.join(models_dir, f"sbm_{sc.camera_name}_{key}_1src.npz")
    p2 = os.path.join(models_dir, f"sbm_{sc.camera_name}_{key}_2src.npz") if ts.two_source \
        else None
    need = [p for p in (p1, p2) if p and (retrain or not os.path.exists(p))]
    with open(os.path.join(models_dir, f"sbm_{sc.camera_name}_{key}.json"), "w") as fh:
        json.dump({"settings": asdict(ts), "room": sc.room, "snr_db": sc.snr_db,
                   "camera": sc.camera_name, "sample_rate": sc.sample_rate}, fh, indent=1,
                  default=str)
    if not need:
        say(f"models cached: {p1}" + (f", {p2}" if p2 else ""))
        return p1, p2
    say(f"training models on the virtual head (first run only): {ts.describe()}")
    tmp = tempfile.mkdtemp(prefix=".dataset_", dir=models_dir)
    try:
        t0 = time.monotonic()
        head = sc.make_head()
        ds = make_training_set(os.path.join(tmp, "ds"), head, sc.camera, n_az=ts.grid_az,
                               n_el=ts.grid_el, duration_s=ts.duration_s, units=ts.units,
                               seed=ts.seed)
        say(f"  rendered {ts.grid_az * ts.grid_el} training recordings in "
            f"{time.monotonic() - t0:.1f} s")

        def log(m):
            say(f"  [train] {m}")
        if p1 in need:
            r = train_model(ds, p1, n_sources=1, n_components=ts.components,
                            features=ts.features, max_iter=ts.max_iter, seed=ts.seed, log=log)
        if p2 and p2 in need:
            r = train_model(ds, p2, n_sources=2, n_components=ts.components_two,
                            features=ts.features, pairs=ts.pairs, max_iter=ts.max_iter,
                            seed=ts.seed, log=log)
        del r
        say(f"models trained in {time.monotonic() - t0:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return p1, p2


def localizer_params() -> List[str]:
    """Names of the parameters the sbm_localizer node declares (read from its source)."""
    try:
        from sbm_ros.nodes import sbm_localizer
        return [p.name for p in sbm_localizer.PARAMS]
    except Exception:  # noqa: BLE001 - e.g. rclpy missing: the node start will say so
        return ["model_path", "n_sources"]


# ----------------------------------------------------------------------------- processes
def _param_text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def _stop_with_parent() -> None:  # runs in the node's process between fork and exec
    """Linux: the node gets SIGTERM (a clean rclpy shutdown) when the demo process dies, even
    by SIGKILL (a test timeout, an OOM kill), instead of running on orphaned."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PDEATHSIG
    except (OSError, AttributeError):
        pass


class NodeRun:
    """``python -m sbm_ros.nodes.<module> --ros-args ...`` with its output in a log file; the
    node is stopped when the demo process dies (Linux)."""

    def __init__(self, module: str, params: Dict, log_dir: str, env: Dict[str, str],
                 remaps: Optional[Dict] = None):
        self.name = module
        self.args = [sys.executable, "-m", f"sbm_ros.nodes.{module}", "--ros-args"]
        for k, v in params.items():
            self.args += ["-p", f"{k}:={_param_text(v)}"]
        for k, v in (remaps or {}).items():
            self.args += ["-r", f"{k}:={v}"]
        self.log_path = os.path.join(log_dir, f"{module}.log")
        self.env = env
        self.proc = None

    def start(self) -> "NodeRun":
        self._fh = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=self._fh, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env, cwd=ROOT,
                                     start_new_session=True,
                                     preexec_fn=_stop_with_parent if os.name == "posix" else None)
        return self

    def text(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def tail(self, n: int = 25) -> str:
        return "\n".join(self.text().splitlines()[-n:])

    @property
    def returncode(self):
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float = 5.0) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGINT)
                p.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(3)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self._fh.close()


def _node_env(log_dir: str) -> Dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONUNBUFFERED": "1", "RCUTILS_COLORIZED_OUTPUT": "0",
                "RCUTILS_LOGGING_BUFFERED_STREAM": "0",
                "RCUTILS_CONSOLE_OUTPUT_FORMAT": "[{severity}] [{time}] [{name}]: {message}",
                "ROS_LOG_DIR": os.path.join(log_dir, "ros")})
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    pp = env.get("PYTHONPATH", "")
    if ROOT not in pp.split(os.pathsep):
        env["PYTHONPATH"] = ROOT + (os.pathsep + pp if pp else "")
    return env


def _wait_log(run: NodeRun, pattern: str, timeout: float) -> bool:
    import re
    rx = re.compile(pattern)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if rx.search(run.text()):
            return True
        if run.returncode is not None:
            return False
        time.sleep(0.1)
    return False


# ----------------------------------------------------------------------------- main
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sbm_ros.apps.demo",
        description="Run a scenario through virtual_head -> sbm_localizer -> av_fusion over "
                    "DDS, record the overlay and score the run.")
    p.add_argument("--scenario", default=None, help="scenario YAML (default: "
                   "config/demo_scenario.yaml)")
    p.add_argument("-o", "--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--rate", type=float, default=1.0,
                   help="virtual_head speed (1.0 = real time, default)")
    p.add_argument("--models-dir", default=None,
                   help="model cache (default ~/.cache/sbm_ros/models or $SBM_CACHE_DIR/models)")
    p.add_argument("--retrain", action="store_true", help="train the models even if cached")
    p.add_argument("--grid", default="24x18", help="training grid AZxEL (default 24x18)")
    p.add_argument("-K", "--components", type=int, default=32, help="K, one source (32)")
    p.add_argument("--pairs", type=int, default=10000,
                   help="two-source training pairs (10000)")
    p.add_argument("--components-two", type=int, default=60, help="K, two sources (60)")
    p.add_argument("--one-source", action="store_true",
                   help="do not train or use a two-source model")
    p.add_argument("--model-one", default=None, metavar="FILE",
                   help="one-source model file to localise with instead of the grid model "
                   "(e.g. from a calibration sweep: tools/dev calibrate); no training")
    p.add_argument("--model-two", default=None, metavar="FILE",
                   help="two-source model file for the automatic mode (with --model-one; "
                   "without it the demo runs with the one-source model only)")
    p.add_argument("--no-video", action="store_true", help="no overlay video")
    p.add_argument("--no-ros4hri", action="store_true",
                   help="run the nodes without their ROS4HRI output (voices, candidate matches)")
    p.add_argument("--timeout", type=float, default=None,
                   help="give up after this many seconds of scene publishing (default: scene "
                        "duration / rate + 60)")
    p.add_argument("--fusion-param", action="append", default=[], metavar="NAME:=VALUE",
                   help="extra av_fusion parameter (repeatable)")
    p.add_argument("--localizer-param", action="append", default=[], metavar="NAME:=VALUE",
                   help="extra sbm_localizer parameter (repeatable)")
    return p


def _extra(items) -> Dict:
    import yaml
    out = {}
    for it in items:
        if ":=" not in it:
            raise SystemExit(f"bad parameter {it!r}: expected NAME:=VALUE")
        k, v = it.split(":=", 1)
        out[k] = yaml.safe_load(v)
    return out


@dataclass
class _DemoRun:
    """What the demo settles before the nodes start, and its timings."""
    args: argparse.Namespace
    path: str                       # scenario file
    sc: object                      # sbm_ros.sim.scenario.Scenario
    tl: object                      # sbm_ros.sim.timeline.Timeline (no audio)
    out: str
    logs: str
    ts: TrainSettings
    m1: str = ""
    m2: Optional[str] = None
    mode: str = ""
    ros4hri: bool = False
    ros4hri_note: str = ""
    notes: List[str] = field(default_factory=list)
    loc_p: Dict = field(default_factory=dict)
    fus_p: Dict = field(default_factory=dict)
    t_train: float = 0.0
    t_run: float = 0.0


def _clear_outputs(out: str) -> None:
    """Removes what an earlier run wrote to ``out`` (other files stay)."""
    if os.path.isdir(out):
        for name in ("overlay.mp4", "frames", "directions.png", "summary.md", "scores.json",
                     "estimates.csv", "sound_sources.jsonl", "candidate_matches.jsonl", "logs",
                     "overlay_frames"):
            p = os.path.join(out, name)
            shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else (
                os.path.exists(p) and os.remove(p))


def _say_plan(sc, tl, path: str) -> None:
    say(f"scenario {sc.name!r} ({path}): {tl.duration_s:.1f} s, camera {sc.camera!r}")
    for p in sc.people:
        tag = "silent" if p.name in sc.silent_people else f"{p.language} voice {p.voice}"
        say(f"  {p.name:10s} az {p.direction[0]:+5.1f} el {p.direction[1]:+5.1f} deg  ({tag})")
    for u in tl.utterances:
        ov = f"  [with #{', #'.join(map(str, u.overlaps))}]" if u.overlaps else ""
        say(f"  #{u.index} {u.start_s:5.2f}-{u.end_s:5.2f} s {u.who}: '{u.text}'{ov}")
    for who, a, b, f, to in tl.moves:
        say(f"  {who} moves {a:.2f}-{b:.2f} s from {f} to {to}")


def _prepare(args) -> Optional[_DemoRun]:
    """Checks the command line, loads the scenario (timings only), clears the output folder and
    prints the plan; None (after an error message) for a bad grid or scenario."""
    from sbm_ros.sim.scenario import ScenarioError, default_scenario_path, load_scenario
    from sbm_ros.sim.timeline import build_timeline
    try:
        gx, gy = (int(v) for v in args.grid.lower().split("x"))
    except ValueError:
        print(f"demo: error: --grid must look like 24x18, got {args.grid!r}", file=sys.stderr)
        return None
    path = args.scenario or default_scenario_path()
    try:
        sc = load_scenario(path)
        tl = build_timeline(sc, render_audio=False)
    except ScenarioError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return None
    out = os.path.abspath(args.out)
    logs = os.path.join(out, "logs")
    _clear_outputs(out)
    os.makedirs(logs, exist_ok=True)
    _say_plan(sc, tl, path)
    ts = TrainSettings(grid_az=gx, grid_el=gy, components=args.components,
                       two_source=not args.one_source, pairs=args.pairs,
                       components_two=args.components_two)
    return _DemoRun(args, path, sc, tl, out, logs, ts)


def _models_dir(args) -> str:
    if args.models_dir:
        return os.path.abspath(os.path.expanduser(args.models_dir))
    from sbm_ros.sim import cache_dir
    return str(cache_dir() / "models")


def ros4hri_missing(lparams: List[str]) -> str:
    """Why the ROS4HRI output cannot run here ('' = it can): hri_msgs / tf2_msgs missing, or a
    localizer without the ``ros4hri`` parameter."""
    if "ros4hri" not in lparams:
        return "sbm_localizer does not declare the ros4hri parameter"
    try:
        from sbm_ros.nodes.ros4hri import hri_interfaces
        return hri_interfaces() or ""
    except Exception as exc:  # noqa: BLE001 - e.g. rclpy missing: the node start will say so
        return f"{type(exc).__name__}: {exc}"


def _node_params(run: _DemoRun) -> None:
    """The localizer's parameters and mode (automatic one/two sources when it declares
    ``model_path_two``), the ROS4HRI output when it can run, and av_fusion's, with the command
    line's extras."""
    lparams = localizer_params()
    run.loc_p = {"model_path": run.m1}
    auto = run.m2 is not None and "model_path_two" in lparams
    if auto:
        run.loc_p["model_path_two"] = run.m2
        run.loc_p["n_sources"] = 0
        run.mode = "automatic one/two-source (model_path + model_path_two, n_sources 0)"
    else:
        run.mode = "one-source model only"
        if run.m2 is not None:
            run.notes.append("sbm_localizer does not declare model_path_two yet: ran with the "
                             "one-source model only (overlapping speech is localised as one "
                             "source)")
            say("NOTE: " + run.notes[-1])
    why = "--no-ros4hri" if run.args.no_ros4hri else ros4hri_missing(lparams)
    run.ros4hri = not why
    if run.ros4hri:
        run.loc_p["ros4hri"] = True
        run.ros4hri_note = ("on: voices (/humans/voices/...) from sbm_localizer, "
                            "/humans/candidate_matches from av_fusion")
    else:
        run.ros4hri_note = f"off ({why}): no voice ids, no candidate matches"
    say(f"ROS4HRI {run.ros4hri_note}")
    run.loc_p.update(_extra(run.args.localizer_param))
    # images are ~1 MB: best-effort delivery of such large samples loses many over UDP
    run.fus_p = {"overlay_rate": 0.0, "image_reliability": "reliable"}
    if run.ros4hri:
        run.fus_p["ros4hri"] = True
    run.fus_p.update(_extra(run.args.fusion_param))


def _spin_in_background(ex):
    """(stop event, thread) spinning the executor ``ex`` until the event is set."""
    stop_spin = threading.Event()

    def spin():
        while not stop_spin.is_set():
            try:
                ex.spin_once(timeout_sec=0.05)
            except Exception as exc:  # noqa: BLE001
                say(f"WARNING: recorder callback failed: {type(exc).__name__}: {exc}")
    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    return stop_spin, spinner


def _wait_discovery(node) -> None:
    """Until av_fusion and this recorder are subscribed to the localiser's estimates and
    av_fusion's marks are visible here (a loaded machine may need seconds; the virtual head
    then waits for its own subscribers); at most 30 s."""
    t_disc = time.monotonic()
    while time.monotonic() - t_disc < 30.0:
        if (node.count_publishers("sound_sources") >= 1
                and node.count_subscribers("sound_sources") >= 2
                and node.count_publishers("speaking_faces") >= 1):
            break
        time.sleep(0.05)
    else:
        say("WARNING: the nodes did not all discover each other within 30 s; starting anyway")


def _say_progress(rec) -> None:
    pr = rec.progress()
    if pr["scene_time"] is not None:
        say(f"scene {pr['scene_time']:5.1f}/{pr['duration']:.1f} s: "
            f"{pr['estimates']} estimates, {pr['overlay_frames']} overlay frames; "
            f"talking: {', '.join(pr['talking']) or '-'}; marked speaking: "
            f"{', '.join(pr['marked']) or '-'}")


def _watch(runs: Dict[str, NodeRun], rec, args, tl) -> int:
    """Until the virtual head has played the scene (0), a node died or the time is up (1);
    progress every 3 s."""
    timeout = args.timeout or (tl.duration_s / args.rate + 90.0)
    deadline = time.monotonic() + timeout
    next_print = 0.0
    while True:
        time.sleep(0.2)
        dead = [(n, r.returncode) for n, r in runs.items() if r.returncode is not None]
        vh_rc = runs["virtual_head"].returncode
        if vh_rc == 0:
            say("virtual_head finished the scenario")
            time.sleep(1.5)           # trailing estimates / overlays
            return 0
        bad = [(n, c) for n, c in dead if n != "virtual_head" or c != 0]
        if bad:
            for n, c in bad:
                say(f"ERROR: {n} died (exit code {c}); log tail:\n{runs[n].tail()}")
            return 1
        if time.monotonic() > deadline:
            say(f"ERROR: the scenario did not finish within {timeout:.0f} s")
            return 1
        if time.monotonic() >= next_print:
            _say_progress(rec)
            next_print = time.monotonic() + 3.0


def _run_scene(run: _DemoRun, runs: Dict[str, NodeRun], node, rec, env, domain: int) -> int:
    """Starts the localizer and av_fusion, then the virtual head once they are ready and
    discovered, and watches the scene; raises RuntimeError when a node did not start."""
    args = run.args
    vh_p = {"scenario": os.path.abspath(run.path), "rate": float(args.rate),
            "exit_when_done": True, "wait_for_subscribers": 1, "start_delay_s": 2.0}
    say(f"starting sbm_localizer ({run.mode}) and av_fusion on ROS_DOMAIN_ID={domain}; logs "
        f"in {run.logs}")
    for r in runs.values():
        r.start()
    ok = _wait_log(runs["sbm_localizer"], r"\]: model ", 60) and \
        _wait_log(runs["av_fusion"], "av_fusion ready", 60)
    if not ok:
        for name, r in runs.items():
            say(f"{name} (exit code {r.returncode}) log tail:\n{r.tail()}")
        raise RuntimeError("a node did not start")
    _wait_discovery(node)
    runs["virtual_head"] = NodeRun("virtual_head", vh_p, run.logs, env).start()
    say(f"virtual_head started (rate {args.rate:g}x): rendering the scene, then publishing")
    return _watch(runs, rec, args, run.tl)


def _haar_check(tl) -> str:
    """Informative: OpenCV's Haar cascade on a drawn frame of the first utterance."""
    try:
        from sbm_ros.sim.faces import haar_faces
        from sbm_ros.sim.scene_view import SceneRenderer
        img, states = SceneRenderer(tl).image_at(tl.utterances[0].start_s + 0.5)
        found = haar_faces(img)
        return f"{len(found)} detection(s) for {len(states)} drawn faces"
    except Exception as exc:  # noqa: BLE001 - informative only
        return f"not run ({exc})"


def _meta(run: _DemoRun) -> Dict:
    """The run's settings and timings for the summary."""
    sc, args = run.sc, run.args
    meta = {
        "scenario file": run.path,
        "camera": f"{sc.camera_name}: {sc.camera.width}x{sc.camera.height}, "
                  f"{sc.camera.hfov_deg:g}x{sc.camera.vfov_deg:g} deg",
        "room": f"{sc.room}, self-noise SNR {sc.snr_db} dB",
        "models": run.ts.describe() if not (run.args.model_one or run.args.model_two)
        else "given on the command line (--model-one / --model-two)",
        "model files": f"{run.m1}" + (f", {run.m2}" if run.m2 else ""),
        "localizer mode": run.mode,
        "ROS4HRI": run.ros4hri_note,
        "rate": f"{args.rate:g}x real time",
        "faces": "ground truth + noise (jitter 2.5 px, size 5 %), not a face detector",
        "timings": f"training/cache {run.t_train:.1f} s, run {run.t_run:.1f} s, total "
                   f"{time.monotonic() - T_START:.1f} s",
    }
    for k, n in enumerate(run.notes):
        meta[f"note {k + 1}"] = n
    meta["OpenCV Haar cascade on a drawn frame"] = _haar_check(run.tl)
    return meta


def _write_outputs(run: _DemoRun, rec):
    """(exit code, recorder result or None): the recorder's outputs after a completed run."""
    rc, result = 0, None
    pr = rec.progress()
    if pr["estimates"] == 0:
        say("ERROR: no estimates arrived from sbm_localizer (see logs/sbm_localizer.log)")
        rc = 1
    say("writing outputs ...")
    meta = _meta(run)
    try:
        result = rec.finish(meta)
    except RuntimeError as exc:
        say(f"ERROR: {exc}")
        rc = 1
    return rc, result


def _record(run: _DemoRun):
    """(exit code, recorder result or None): the nodes as subprocesses, the recorder in this
    process (its own ROS context on ``$ROS_DOMAIN_ID``), the outputs when the run completed."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from .recorder import Recorder
    env = _node_env(run.logs)
    domain = int(os.environ.get("ROS_DOMAIN_ID", "0") or 0)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("sbm_demo_recorder", context=ctx)
    rec = Recorder(node, run.out, video=not run.args.no_video, log=say, ros4hri=run.ros4hri)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    stop_spin, spinner = _spin_in_background(ex)
    runs = {
        "sbm_localizer": NodeRun("sbm_localizer", run.loc_p, run.logs, env),
        "av_fusion": NodeRun("av_fusion", run.fus_p, run.logs, env),
    }
    rc = 0
    result = None
    t_run = time.monotonic()
    try:
        rc = _run_scene(run, runs, node, rec, env, domain)
    except RuntimeError as exc:
        say(f"ERROR: {exc}")
        rc = 1
    finally:
        for r in reversed(list(runs.values())):
            r.stop()
        stop_spin.set()
        spinner.join(timeout=2.0)
    run.t_run = time.monotonic() - t_run
    if rc == 0:
        rc, result = _write_outputs(run, rec)
    node.destroy_node()
    rclpy.try_shutdown(context=ctx)
    return rc, result


def _say_results(result: Dict, out: str) -> None:
    s = result["scores"]
    f = result["files"]
    v = s.get("voices") or {}
    vrows = {r["index"]: r for r in v.get("utterances", [])} if v.get("ros4hri") else {}
    say("results:")
    for r in s["utterances"]:
        err = "   —  " if r["error_deg"] is None else f"{r['error_deg']:5.2f}°"
        ok = 'ok' if r['speaking_correct'] else 'WRONG'
        vr = vrows.get(r["index"])
        vo = ""
        if vr is not None:
            vo = (f"  voice {vr['voice'] or '—':4s} match {vr['match_face'] or '—'}"
                  f"{'' if vr['match_correct'] else ' (WRONG)'}")
        say(f"  #{r['index']} {r['who']:9s} {r['mode'][:22]:22s} error {err}  marked "
            f"{', '.join(r['marked']) or 'nobody':18s} {ok}{vo}")
    mx = s['single_max_error_deg']
    say(f"one talker: {s['single_within_3deg']}/{s['n_single']} within 3° (max "
        f"{'—' if mx is None else round(mx, 2)}°); "
        f"speaking face correct {s['speaking_correct']}/{s['n_utterances']} "
        f"({100 * s['speaking_accuracy']:.0f} %)")
    from .recorder import voices_totals_text
    for line in voices_totals_text(v):
        say(line)
    say(f"summary:   {f['summary']}")
    say(f"video:     {f.get('video', '(none)')}")
    say(f"frames:    {', '.join(os.path.basename(p) for p in f['frames'])} in "
        f"{os.path.join(out, 'frames')}")
    say(f"plot:      {f['plot']}")
    say(f"estimates: {f['estimates_csv']}")


def _given_models(args):
    """(one-source, two-source or None) from --model-one / --model-two, checked."""
    from sbm_ros.core.model import SBMModel
    if not args.model_one:
        raise ValueError("--model-two needs --model-one")
    out = []
    given = (("--model-one", args.model_one, 1), ("--model-two", args.model_two, 2))
    for flag, path, n in given:
        if not path:
            out.append(None)
            continue
        path = os.path.abspath(os.path.expanduser(path))
        m = SBMModel.load(path)
        if m.n_sources != n:
            raise ValueError(f"{flag} {path} is a {m.n_sources}-source model")
        out.append(path)
    say(f"models given: {out[0]}" + (f", {out[1]}" if out[1] else " (one-source only)"))
    return out[0], out[1]


def _terminate_as_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    # SIGTERM (kill, a supervisor, a test timeout) stops the nodes like Ctrl-C does
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    run = _prepare(args)
    if run is None:
        return 2
    models_dir = _models_dir(args)
    t_train = time.monotonic()
    try:
        if args.model_one or args.model_two:
            run.m1, run.m2 = _given_models(args)
        else:
            run.m1, run.m2 = ensure_models(run.sc, run.ts, models_dir, retrain=args.retrain)
    except Exception as exc:  # noqa: BLE001 - training failure ends the demo with a reason
        what = "model" if (args.model_one or args.model_two) else "training failed"
        print(f"demo: error: {what}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    run.t_train = time.monotonic() - t_train
    _node_params(run)
    try:
        rc, result = _record(run)
    except KeyboardInterrupt:
        say("interrupted: the nodes were stopped; no results written")
        return 130
    if result is not None:
        _say_results(result, run.out)
    say(f"done in {time.monotonic() - T_START:.1f} s (exit code {rc})")
    return rc


if __name__ == "__main__":
    sys.exit(main())

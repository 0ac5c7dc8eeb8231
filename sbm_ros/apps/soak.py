"""sbm-soak: a long run of binaural_capture -> sbm_localizer over real DDS, with figures.

Stages (each node a separate process, started here, on its own DDS domain ``--domain``):

1. **Models and recording.** Small virtual-head models (one source, and two sources for the
   automatic mode; trained once and cached like the demo's, ``--models-dir``) or the given
   ``--model`` / ``--model-two``. A recording of ``--audio-s`` seconds (default one hour) is
   rendered on the virtual head: one talker (speech-like babble: syllable bursts with pauses)
   at a new random position of the model's field every ``--segment-s`` seconds; the WAV and
   its ground truth are cached in the models folder.
2. **Soak**, per mode (``--modes one,auto``): ``binaural_capture`` plays the WAV at
   ``--speed`` (default 10x) to ``sbm_localizer``. Figures: memory slope (MB per hour of audio,
   least squares over the run after its first 10 %), CPU seconds per audio second of each
   node (from /proc, :mod:`sbm_ros.apps.procstat`), estimates received vs expected (audio s x
   estimate_rate; windows in the babble's pauses give none), chunks published / received,
   dropped chunks and the other stream counters (the localiser's /diagnostics), the "cannot
   keep up" warnings, and the median localisation error of the first and the last 10 % of the
   audio (estimates whose window lies inside one talker segment).
3. **Speed sweep** (``--sweep``): short runs (``--sweep-s`` of audio) at increasing speeds
   against one localiser per mode; a speed is kept up with when every published chunk was
   received and handled, no chunk was dropped and the localiser never warned "cannot keep up".
4. **Latency** at real-time speed (``--latency-s``): chunk stamp -> ``sound_directions``
   received here (median and 95th percentile; it includes the chunk's own length and DDS both
   ways), and the localiser's own ``processing_s`` (chunk arrival -> publish).
5. **Fuzz** (``--fuzz``): random bytes, odd sizes, empty and oversized chunks, all-zero audio,
   NaN and inf in F32LE audio, AudioInfo with wrong rates / channels / codings, stamps 0,
   stamps jumping back and far ahead; then good audio again: the localiser must still run
   and publish.

The report is printed, written as JSON (``--json``) and, with ``--write-docs``, as markdown
(``docs/soak.md`` or ``--docs PATH``). A quick check: ``sbm-soak --audio-s 120 --sweep 5,20
--sweep-s 10 --latency-s 10``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np

from .procstat import ProcSampler, cpu_seconds, slope

RATE = 16000
ESTIMATE_RATE = 10.0


def say(msg: str) -> None:
    print(f"[soak] {msg}", flush=True)


# ----------------------------------------------------------------------------- recording

def babble(n: int, rng: np.random.Generator, rate: int = RATE) -> np.ndarray:
    """Speech-like mono signal: tilted noise in syllable bursts (0.1-0.35 s) and pauses
    (0.05-0.6 s), levels varying by +-6 dB."""
    x = rng.normal(0.0, 1.0, n + 2)
    x = (x[2:] + 0.9 * x[1:-1] + 0.5 * x[:-2]) * 0.05
    env = np.zeros(n)
    i = int(rng.uniform(0, 0.2) * rate)
    while i < n:
        on = int(rng.uniform(0.1, 0.35) * rate)
        ramp = np.hanning(on) ** 0.5
        seg = slice(i, min(n, i + on))
        env[seg] = ramp[: seg.stop - seg.start] * 10 ** (rng.uniform(-6, 6) / 20)
        i += on + int(rng.uniform(0.05, 0.6) * rate)
    return x * env


def render_recording(path: str, audio_s: float, head, field, seed: int = 0,
                     segment_s: float = 4.0) -> List[dict]:
    """Write a 16-bit stereo WAV of ``audio_s`` seconds: one talker per ``segment_s``
    segment at a random (az, el) in the field box ``(lo, hi)``; returns the segments."""
    import soundfile as sf
    rng = np.random.default_rng(seed)
    lo, hi = (np.asarray(v, dtype=float) for v in field)
    truth = []
    n_total = int(round(audio_s * RATE))
    seg_n = max(1, int(round(segment_s * RATE)))
    tmp = path + ".part"
    with sf.SoundFile(tmp, "w", samplerate=RATE, channels=2, subtype="PCM_16",
                      format="WAV") as fh:
        done = 0
        while done < n_total:
            n = min(seg_n, n_total - done)
            pos = lo + rng.uniform(0, 1, lo.shape) * (hi - lo)
            y = head.render(babble(n, rng), float(pos[0]), float(pos[1]))[:n]
            fh.write(np.clip(y, -1.0, 1.0))
            truth.append({"t0": done / RATE, "t1": (done + n) / RATE,
                          "position": [float(v) for v in pos]})
            done += n
    os.replace(tmp, path)
    return truth


def prepare(args) -> dict:
    """Model paths, the WAV and its truth (cached in the models folder)."""
    from sbm_ros.core.model import SBMModel
    from sbm_ros.sim.hrtf import cache_dir
    from sbm_ros.sim.scenario import default_scenario_path, load_scenario
    from .demo import TrainSettings, ensure_models
    sc = load_scenario(default_scenario_path())
    models_dir = args.models_dir or str(cache_dir() / "soak")
    os.makedirs(models_dir, exist_ok=True)
    if args.model:
        one, two = args.model, args.model_two
    else:
        ts = TrainSettings(grid_az=12, grid_el=8, duration_s=0.5, components=16, pairs=3000,
                           components_two=24, max_iter=40)
        one, two = ensure_models(sc, ts, models_dir)
    m1 = SBMModel.load(one)
    f = m1.info.get("field") if isinstance(m1.info, dict) else None
    field = (f["lo"], f["hi"]) if f else ([-20.0, -10.0], [20.0, 10.0])
    wav = os.path.join(models_dir, f"soak_{int(args.audio_s)}s_seed{args.seed}.wav")
    meta = wav[:-4] + ".json"
    if os.path.exists(wav) and os.path.exists(meta):
        with open(meta) as fh:
            truth = json.load(fh)["segments"]
    else:
        say(f"rendering {args.audio_s:g} s of audio on the virtual head -> {wav}")
        t0 = time.monotonic()
        truth = render_recording(wav, args.audio_s, sc.make_head(), field, args.seed,
                                 args.segment_s)
        with open(meta, "w") as fh:
            json.dump({"segments": truth, "model": one}, fh)
        say(f"  rendered in {time.monotonic() - t0:.1f} s")
    import soundfile as sf
    return {"one": one, "two": two, "wav": wav, "truth": truth, "field": field,
            "wav_frames": sf.info(wav).frames}


# ----------------------------------------------------------------------------- processes

def _die_with_parent():  # child, between fork and exec
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))
    except (OSError, AttributeError):
        pass


class Proc:
    """A node started as ``python -m sbm_ros.nodes.<module>`` (own session, log file)."""

    def __init__(self, module: str, params: Dict, domain: int, log_dir: str, tag: str = ""):
        args = [sys.executable, "-m", f"sbm_ros.nodes.{module}", "--ros-args"]
        for k, v in params.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, str):
                v = json.dumps(v)
            args += ["-p", f"{k}:={v}"]
        env = dict(os.environ)
        env.update({"ROS_DOMAIN_ID": str(domain), "PYTHONUNBUFFERED": "1",
                    "RCUTILS_COLORIZED_OUTPUT": "0", "OPENBLAS_NUM_THREADS": "1",
                    "OMP_NUM_THREADS": "1", "ROS_LOG_DIR": os.path.join(log_dir, "ros_log")})
        env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        self.module = module
        self.log = os.path.join(log_dir, f"{module}{tag}.log")
        self._fh = open(self.log, "wb")
        kw = {"preexec_fn": _die_with_parent} if sys.platform.startswith("linux") else {}
        self.proc = subprocess.Popen(args, env=env, stdout=self._fh, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, **kw)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        try:
            with open(self.log, "rb") as fh:
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 8.0) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._fh.close()
        return self.proc.returncode


class Graph:
    """The soak's own rclpy node: sound_directions, /diagnostics and the audio stamps."""

    def __init__(self, domain: int):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseArray
        from rclpy.executors import SingleThreadedExecutor
        from sbm_ros.nodes.common import stream_qos
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node("sbm_soak", context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.dirs: List[tuple] = []            # (receive wall ns, stamp ns, [(az, el)])
        self.diag: Dict[str, dict] = {}       # status name prefix -> last values (+ level)
        self.warn_behind = 0
        self.node.create_subscription(PoseArray, "/sound_directions", self._on_dirs,
                                      stream_qos("reliable", 100))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)

    def _on_dirs(self, msg) -> None:
        from sbm_ros.core.geometry import direction_from_quaternion
        now = time.time_ns()
        st = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        out = []
        for p in msg.poses:
            o = p.orientation
            try:
                out.append(direction_from_quaternion((o.x, o.y, o.z, o.w)))
            except ValueError:
                pass
        self.dirs.append((now, st, out))

    def _on_diag(self, msg) -> None:
        for s in msg.status:
            key = ("localizer" if "localisation" in s.name else
                   "capture" if "capture" in s.name else s.name)
            vals = {kv.key: kv.value for kv in s.values}
            vals["_level"] = int.from_bytes(s.level, "little") if isinstance(
                s.level, bytes) else int(s.level)
            vals["_message"] = s.message
            if key == "localizer" and "cannot keep up" in s.message:
                self.warn_behind += 1
            self.diag[key] = vals

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            self.ex.spin_once(timeout_sec=min(left, 0.05))

    def spin_until(self, pred, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            self.ex.spin_once(timeout_sec=0.05)
        return pred()

    def close(self) -> None:
        import rclpy
        self.ex.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)


def _wait_log(p: Proc, pattern: str, timeout: float, graph: Graph) -> bool:
    import re
    rx = re.compile(pattern)
    return graph.spin_until(lambda: bool(rx.search(p.text())) or not p.alive(), timeout) and \
        p.alive()


def _localizer(prep, mode: str, domain: int, log_dir: str, graph: Graph, tag: str) -> Proc:
    params = {"model_path": prep["one"], "blas_threads": 1, "diagnostics_period_s": 0.5}
    if mode == "auto":
        if not prep["two"]:
            raise SystemExit("sbm-soak: mode 'auto' needs a two-source model (--model-two)")
        params.update(model_path_two=prep["two"], n_sources=0)
    graph.diag.pop("localizer", None)          # the counters of a previous localiser
    loc = Proc("sbm_localizer", params, domain, log_dir, tag)
    ready = r"two-source model" if mode == "auto" else r"model .*: 1 source"
    # The new node's own diagnostics: no chunk counted yet. The previous localiser's last
    # messages (same status name) may still be queued here after it exited, and counting from
    # them took its chunks as this node's (an automatic-mode run read '6000 / 0 chunks').
    if not _wait_log(loc, ready, 90.0, graph) or not graph.spin_until(
            lambda: graph.diag.get("localizer", {}).get("chunks") == "0", 30.0):
        raise RuntimeError(f"sbm_localizer did not start:\n{loc.text()[-3000:]}")
    return loc


def _capture(prep, speed: float, domain: int, log_dir: str, tag: str,
             max_s: float = 0.0) -> Proc:
    return Proc("binaural_capture", {
        "source": "file", "file_path": prep["wav"], "realtime_factor": float(speed),
        "wait_for_subscribers": 1, "max_duration_s": float(max_s),
        "diagnostics_period_s": 0.5}, domain, log_dir, tag)


def _counts(graph: Graph) -> dict:
    d = graph.diag.get("localizer", {})
    out = {}
    for k in ("chunks", "rejected", "flushes", "estimates", "silent_windows", "dropped_chunks",
              "gaps", "time_jumps", "backward_jumps", "late_chunks", "reordered_chunks"):
        try:
            out[k] = int(d.get(k, 0))
        except ValueError:
            out[k] = 0
    return out


def _play(prep, graph: Graph, loc: Proc, speed: float, domain: int, log_dir: str, tag: str,
          audio_s: float, sampler_period: float = 1.0) -> dict:
    """Play ``audio_s`` of the WAV at ``speed`` to a running localiser; figures."""
    before = _counts(graph)
    n_dirs0 = len(graph.dirs)
    behind0 = graph.warn_behind
    t_start = time.time_ns()
    cap = _capture(prep, speed, domain, log_dir, tag, max_s=audio_s)
    wall0 = time.monotonic()
    with ProcSampler({"localizer": loc.pid, "capture": cap.pid}, sampler_period) as smp:
        expected_wall = audio_s / speed
        graph.spin_until(lambda: _played(cap), expected_wall * 3 + 60)
        wall = time.monotonic() - wall0
        # let the localiser finish the queued chunks and report
        want = _chunks_of(prep, audio_s)
        graph.spin_until(lambda: _counts(graph)["chunks"] - before["chunks"] >= want
                         or not loc.alive(), 10.0)
        graph.spin(1.2)
    cap.stop()
    cap_text = cap.text()
    after = _counts(graph)
    published = max(_published(graph), _chunks_of(prep, audio_s))
    d = {k: after[k] - before[k] for k in after}
    dirs = graph.dirs[n_dirs0:]
    return {"speed": speed, "audio_s": audio_s, "wall_s": round(wall, 2),
            "capture_start_ns": t_start, "sampler": smp, "counts": d,
            "chunks_published": published, "dirs": dirs,
            "behind_reports": graph.warn_behind - behind0,
            "first_stamp_ns": _first_stamp(cap_text), "capture_log_tail": cap_text[-800:]}


def _played(cap: Proc) -> bool:
    """binaural_capture finished its file (it keeps running, publishing diagnostics)."""
    if not cap.alive():
        return True
    text = cap.text()
    return "published max_duration_s" in text or "source 'file': end of" in text


def _chunks_of(prep, audio_s: float) -> int:
    """Chunks binaural_capture publishes for ``audio_s`` of the WAV (max_duration_s), in
    blocks of its default ``block_size``."""
    from sbm_ros.nodes.binaural_capture import PARAMS
    block = next(int(p.default) for p in PARAMS if p.name == "block_size")
    n = min(int(round(audio_s * RATE)), prep.get("wav_frames", 1 << 62))
    return -(-n // block)


def _published(graph: Graph) -> int:
    try:
        return int(graph.diag.get("capture", {}).get("chunks_published", 0))
    except ValueError:
        return 0


def _errors(dirs, truth, anchor_ns: int, window_s: float) -> List[tuple]:
    """(audio time, error in target units) of the estimates inside one truth segment."""
    t0s = np.array([s["t0"] for s in truth])
    out = []
    for _, st, srcs in dirs:
        if not srcs:
            continue
        t = (st - anchor_ns) / 1e9
        i = int(np.searchsorted(t0s, t, side="right")) - 1
        if i < 0 or i >= len(truth):
            continue
        seg = truth[i]
        if t - window_s < seg["t0"] or t > seg["t1"]:
            continue
        pos = np.asarray(seg["position"])
        err = min(float(np.linalg.norm(np.asarray(s) - pos)) for s in srcs)
        out.append((t, err))
    return out


# ----------------------------------------------------------------------------- stages

def soak_mode(prep, mode: str, args, domain: int, log_dir: str, graph: Graph) -> dict:
    say(f"soak, mode {mode}: {args.audio_s:g} s of audio at {args.speed:g}x")
    loc = _localizer(prep, mode, domain, log_dir, graph, f"_soak_{mode}")
    try:
        run = _play(prep, graph, loc, args.speed, domain, log_dir, f"_soak_{mode}",
                    args.audio_s, sampler_period=max(0.5, min(10.0, args.audio_s / args.speed
                                                              / 200)))
        alive = loc.alive()
    finally:
        loc.stop()
    smp = run.pop("sampler")
    audio_s = args.audio_s
    res = {"mode": mode, "speed": args.speed, "audio_s": audio_s, "wall_s": run["wall_s"]}
    for name in ("localizer", "capture"):
        ser = smp.series(name)
        res[f"cpu_per_audio_s_{name}"] = round(smp.cpu_used(name) / audio_s, 5)
        t = [(s[0] - ser[0][0]) * args.speed / 3600.0 for s in ser]    # audio hours
        rss = [s[2] for s in ser]
        cut = len(t) // 10
        res[f"rss_mb_{name}"] = {"start": rss[0], "end": rss[-1], "peak": smp.peak_rss(name)}
        res[f"memory_slope_mb_per_audio_hour_{name}"] = round(slope(t[cut:], rss[cut:]), 3)
    c = run["counts"]
    expected = int(audio_s * ESTIMATE_RATE)
    res.update({
        "estimates_received": len(run["dirs"]), "estimates_expected": expected,
        "estimates_reported": c["estimates"], "silent_windows": c["silent_windows"],
        "chunks_published": run["chunks_published"], "chunks_received": c["chunks"],
        "dropped_chunks": c["dropped_chunks"], "gaps": c["gaps"], "flushes": c["flushes"],
        "stream_counts": c, "cannot_keep_up_reports": run["behind_reports"],
        "localizer_alive_at_end": alive,
    })
    window = 0.72 if mode == "one" else 1.2
    errs = _errors(run["dirs"], prep["truth"], run["first_stamp_ns"] or run["capture_start_ns"],
                   window)
    if errs:
        ts = np.array([e[0] for e in errs])
        ev = np.array([e[1] for e in errs])
        first, last = ev[ts <= 0.1 * audio_s], ev[ts >= 0.9 * audio_s]
        res["error_median_first_10pct"] = round(float(np.median(first)), 3) if len(first) \
            else None
        res["error_median_last_10pct"] = round(float(np.median(last)), 3) if len(last) else None
        res["error_median_all"] = round(float(np.median(ev)), 3)
        res["estimates_scored"] = int(len(ev))
    return res


def _first_stamp(capture_log: str) -> int:
    """The stamp of the recording's first sample, from binaural_capture's log (0: none)."""
    import re
    m = re.search(r"first stamp (\d+)", capture_log)
    return int(m.group(1)) if m else 0


def sweep(prep, mode: str, speeds, args, domain: int, log_dir: str, graph: Graph) -> dict:
    say(f"speed sweep, mode {mode}: {', '.join(f'{s:g}x' for s in speeds)} "
        f"({args.sweep_s:g} s of audio each)")
    loc = _localizer(prep, mode, domain, log_dir, graph, f"_sweep_{mode}")
    rows = []
    try:
        for sp in speeds:
            graph.spin(1.5)          # the previous run's queue drained, diagnostics fresh
            run = _play(prep, graph, loc, sp, domain, log_dir, f"_sweep_{mode}_{sp:g}",
                        args.sweep_s, sampler_period=0.5)
            smp = run.pop("sampler")
            c = run["counts"]
            ok = (c["chunks"] >= run["chunks_published"] > 0 and c["dropped_chunks"] == 0
                  and run["behind_reports"] == 0)
            rows.append({"speed": sp, "kept_up": bool(ok), "chunks_published":
                         run["chunks_published"], "chunks_received": c["chunks"],
                         "dropped_chunks": c["dropped_chunks"], "behind_reports":
                         run["behind_reports"], "estimates_received": len(run["dirs"]),
                         "cpu_per_audio_s": round(smp.cpu_used("localizer") / args.sweep_s, 4),
                         "wall_s": run["wall_s"]})
            say(f"  {sp:g}x: {'kept up' if ok else 'FELL BEHIND'} ({rows[-1]})")
            if not loc.alive():
                break
    finally:
        loc.stop()
    ok_speeds = [r["speed"] for r in rows if r["kept_up"]]
    top = 0.0
    for r in rows:            # the highest speed below which every speed kept up
        if not r["kept_up"]:
            break
        top = r["speed"]
    return {"mode": mode, "runs": rows, "max_speed_kept_up": top,
            "speeds_kept_up": ok_speeds}


def latency(prep, mode: str, args, domain: int, log_dir: str, graph: Graph) -> dict:
    say(f"latency at real time, mode {mode}: {args.latency_s:g} s of audio")
    loc = _localizer(prep, mode, domain, log_dir, graph, f"_latency_{mode}")
    proc_s = []
    try:
        n0 = len(graph.dirs)
        cap = _capture(prep, 1.0, domain, log_dir, f"_latency_{mode}", max_s=args.latency_s)
        while not _played(cap):
            graph.spin(0.5)
            v = graph.diag.get("localizer", {}).get("processing_s")
            try:
                if v is not None and math.isfinite(float(v)):
                    proc_s.append(float(v))
            except ValueError:
                pass
        graph.spin(1.0)
        cap.stop()
        dirs = graph.dirs[n0:]
    finally:
        loc.stop()
    lat = np.array([(r - s) / 1e9 for r, s, _ in dirs]) if dirs else np.zeros(0)
    res = {"mode": mode, "audio_s": args.latency_s, "estimates": int(len(lat))}
    if len(lat):
        res.update(stamp_to_received_median_s=round(float(np.median(lat)), 4),
                   stamp_to_received_p95_s=round(float(np.percentile(lat, 95)), 4))
    if proc_s:
        res.update(processing_median_s=round(float(np.median(proc_s)), 4),
                   processing_p95_s=round(float(np.percentile(proc_s, 95)), 4))
    return res


def fuzz(prep, args, domain: int, log_dir: str, graph: Graph) -> dict:
    """Bad input straight to the localiser (one-source), then good audio: alive and
    localising?"""
    from audio_common_msgs.msg import AudioDataStamped, AudioInfo
    from sbm_ros.core.audio_io import float_to_pcm_bytes
    from sbm_ros.nodes.common import latched_qos, ns_to_stamp, stream_qos
    import soundfile as sf
    say("fuzz: bad chunks, formats and stamps, then good audio")
    loc = _localizer(prep, "one", domain, log_dir, graph, "_fuzz")
    pub = graph.node.create_publisher(AudioDataStamped, "/audio/audio_stamped",
                                      stream_qos("reliable", 100))
    info_pub = graph.node.create_publisher(AudioInfo, "/audio/audio_info", latched_qos())
    rng = np.random.default_rng(args.seed + 7)
    good, _ = sf.read(prep["wav"], frames=int(20 * RATE), dtype="float64", always_2d=True)
    t = [time.time_ns()]
    cases = []

    def send(data, stamp=None, advance=800):
        m = AudioDataStamped()
        m.header.stamp = ns_to_stamp(t[0] if stamp is None else stamp)
        m.audio.data = bytes(data)
        pub.publish(m)
        t[0] += advance * 1_000_000_000 // RATE
        graph.spin(0.01)

    def info(rate=RATE, ch=2, fmt="S16LE", coding=""):
        m = AudioInfo()
        m.sample_rate, m.channels, m.sample_format = rate, ch, fmt
        m.coding_format = coding
        info_pub.publish(m)
        graph.spin(0.3)

    def good_audio(seconds):
        k0 = int(rng.integers(0, good.shape[0] - int(seconds * RATE)))
        for i in range(k0, k0 + int(seconds * RATE), 800):
            send(float_to_pcm_bytes(good[i:i + 800]))

    graph.spin_until(lambda: pub.get_subscription_count() > 0, 10)
    info()
    good_audio(2.0)
    cases.append("random bytes")
    for _ in range(40):
        send(rng.integers(0, 256, 3200, dtype=np.uint8).tobytes())
    cases.append("odd sizes / empty")
    for n in (0, 1, 3, 3201, 7):
        send(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    cases.append("oversized chunk (6 s)")
    send(float_to_pcm_bytes(good[: 6 * RATE]), advance=6 * RATE)
    cases.append("all zeros")
    for _ in range(10):
        send(bytes(3200))
    cases.append("stamp 0")
    for _ in range(5):
        send(float_to_pcm_bytes(good[:800]), stamp=1)
    cases.append("time jumps back 100 s and ahead 1e6 s")
    t[0] -= 100 * 1_000_000_000
    good_audio(0.5)
    t[0] += 10**6 * 1_000_000_000
    good_audio(0.5)
    cases.append("wrong rates / channels / coding")
    for kw in ({"rate": 44100}, {"rate": 8000}, {"ch": 1}, {"coding": "mp3"}, {"fmt": "U8"}):
        info(**kw)
        good_audio(0.3)
    cases.append("NaN / inf in F32LE")
    info(fmt="F32LE")
    for bad in (np.nan, np.inf):
        x = good[:800].astype("<f4")
        x[::7] = bad
        send(x.tobytes())
    info()
    n0 = len(graph.dirs)
    good_audio(6.0)
    graph.spin(1.5)
    after = len(graph.dirs) - n0
    alive = loc.alive()
    text = loc.text()
    loc.stop()
    graph.node.destroy_publisher(pub)
    graph.node.destroy_publisher(info_pub)
    return {"cases": cases, "localizer_alive": alive, "estimates_after_fuzz": after,
            "tracebacks_in_log": text.count("Traceback"),
            "counts": _counts(graph)}


# ----------------------------------------------------------------------------- report

def markdown(rep: dict) -> str:
    lines = ["# Soak run", "",
             "Written by `sbm-soak --write-docs` (`sbm_ros/apps/soak.py`): binaural_capture "
             "(file source, a rendered virtual-head recording) -> sbm_localizer over real DDS.",
             "", f"- date: {rep['date']}, host: {rep['host']}, {rep['cpus']} CPUs",
             f"- command: `{rep['command']}`"]
    if rep.get("note"):
        lines.append(f"- note: {rep['note']}")
    lines.append("")
    if rep.get("soak"):
        lines += ["## Soak", "", "| mode | audio s | speed | localizer CPU s / audio s | capture "
                  "CPU s / audio s | memory slope MB / audio hour | RSS start / end MB | "
                  "estimates received / expected | chunks published / received | dropped "
                  "chunks | 'cannot keep up' | error first / last 10 % |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rep["soak"]:
            rs = r["rss_mb_localizer"]
            lines.append(
                f"| {r['mode']} | {r['audio_s']:g} | {r['speed']:g}x | "
                f"{r['cpu_per_audio_s_localizer']:.4f} | {r['cpu_per_audio_s_capture']:.4f} | "
                f"{r['memory_slope_mb_per_audio_hour_localizer']:.2f} | "
                f"{rs['start']:.0f} / {rs['end']:.0f} | {r['estimates_received']} / "
                f"{r['estimates_expected']} | {r['chunks_published']} / "
                f"{r['chunks_received']} | {r['dropped_chunks']} | "
                f"{r['cannot_keep_up_reports']} | {r.get('error_median_first_10pct')} / "
                f"{r.get('error_median_last_10pct')} |")
        lines.append("")
    if rep.get("sweep"):
        lines += ["## Speed sweep", ""]
        for s in rep["sweep"]:
            lines.append(f"- mode {s['mode']}: kept up to **{s['max_speed_kept_up']:g}x**; "
                         + "; ".join(f"{r['speed']:g}x {'ok' if r['kept_up'] else 'behind'} "
                                     f"({r['chunks_received']}/{r['chunks_published']} chunks,"
                                     f" {r['dropped_chunks']} dropped)" for r in s["runs"]))
        lines.append("")
    if rep.get("latency"):
        lines += ["## Latency at real time", ""]
        for r in rep["latency"]:
            lines.append(f"- mode {r['mode']}: chunk stamp -> sound_directions received: median "
                         f"{r.get('stamp_to_received_median_s')} s, p95 "
                         f"{r.get('stamp_to_received_p95_s')} s; localiser processing "
                         f"(arrival -> publish): median {r.get('processing_median_s')} s, p95 "
                         f"{r.get('processing_p95_s')} s ({r['estimates']} estimates)")
        lines.append("")
    lines += ["## Reading the figures", "",
              "- CPU: user + system seconds of the node process (all threads, DDS included) over "
              "the run, per second of audio.",
              "- Memory slope: least-squares slope of the localiser's RSS over the audio time, "
              "after the first 10 % of the run; a run of minutes is dominated by warm-up "
              "(allocator, caches): read it on the hour-long run.",
              "- Estimates expected: audio seconds x 10 (estimate_rate); windows in the talker's "
              "pauses give none. 'cannot keep up': /diagnostics messages of the localiser with "
              "that warning (busy > 60 % or chunks lost).",
              "- Error: distance (degrees, azimuth and elevation) of the estimate to the "
              "talker's position, for windows wholly inside one talker segment; median of the "
              "first and of the last 10 % of the audio.",
              "- Speed sweep: a speed is kept up with when every chunk published was received, "
              "none was dropped and no 'cannot keep up' was reported.", ""]
    if rep.get("fuzz"):
        f = rep["fuzz"]
        lines += ["## Fuzz", "", f"- cases: {', '.join(f['cases'])}",
                  f"- localiser alive: {f['localizer_alive']}, estimates after the fuzz: "
                  f"{f['estimates_after_fuzz']}, tracebacks in its log: "
                  f"{f['tracebacks_in_log']}", ""]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sbm-soak", description=__doc__.split("\n")[0])
    p.add_argument("--audio-s", type=float, default=3600.0, help="audio of the soak (s)")
    p.add_argument("--speed", type=float, default=10.0, help="playback speed of the soak")
    p.add_argument("--modes", default="one,auto", help="one, auto (comma-separated)")
    p.add_argument("--sweep", default="5,10,20,40,80",
                   help="speeds of the sweep ('' = no sweep)")
    p.add_argument("--sweep-s", type=float, default=30.0, help="audio per sweep run (s)")
    p.add_argument("--latency-s", type=float, default=30.0,
                   help="audio of the real-time latency run (0 = none)")
    p.add_argument("--no-fuzz", dest="fuzz", action="store_false", help="skip the fuzz stage")
    p.add_argument("--segment-s", type=float, default=4.0, help="talker segment length (s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", help="one-source model (default: small virtual-head models)")
    p.add_argument("--model-two", help="two-source model for the automatic mode")
    p.add_argument("--models-dir", help="cache of models and recordings")
    p.add_argument("--domain", type=int, default=int(os.environ.get("SBM_SOAK_DOMAIN", 88)),
                   help="ROS_DOMAIN_ID of the run")
    p.add_argument("--json", help="write the report here (default soak_report.json in the "
                   "log folder)")
    p.add_argument("--write-docs", action="store_true", help="write the markdown report")
    p.add_argument("--docs", default=None, help="markdown path (default docs/soak.md of the "
                   "checkout)")
    p.add_argument("--log-dir", help="node logs (default a temporary folder)")
    p.add_argument("--note", default="", help="a line for the report (e.g. the machine's load)")
    p.add_argument("--render", metavar="JSON", help="only write the markdown of a JSON report "
                   "(with --write-docs / --docs; --note replaces its note)")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("one", "auto")]
    if bad:
        print(f"sbm-soak: unknown mode(s) {bad}", file=sys.stderr)
        return 2
    if args.render:
        with open(args.render) as fh:
            rep = json.load(fh)
        if args.note:
            rep["note"] = args.note
        _write_docs(args, markdown(rep))
        return 0
    speeds = [float(s) for s in args.sweep.split(",") if s.strip()]
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="sbm_soak_")
    os.makedirs(log_dir, exist_ok=True)
    prep = prepare(args)
    rep = {"date": time.strftime("%Y-%m-%d %H:%M"), "host": platform.node(), "note": args.note,
           "cpus": os.cpu_count(), "command": " ".join(["sbm-soak"] + list(
               argv if argv is not None else sys.argv[1:])), "log_dir": log_dir,
           "models": [prep["one"], prep["two"]], "wav": prep["wav"]}
    graph = Graph(args.domain)
    c0 = cpu_seconds(os.getpid())
    try:
        rep["soak"] = [soak_mode(prep, m, args, args.domain, log_dir, graph) for m in modes
                       if args.audio_s > 0]
        rep["sweep"] = [sweep(prep, m, speeds, args, args.domain, log_dir, graph)
                        for m in modes] if speeds else []
        rep["latency"] = [latency(prep, m, args, args.domain, log_dir, graph)
                          for m in modes] if args.latency_s > 0 else []
        rep["fuzz"] = fuzz(prep, args, args.domain, log_dir, graph) if args.fuzz else None
    finally:
        graph.close()
    rep["soak_process_cpu_s"] = round(cpu_seconds(os.getpid()) - c0, 2)
    out = args.json or os.path.join(log_dir, "soak_report.json")
    with open(out, "w") as fh:
        json.dump(rep, fh, indent=1, default=str)
    text = markdown(rep)
    print(text)
    say(f"report: {out}")
    _write_docs(args, text)
    return 0


def _write_docs(args, text: str) -> None:
    if not (args.write_docs or args.docs):
        return
    path = args.docs or os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "docs", "soak.md")
    with open(path, "w") as fh:
        fh.write(text)
    say(f"markdown: {path}")


if __name__ == "__main__":
    raise SystemExit(main())

"""Calibration sweep end to end over real DDS, without a robot (``tools/dev calibrate``).

``python -m sbm_ros.apps.calibrate_ros [--sweep FILE] [--out DIR] [--rate R] [--no-demo]``
(and :func:`run`) does, with progress on the terminal:

1. starts ``sbm_localizer`` (no model yet) and ``sbm_calibrator`` (dataset in ``OUT/dataset``,
   models to ``OUT/model_sweep.npz`` and ``OUT/model_sweep_2src.npz``) as separate processes on
   ``$ROS_DOMAIN_ID``; this process plays the camera driver's ``camera_info`` until
   ``~/start_sweep`` is accepted;
2. starts ``virtual_head`` with ``sweep`` (default ``config/sweep_scenario.yaml``): it renders
   the moving loudspeaker (white noise, ArUco marker) and publishes the audio and the images at
   ``--rate`` x real time (stamps in scene time, so the segmentation is the same as live);
3. when the sweep has played: ``~/stop_sweep``, ``~/train`` (``sbm-train`` in the background:
   the one-source model, its cross-validated error stored in the model file and reported on
   ``~/calibration_status``, then the two-source model from the same sweep, ``--pairs``
   mixtures, K = ``--components-two``, its error on fresh mixtures likewise), and the hand-over
   of both to the running ``sbm_localizer`` (automatic one/two-source mode);
4. unless ``--no-demo``: the demo scene (:mod:`sbm_ros.apps.demo`) twice in its normal
   automatic one/two-source mode, with the sweep models (``--model-one`` / ``--model-two``) and
   with today's grid models (432 positions, and their pairs), and compares them (mean error of
   the one-talker utterances, speaking face correct, the utterances whose speaking face was
   wrong).

Writes ``OUT/calibrate_ros.json`` (all figures), the node logs in ``OUT/logs`` and the demo
outputs in ``OUT/demo_sweep`` / ``OUT/demo_grid``. Exit code 0 when it ran through, 1 when a
step failed (the message says which), 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Callable, Dict, Optional

T0 = time.monotonic()


def say_default(msg: str) -> None:
    print(f"[calibrate] {time.monotonic() - T0:6.1f} s  {msg}", flush=True)


class StepFailed(RuntimeError):
    """A step of the run failed; the message says which and why."""


class _Ros:
    """This process's ROS side: camera_info publisher, status subscriber, Trigger clients."""

    def __init__(self, domain: int, camera_info: Dict, calibrator: str = "sbm_calibrator"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo
        from std_msgs.msg import String
        self.rclpy = rclpy
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node("sbm_calibrate_run", context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.status: Optional[Dict] = None
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(String, f"/{calibrator}/calibration_status",
                                      self._on_status, latched)
        self.pub_ci = self.node.create_publisher(CameraInfo, "camera_info", 5)
        d = camera_info
        self.ci = CameraInfo(width=d["width"], height=d["height"],
                             distortion_model=d["distortion_model"], d=d["d"], k=d["k"],
                             r=d["r"], p=d["p"])
        self.ci.header.frame_id = d["header"]["frame_id"]
        self.calibrator = calibrator
        self.clients = {}

    def _on_status(self, msg):
        self.status = json.loads(msg.data)

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.ex.spin_once(timeout_sec=min(0.05, max(0.0, end - time.monotonic())))

    def spin_until(self, pred: Callable[[], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > end:
                return False
            self.ex.spin_once(timeout_sec=0.05)
        return True

    def call(self, service: str, timeout: float = 30.0):
        """(success, message) of ``/<calibrator>/<service>`` (std_srvs/Trigger)."""
        from std_srvs.srv import Trigger
        cli = self.clients.get(service)
        if cli is None:
            cli = self.clients[service] = self.node.create_client(
                Trigger, f"/{self.calibrator}/{service}")
        if not self.spin_until(cli.service_is_ready, timeout):
            raise StepFailed(f"service /{self.calibrator}/{service} not available")
        fut = cli.call_async(Trigger.Request())
        if not self.spin_until(fut.done, timeout):
            raise StepFailed(f"/{self.calibrator}/{service} did not answer in {timeout} s")
        r = fut.result()
        return r.success, r.message

    def publish_camera_info(self) -> None:
        self.ci.header.stamp = self.node.get_clock().now().to_msg()
        self.pub_ci.publish(self.ci)

    def close(self) -> None:
        try:
            self.ex.shutdown()
            self.node.destroy_node()
        finally:
            self.rclpy.try_shutdown(context=self.ctx)


def _demo(models: Optional[tuple], out: str, rate: float, say, timeout: float) -> Dict:
    """One demo run (automatic one/two-source mode) as a subprocess, with ``models`` (one-
    and two-source file) or the demo's grid models (None); its scores."""
    cmd = [sys.executable, "-m", "sbm_ros.apps.demo", "--no-video",
           "--out", out, "--rate", f"{rate:g}"]
    if models:
        cmd += ["--model-one", models[0], "--model-two", models[1]]
    say(f"demo: {' '.join(cmd[1:])}")
    log = out + ".log"
    os.makedirs(os.path.dirname(out), exist_ok=True)
    t = time.monotonic()
    with open(log, "w") as fh:
        try:
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout,
                                env=dict(os.environ)).returncode
        except subprocess.TimeoutExpired:
            raise StepFailed(f"the demo did not finish within {timeout:.0f} s (log {log})")
    path = os.path.join(out, "scores.json")
    if rc != 0 or not os.path.exists(path):
        raise StepFailed(f"the demo failed (exit code {rc}; log {log})")
    with open(path) as fh:
        d = json.load(fh)
    s, meta = d["scores"], d.get("meta", {})
    misses = [{"index": u["index"], "who": u["who"], "mode": u.get("mode"),
               "error_deg": u.get("error_deg"), "est_azimuth_deg": u.get("est_azimuth_deg"),
               "est_elevation_deg": u.get("est_elevation_deg"), "marked": u.get("marked"),
               "marked_fraction": u.get("marked_fraction")}
              for u in s.get("utterances", []) if not u.get("speaking_correct")]
    return {"mode": meta.get("localizer mode"), "model_files": meta.get("model files"),
            "single_mean_error_deg": s.get("single_mean_error_deg"),
            "single_max_error_deg": s.get("single_max_error_deg"),
            "single_within_3deg": s.get("single_within_3deg"), "n_single": s.get("n_single"),
            "speaking_correct": s.get("speaking_correct"),
            "n_utterances": s.get("n_utterances"),
            "speaking_accuracy": s.get("speaking_accuracy"),
            "speaking_correct_overlap": s.get("speaking_correct_overlap"),
            "n_overlap": s.get("n_overlap"), "overlap_errors_deg": s.get("overlap_errors_deg"),
            "misses": misses, "seconds": round(time.monotonic() - t, 1), "log": log}


def _fmt(v, f="{:.2f}"):
    return "n/a" if v is None else f.format(v)


def _sweep_phase(ros: _Ros, runs, sc, sweep_path, rate, logs, env, say, timings) -> Dict:
    """Start the sweep, play it on the virtual head, stop it; the final status."""
    from .demo import NodeRun
    vh_p = {"sweep": os.path.abspath(sweep_path) if sweep_path else "default",
            "rate": float(rate), "exit_when_done": True, "wait_for_subscribers": 1,
            "start_delay_s": 3.0}
    runs["virtual_head"] = vh = NodeRun("virtual_head", vh_p, logs, env).start()
    say(f"virtual_head: rendering the sweep ({sc.duration_s:.0f} s of scene), then playing it "
        f"at {rate:g}x real time")
    t = time.monotonic()
    while not vh.text().count("of binaural audio in"):
        ros.spin(0.2)
        if vh.returncode is not None or time.monotonic() - t > 900:
            raise StepFailed(f"virtual_head did not render the sweep:\n{vh.tail()}")
    t = time.monotonic()
    while True:                     # the camera driver is up: camera_info, then start
        ros.publish_camera_info()
        ros.spin(0.2)
        ok, msg = ros.call("start_sweep")
        if ok:
            break
        if "camera_info" not in msg or time.monotonic() - t > 30:
            raise StepFailed(f"~/start_sweep refused: {msg}")
    say(msg)
    t_play = time.monotonic()
    deadline = t_play + sc.duration_s / rate + 600.0
    next_print = 0.0
    while vh.returncode is None:
        ros.spin(0.2)
        for name, r in runs.items():
            if name != "virtual_head" and r.returncode is not None:
                raise StepFailed(f"{name} died (exit code {r.returncode}):\n{r.tail()}")
        if time.monotonic() > deadline:
            raise StepFailed("the virtual head did not finish the sweep in time")
        st = ros.status
        if time.monotonic() >= next_print and st and st.get("state") == "sweeping" \
                and st.get("frames"):
            say(f"  sweep: {st['samples']} samples, coverage {100 * st['coverage']:.1f} %, "
                f"rejected {st['rejected_total']}, frames {st['frames']} (marker in "
                f"{st['marker_detected']})")
            next_print = time.monotonic() + 10.0
    if vh.returncode != 0:
        raise StepFailed(f"virtual_head failed (exit code {vh.returncode}):\n{vh.tail()}")
    timings["sweep_render_and_play"] = round(time.monotonic() - t_play, 1)
    ros.spin(1.5)                   # the last chunks and frames
    ok, msg = ros.call("stop_sweep")
    say(msg)
    if not ok:
        raise StepFailed(f"~/stop_sweep: {msg}")
    ros.spin_until(lambda: ros.status and ros.status.get("state") == "stopped", 10)
    return dict(ros.status)


def _train_phase(ros: _Ros, say, timings) -> Dict:
    t = time.monotonic()
    ok, msg = ros.call("train")
    say(msg)
    if not ok:
        raise StepFailed(f"~/train refused: {msg}")

    steps = set()

    def settled():
        tr = (ros.status or {}).get("train", {})
        if tr.get("step") == "two_source" and "two_source" not in steps:
            steps.add("two_source")
            say(f"one-source model done in {tr.get('seconds')} s; training the two-source model "
                f"({(tr.get('two_source') or {}).get('pairs')} pairs)")
        return tr.get("state") == "failed" or (tr.get("state") == "done" and
                                               tr.get("handoff") not in (None, "pending"))
    if not ros.spin_until(settled, 900):
        raise StepFailed("training did not finish within 900 s")
    tr = dict(ros.status["train"])
    timings["train"] = round(time.monotonic() - t, 1)
    if tr["state"] != "done":
        raise StepFailed(f"training failed: {tr.get('message')} (log {tr.get('log')})")
    return tr


def run(out_dir: str = "out/calibrate_ros", sweep_path: Optional[str] = None,
        rate: float = 3.0, demo: bool = True, demo_rate: float = 2.0, components: int = 32,
        min_train_samples: int = 20, say: Callable[[str], None] = say_default,
        components_two: int = 60, pairs: int = 10000) -> Dict:
    """The whole run (module docstring); returns the figures (also in
    ``OUT/calibrate_ros.json``). Raises :class:`StepFailed` when a step fails."""
    from sbm_ros.core.model import SBMModel
    from sbm_ros.sim.sweep import load_sweep
    from .demo import NodeRun, _node_env, _wait_log
    sc = load_sweep(sweep_path)
    out = os.path.abspath(out_dir)
    logs = os.path.join(out, "logs")
    ds = os.path.join(out, "dataset")
    model = os.path.join(out, "model_sweep.npz")
    model2 = os.path.join(out, "model_sweep_2src.npz")
    for p in (ds, logs, model, model2):
        shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else (
            os.unlink(p) if os.path.exists(p) else None)
    os.makedirs(logs, exist_ok=True)
    env = _node_env(logs)
    domain = int(os.environ.get("ROS_DOMAIN_ID", "0") or 0)
    res: Dict = {"sweep": sc.source, "scene_s": round(sc.duration_s, 1), "rate": rate,
                 "domain": domain, "times_s": {}}
    timings = res["times_s"]
    say(f"sweep {sc.name!r} ({sc.source}): {sc.duration_s:.0f} s of scene, camera "
        f"{sc.camera_name}; ROS_DOMAIN_ID={domain}; logs in {logs}")
    cal_p = {"dataset_dir": ds, "image_reliability": "reliable", "model_output": model,
             "train_components": int(components), "train_two_source": True,
             "model_output_two": model2, "train_components_two": int(components_two),
             "train_pairs": int(pairs), "marker_id": int(sc.marker_id),
             "marker_dictionary": sc.marker_dictionary, "localizer_node": "sbm_localizer",
             "min_train_samples": int(min_train_samples), "handoff_timeout": 30.0}
    runs = {"sbm_localizer": NodeRun("sbm_localizer", {}, logs, env),
            "sbm_calibrator": NodeRun("sbm_calibrator", cal_p, logs, env)}
    ros = None
    t_all = time.monotonic()
    try:
        for r in runs.values():
            r.start()
        if not _wait_log(runs["sbm_calibrator"], "sbm_calibrator ready", 60):
            raise StepFailed(f"sbm_calibrator did not start:\n{runs['sbm_calibrator'].tail()}")
        ros = _Ros(domain, sc.camera.camera_info_dict())
        st = _sweep_phase(ros, runs, sc, sweep_path, rate, logs, env, say, timings)
        res.update(samples=st["samples"], coverage=st["coverage"], complete=st["complete"],
                   coverage_complete=st["coverage_complete"],
                   missing_cells=st["missing_cells"], rejected=st["rejected"],
                   frames=st.get("frames"), marker_detected=st.get("marker_detected"),
                   frames_dropped=st.get("frames_dropped"), unsaved=st["unsaved"])
        say(f"sweep done: {st['samples']} samples, coverage {100 * st['coverage']:.1f} % "
            f"({'complete' if st['complete'] else 'incomplete'}; missing cells "
            f"{st['missing_cells']}), rejected {st['rejected']}")
        tr = _train_phase(ros, say, timings)
        stored = SBMModel.load(model).info.get("cv_error")
        res["model"] = {"path": model, "cv_error": tr.get("cv_error"),
                        "cv_error_in_model_file": stored, "handoff": tr.get("handoff"),
                        "train_s": tr.get("seconds")}
        say(f"model {model}: cross-validated error "
            f"{', '.join(f'{k} {v:.2f}' for k, v in (stored or {}).items())} "
            f"({tr.get('seconds')} s)")
        ts = tr.get("two_source") or {}
        if ts.get("state") != "done":
            raise StepFailed(f"two-source training {ts.get('state')}: {ts.get('message')} "
                             f"(log {ts.get('log')}); {tr.get('handoff')}")
        m2 = SBMModel.load(model2)
        res["model_two"] = {"path": model2, "mix_error": ts.get("mix_error"),
                            "mix_error_in_model_file": m2.info.get("mix_error"),
                            "cov_scale": ts.get("cov_scale"), "pairs": ts.get("pairs"),
                            "n_components": m2.n_components, "train_s": ts.get("seconds")}
        res["handoff"] = tr.get("handoff")
        say(f"two-source model {model2}: K={m2.n_components}, {ts.get('pairs')} pairs, error on "
            f"fresh mixtures of the recorded positions "
            f"{', '.join(f'{k} {v:.2f}' for k, v in (ts.get('mix_error') or {}).items())} "
            f"({ts.get('seconds')} s)")
        say(str(tr.get("handoff")))
        if not str(tr.get("handoff", "")).startswith("models handed to"):
            raise StepFailed(f"hand-over of the models: {tr.get('handoff')}")
    finally:
        if ros is not None:
            ros.close()
        for r in reversed(list(runs.values())):
            r.stop()
    timings["sweep_and_train"] = round(time.monotonic() - t_all, 1)
    if demo:
        t = time.monotonic()
        limit = 1800.0
        res["demo_sweep"] = _demo((model, model2), os.path.join(out, "demo_sweep"), demo_rate,
                                  say, limit)
        res["demo_grid"] = _demo(None, os.path.join(out, "demo_grid"), demo_rate, say, limit)
        a = res["demo_sweep"]["single_mean_error_deg"]
        b = res["demo_grid"]["single_mean_error_deg"]
        res["error_ratio"] = round(a / b, 3) if a is not None and b else None
        timings["demo"] = round(time.monotonic() - t, 1)
        for k in ("demo_sweep", "demo_grid"):
            d = res[k]
            say(f"{k} ({d['mode']}): one-talker mean error "
                f"{_fmt(d['single_mean_error_deg'])} deg (max "
                f"{_fmt(d['single_max_error_deg'])}), {d['single_within_3deg']}/{d['n_single']}"
                f" within 3 deg; speaking face correct {d['speaking_correct']}/"
                f"{d['n_utterances']} ({_fmt(100 * (d['speaking_accuracy'] or 0), '{:.0f}')} %)"
                f", overlap errors {', '.join(_fmt(e) for e in d['overlap_errors_deg'] or [])}"
                " deg")
            for u in d["misses"]:
                say(f"  speaking face wrong: #{u['index']} {u['who']} ({u['mode']}), error "
                    f"{_fmt(u['error_deg'])} deg (estimate az {_fmt(u['est_azimuth_deg'])}, el "
                    f"{_fmt(u['est_elevation_deg'])}), marked {', '.join(u['marked']) or '-'}")
        say(f"error ratio sweep / grid: {_fmt(res['error_ratio'], '{:.3f}')}")
    timings["total"] = round(time.monotonic() - t_all, 1)
    with open(os.path.join(out, "calibrate_ros.json"), "w") as fh:
        json.dump(res, fh, indent=1, default=str)
    say(f"figures in {os.path.join(out, 'calibrate_ros.json')} ({timings['total']:.0f} s)")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tools/dev calibrate", description=__doc__.split("\n")[0])
    ap.add_argument("--sweep", default=None, help="sweep YAML (default "
                    "config/sweep_scenario.yaml)")
    ap.add_argument("--out", default="out/calibrate_ros", help="output folder")
    ap.add_argument("--rate", type=float, default=3.0,
                    help="virtual head speed, x real time (default 3)")
    ap.add_argument("--demo-rate", type=float, default=2.0,
                    help="speed of the demo runs (default 2)")
    ap.add_argument("-K", "--components", type=int, default=32,
                    help="GLLiM K, one source (default 32)")
    ap.add_argument("--components-two", type=int, default=60,
                    help="GLLiM K, two sources (default 60, as the demo's grid model)")
    ap.add_argument("--pairs", type=int, default=10000,
                    help="two-source training mixtures (default 10000, as the demo's)")
    ap.add_argument("--no-demo", action="store_true",
                    help="skip the demo scene comparison with the grid models")
    args = ap.parse_args(argv)
    if not args.rate > 0 or not args.demo_rate > 0 or args.components < 1 \
            or args.components_two < 1 or args.pairs < 1:
        print("calibrate: --rate and --demo-rate must be > 0, -K, --components-two and --pairs "
              ">= 1", file=sys.stderr)
        return 2
    from sbm_ros.sim.scenario import ScenarioError
    try:
        run(args.out, args.sweep, args.rate, not args.no_demo, args.demo_rate, args.components,
            components_two=args.components_two, pairs=args.pairs)
    except ScenarioError as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 2
    except StepFailed as exc:
        print(f"calibrate: FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("calibrate: interrupted; the nodes were stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``sbm-bag``: localise the talkers of a recorded ROS 2 bag offline, faster than real time.

    sbm-bag BAG --model M.npz [--model-two M2.npz] -o OUT

Reads a ROS 2 bag (sqlite3 or mcap, with the PyPI ``rosbags`` package: no ROS install needed) of
``audio/audio_stamped`` (audio_common_msgs/AudioDataStamped, raw PCM) plus, when present,
``audio/audio_info``, ``camera_info``, ``image`` and ``faces``, and runs the same streaming
localiser as the ``sbm_localizer`` node (:class:`sbm_ros.core.localizer.SBMLocalizer`: features,
adaptive activity mask, sliding window, Theorem-1 posterior) over the audio in stamp order.

Writes to OUT:

* ``estimates.csv``: ``stamp_s, n_sources, source, azimuth_deg, elevation_deg, u_px, v_px,
  confidence`` -- one row per source and window (every ``--hop`` s of audio); ``n_sources``
  says which model (1 = ``--model``, 2 = ``--model-two``, both run when both are given);
  pixel columns need a camera (``camera_info`` in the bag or the one stored in a pixel model);
* ``estimates.jsonl``: the same, one JSON object per window;
* ``overlay.mp4`` when the bag has images: each image with the newest estimates (crosses and
  2-sigma ellipses; one-source estimates from ``--model``, two-source ones too when given) and
  the ``faces`` boxes if recorded (ffmpeg; a PNG sequence without it).

Audio format from ``audio_info`` (else ``--sample-rate`` / ``--sample-format``). A backward
stamp step or a gap larger than half a chunk flushes the window, as in the node. The types of
``audio_common_msgs`` and ``vision_msgs`` are registered from their .msg definitions (below)
when the rosbags type store lacks them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional

import numpy as np

# .msg definitions (audio_common_msgs as released for Humble..Kilted; vision_msgs 4.x)
MSG_DEFS = {
    "audio_common_msgs/msg/AudioData": "uint8[] data\n",
    "audio_common_msgs/msg/AudioDataStamped": ("std_msgs/Header header\n"
                                               "audio_common_msgs/AudioData audio\n"),
    "audio_common_msgs/msg/AudioInfo": "uint8 channels\nuint32 sample_rate\n"
                                       "string sample_format\nuint32 bitrate\n"
                                       "string coding_format\n",
    "vision_msgs/msg/Point2D": "float64 x\nfloat64 y\n",
    "vision_msgs/msg/Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "vision_msgs/msg/BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\n"
                                     "float64 size_y\n",
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/msg/ObjectHypothesisWithPose": "vision_msgs/ObjectHypothesis hypothesis\n"
                                                "geometry_msgs/PoseWithCovariance pose\n",
    "vision_msgs/msg/Detection2D": ("std_msgs/Header header\n"
                                    "vision_msgs/ObjectHypothesisWithPose[] results\n"
                                    "vision_msgs/BoundingBox2D bbox\nstring id\n"),
    "vision_msgs/msg/Detection2DArray": "std_msgs/Header header\n"
                                        "vision_msgs/Detection2D[] detections\n",
}
AUDIO_T = "audio_common_msgs/msg/AudioDataStamped"
INFO_T = "audio_common_msgs/msg/AudioInfo"
IMAGE_T = "sensor_msgs/msg/Image"
CAMINFO_T = "sensor_msgs/msg/CameraInfo"
FACES_T = "vision_msgs/msg/Detection2DArray"


def typestore():
    """A rosbags type store (ROS 2 Jazzy = Humble for these types) with our message types."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    ts = get_typestore(Stores.ROS2_JAZZY)
    add = {}
    for name, text in MSG_DEFS.items():
        if name not in ts.types:
            add.update(get_types_from_msg(text, name))
    if add:
        ts.register(add)
    return ts


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _norm(topic: str) -> str:
    return "/" + topic.strip("/")


def _pick(conns, topic: Optional[str], msgtype: str):
    """Connections of ``topic`` (leading '/' optional); else of the first topic of that type."""
    if topic:
        hit = [c for c in conns if _norm(c.topic) == _norm(topic)]
        if hit:
            return hit
    typed = [c for c in conns if c.msgtype == msgtype]
    if not typed:
        return []
    first = sorted({c.topic for c in typed})[0]
    return [c for c in typed if c.topic == first]


class _Camera:
    def __init__(self, msg):
        from sbm_ros.nodes.ros_convert import camera_from_camera_info
        self.cam = camera_from_camera_info(msg)
        self.frame_id = msg.header.frame_id


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sbm-bag", description="Localise the talkers of a ROS 2 "
                                "bag offline (sqlite3 or mcap) with SBM models.")
    p.add_argument("bag", help="bag folder (or .mcap / .db3 file)")
    p.add_argument("--model", required=True, help="one-source model (sbm-train)")
    p.add_argument("--model-two", default=None, help="two-source model (also run if given)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--audio-topic", default="audio/audio_stamped")
    p.add_argument("--info-topic", default="audio/audio_info")
    p.add_argument("--image-topic", default="image")
    p.add_argument("--camera-info-topic", default="camera_info")
    p.add_argument("--faces-topic", default="faces")
    p.add_argument("--hop", type=float, default=0.1, help="s of audio between estimates (0.1)")
    p.add_argument("--window", type=float, default=None,
                   help="window (s; default 0.72 one source, 1.2 two)")
    p.add_argument("--min-active", type=float, default=0.02,
                   help="minimum active fraction of a window (0.02)")
    p.add_argument("--sample-rate", type=int, default=16000, help="if no audio_info (16000)")
    p.add_argument("--sample-format", default="S16LE", help="if no audio_info (S16LE)")
    p.add_argument("--fps", type=float, default=None,
                   help="overlay video frame rate (default: from the image stamps)")
    p.add_argument("--no-video", action="store_true", help="no overlay video")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def _load_models(args) -> List:
    """The ``--model`` (one source) and ``--model-two`` (two sources) models, checked."""
    from sbm_ros.core.model import SBMModel
    models = [SBMModel.load(args.model)]
    if args.model_two:
        models.append(SBMModel.load(args.model_two))
    for m, want in zip(models, (1, 2)):
        if m.n_sources != want:
            raise ValueError(f"{'--model' if want == 1 else '--model-two'} localises "
                             f"{m.n_sources} source(s), expected {want}")
    return models


def _topics(conns, args, say):
    """Connections of (audio, audio_info, image, camera_info, faces); images and faces are not
    read with ``--no-video``, faces not without images."""
    a_c = _pick(conns, args.audio_topic, AUDIO_T)
    if not a_c:
        raise ValueError(f"no {AUDIO_T} topic in {args.bag} (topics: "
                         f"{sorted({c.topic + ' [' + c.msgtype + ']' for c in conns})})")
    i_c = _pick(conns, args.info_topic, INFO_T)
    img_c = [] if args.no_video else _pick(conns, args.image_topic, IMAGE_T)
    cam_c = _pick(conns, args.camera_info_topic, CAMINFO_T)
    face_c = _pick(conns, args.faces_topic, FACES_T) if img_c else []
    say(f"{args.bag}: audio {a_c[0].topic}, info {i_c[0].topic if i_c else '-'}, image "
        f"{img_c[0].topic if img_c else '-'}, camera_info {cam_c[0].topic if cam_c else '-'}"
        f", faces {face_c[0].topic if face_c else '-'}")
    return a_c, i_c, img_c, cam_c, face_c


def _audio_format(reader, ts, i_c, args):
    """(sample rate, channels, sample format) from the first ``audio_info``, else from the
    command line; only raw PCM with two channels is accepted."""
    fmt = (args.sample_rate, 2, args.sample_format)
    for c, _, raw in reader.messages(connections=i_c):
        info = ts.deserialize_cdr(raw, c.msgtype)
        if str(info.coding_format).lower() not in ("", "wave", "wav", "raw", "pcm"):
            raise ValueError(f"audio coding {info.coding_format!r} is not raw PCM")
        fmt = (int(info.sample_rate), int(info.channels), str(info.sample_format).upper())
        break
    rate, channels, sfmt = fmt
    if channels != 2:
        raise ValueError(f"binaural audio needs 2 channels, audio_info says {channels}")
    return rate, channels, sfmt


def _read_camera(msg, say) -> Optional[_Camera]:
    try:
        cam = _Camera(msg)
    except ValueError as exc:
        say(f"camera_info ignored: {exc}")
        return None
    say(f"camera_info: {cam.cam.width}x{cam.cam.height} frame {cam.frame_id!r}")
    return cam


class _EstimateFiles:
    """``estimates.csv`` (a row per source and window) and ``estimates.jsonl`` (a line per
    window) in the output folder."""

    def __init__(self, out_dir: str):
        self.csv = open(os.path.join(out_dir, "estimates.csv"), "w")
        self.csv.write("stamp_s,n_sources,source,azimuth_deg,elevation_deg,u_px,v_px,"
                       "confidence\n")
        self.jl = open(os.path.join(out_dir, "estimates.jsonl"), "w")
        self.n = 0

    def write(self, end_ns: int, m, est, outs) -> None:
        rec = {"stamp_s": round(end_ns / 1e9, 6), "n_sources": m.n_sources,
               "active_fraction": round(est.active_fraction, 4), "sources": []}
        for o in outs:
            d = o.direction if o.direction is not None else (np.nan, np.nan)
            p = o.pixel if o.pixel is not None else (np.nan, np.nan)
            self.csv.write(f"{end_ns / 1e9:.6f},{m.n_sources},{o.index},{d[0]:.3f},"
                           f"{d[1]:.3f},{p[0]:.2f},{p[1]:.2f},{o.confidence:.4f}\n")
            rec["sources"].append({
                "azimuth_deg": None if o.direction is None else round(float(d[0]), 3),
                "elevation_deg": (None if o.direction is None
                                  else round(float(d[1]), 3)),
                "u_px": None if o.pixel is None else round(float(p[0]), 2),
                "v_px": None if o.pixel is None else round(float(p[1]), 2),
                "confidence": round(float(o.confidence), 4)})
        self.jl.write(json.dumps(rec) + "\n")
        self.n += 1

    def close(self) -> None:
        self.csv.close()
        self.jl.close()


class _AudioLocaliser:
    """The audio messages through one streaming localiser per model, as the node does: stamps
    checked (a backward step or a gap over half a chunk flushes the windows, a zero stamp takes
    the expected one), an estimate per model every ``--hop`` s of audio."""

    def __init__(self, models: List, args, rate: int, channels: int, sfmt: str, say):
        from sbm_ros.core.audio_io import PcmStreamDecoder
        from sbm_ros.core.localizer import SBMLocalizer
        self.models = models
        self.rate = rate
        self.rate_model = models[0].feature_config.sample_rate
        self.say = say
        self.locs = [SBMLocalizer(m, window_s=args.window if m.n_sources == 1
                                  or args.window is None else max(args.window, 1.2),
                                  min_active_fraction=args.min_active)
                     for m in models]
        self.dec = PcmStreamDecoder(channels, sfmt)
        self.hop = max(1, int(round(args.hop * self.rate_model)))
        self.expected = None
        self.anchor = (0, 0)            # (stamp ns, first sample index since reset)
        self.pushed = self.since = 0
        self.n_audio = 0
        self.total_samples = 0
        self.latest: Dict[int, tuple] = {}   # n_sources -> (stamp_ns, outputs)

    def add(self, msg, cam: Optional[_Camera], files: _EstimateFiles) -> None:
        from sbm_ros.core.audio_io import resample
        self.n_audio += 1
        x = self.dec.decode(bytes(msg.audio.data))
        if x.shape[0] == 0:
            return
        if self.rate != self.rate_model:
            x = resample(x, self.rate, self.rate_model)
        n = x.shape[0]
        dur = n * 1_000_000_000 // self.rate_model
        stamp = self._checked_stamp(_stamp_ns(msg.header), dur)
        self.anchor = (stamp, self.pushed)
        for lc in self.locs:
            lc.push_audio(x)
        self.pushed += n
        self.since += n
        self.total_samples += n
        self.expected = stamp + dur
        if self.since < self.hop:
            return
        self.since = 0
        self._estimate(cam, files)

    def _checked_stamp(self, stamp: int, dur: int) -> int:
        expected = self.expected
        if expected is not None and stamp != 0:
            err = stamp - expected
            if err < -dur // 2 or err > dur // 2:
                self.say(f"{'backward step' if err < 0 else 'gap'} of {abs(err) / 1e9:.3f} s "
                         f"in the audio stamps at {stamp / 1e9:.3f}: window flushed")
                for lc in self.locs:
                    lc.reset(keep_noise_floor=True)
                self.pushed = self.since = 0
        if stamp == 0 and expected is not None:
            stamp = expected
        return stamp

    def _estimate(self, cam: Optional[_Camera], files: _EstimateFiles) -> None:
        from sbm_ros.nodes.ros_convert import resolve_sources
        for lc, m in zip(self.locs, self.models):
            est = lc.estimate()
            if est is None:
                continue
            end_ns = self.anchor[0] + (est.end_sample - 1 - self.anchor[1]) * 1_000_000_000 \
                // self.rate_model
            camera = _model_camera(cam, m)
            outs = resolve_sources(est.sources, m.target_space, m.dims_per_source, camera)
            self.latest[m.n_sources] = (end_ns, outs)
            files.write(end_ns, m, est, outs)


def _model_camera(cam: Optional[_Camera], m):
    """The bag's camera, else the one stored in the model (None if neither)."""
    camera = cam.cam if cam is not None else None
    if camera is None and m.camera:
        from sbm_ros.core.geometry import PinholeCamera
        try:
            camera = PinholeCamera.from_camera_info_dict(m.camera)
        except (ValueError, KeyError, TypeError):
            camera = None
    return camera


class _Overlay:
    """Each image with the newest estimates (within 0.5 s) and face boxes -> the overlay video
    (frame rate ``--fps``, else from the first image stamps)."""

    def __init__(self, args, say):
        self.args = args
        self.say = say
        self.faces_latest = None
        self.video = None
        self.img_t0 = None
        self.img_stamps: List[int] = []

    def on_faces(self, msg) -> None:
        from sbm_ros.av.fusion import Face
        self.faces_latest = [Face(str(d.id), d.bbox.center.position.x,
                                  d.bbox.center.position.y, d.bbox.size_x, d.bbox.size_y)
                             for d in msg.detections]

    def on_image(self, msg, latest: Dict[int, tuple]) -> None:
        from sbm_ros.av import image_io
        st = _stamp_ns(msg.header)
        self.img_stamps.append(st)
        if self.img_t0 is None:
            self.img_t0 = st
        try:
            bgr = image_io.to_bgr8(image_io.decode_image(
                msg.encoding, msg.height, msg.width, msg.step, bytes(msg.data),
                bool(msg.is_bigendian)), msg.encoding)
        except image_io.ImageError as exc:
            self.say(f"image skipped: {exc}")
            return
        video = self._video()
        out = image_io.draw_overlay(bgr, self.faces_latest or [], _sounds(latest, st))
        video.add(int(round((st - self.img_t0) / 1e9 * video.fps)), out)

    def _video(self):
        from .recorder import VideoWriter
        video = self.video
        if video is None:
            fps = self.args.fps or 15.0
            video = self.video = VideoWriter(os.path.join(self.args.out, "overlay.mp4"), fps,
                                             log=self.say)
            video._fps_guess = self.args.fps is None
        if video._fps_guess and len(self.img_stamps) >= 2 and video.n_written <= 1:
            d = np.median(np.diff(self.img_stamps)) / 1e9
            if d > 0:
                video.fps = float(round(1.0 / d, 3))
        return video


def _sounds(latest: Dict[int, tuple], stamp_ns: int) -> List:
    """The newest estimates with a pixel, of each model, within 0.5 s of ``stamp_ns``."""
    from sbm_ros.av.fusion import Sound
    sounds = []
    for ns, (est_ns, outs) in sorted(latest.items()):
        if abs(stamp_ns - est_ns) > 0.5e9:
            continue
        for o in outs:
            if o.pixel is not None:
                sounds.append(Sound(f"{ns}src_{o.index}", float(o.pixel[0]),
                                    float(o.pixel[1]),
                                    o.pixel_cov if o.pixel_cov is not None
                                    else np.eye(2), o.confidence))
    return sounds


def run(args) -> Dict:
    from rosbags.highlevel import AnyReader  # noqa: F401 - fails early if rosbags is missing
    from rosbags.rosbag2 import Reader

    def say(m):
        if not args.quiet:
            print(f"[sbm-bag] {m}", file=sys.stderr, flush=True)

    t_wall = time.monotonic()
    models = _load_models(args)
    rate_model = models[0].feature_config.sample_rate
    ts = typestore()
    os.makedirs(args.out, exist_ok=True)
    path = args.bag
    if os.path.isfile(path):
        path = os.path.dirname(os.path.abspath(path))
    with Reader(path) as reader:
        a_c, i_c, img_c, cam_c, face_c = _topics(list(reader.connections), args, say)
        rate, channels, sfmt = _audio_format(reader, ts, i_c, args)
        say(f"audio {rate} Hz {channels} ch {sfmt}; models: "
            + ", ".join(f"{m.n_sources} source(s) K={m.n_components} {m.target_space}"
                        for m in models))
        audio = _AudioLocaliser(models, args, rate, channels, sfmt, say)
        overlay = _Overlay(args, say)
        cam = None
        files = _EstimateFiles(args.out)
        for c, _, raw in reader.messages(connections=a_c + cam_c + img_c + face_c):
            msg = ts.deserialize_cdr(raw, c.msgtype)
            if c.msgtype == CAMINFO_T:
                if cam is None:
                    cam = _read_camera(msg, say)
            elif c.msgtype == FACES_T:
                overlay.on_faces(msg)
            elif c.msgtype == IMAGE_T:
                overlay.on_image(msg, audio.latest)
            else:
                audio.add(msg, cam, files)
        files.close()
    out = {"estimates_csv": os.path.join(args.out, "estimates.csv"),
           "estimates_jsonl": os.path.join(args.out, "estimates.jsonl")}
    if overlay.video is not None:
        v = overlay.video.close()
        if v:
            out["video"] = v
    wall = time.monotonic() - t_wall
    audio_s = audio.total_samples / rate_model
    speed = audio_s / wall if wall > 0 else float("inf")
    say(f"{audio.n_audio} audio chunks ({audio_s:.1f} s), {files.n} estimates, "
        f"{len(overlay.img_stamps)} images in {wall:.1f} s: {speed:.1f}x faster than real time")
    for k, v in out.items():
        say(f"{k}: {v}")
    return {"files": out, "audio_s": audio_s, "wall_s": wall, "speed": speed,
            "n_estimates": files.n, "n_images": len(overlay.img_stamps)}


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from sbm_ros.core.model import ModelError
    try:
        run(args)
    except ImportError as exc:
        print(f"sbm-bag: error: {exc} (pip install rosbags)", file=sys.stderr)
        return 2
    except (ModelError, ValueError, OSError) as exc:
        print(f"sbm-bag: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - rosbags errors (corrupt bag, ...)
        print(f"sbm-bag: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

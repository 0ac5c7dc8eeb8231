"""A calibration sweep on the virtual head: a loudspeaker with a marker moving through the view.

The sweep file shares the scenario file's top-level keys (``name``, ``description``,
``camera``, ``sample_rate``, ``room``, ``snr_db``, ``seed``, ``lead_in_s``, ``tail_s``; same
meaning and checks as :mod:`.scenario`) and adds ``camera_rate`` (frames per second of the
virtual camera, default 15) and a ``loudspeaker`` entry::

    loudspeaker:
      level_dbfs: -20            # RMS of the white noise fed to the loudspeaker (mono)
      marker: {dictionary: DICT_4X4_50, id: 7, side_m: 0.08}
      raster:                    # a serpentine over the camera's view ...
        rows: 14                 # horizontal passes, evenly spaced from the top margin line to
                                 # the bottom one
        speed_deg_s: 2.1         # angular speed along the path
        margin_px: 48            # pixels left out on each side (the marker must stay whole
                                 # in the image to be detected); or margin: fraction of W / H
        pause_every_deg: 0       # optional stops: every so many degrees of path ...
        pause_s: 0               # ... stand still that long
        turn_pause_s: 0.6        # stand still that long at both ends of every pass
      # waypoints:               # ... or explicit waypoints, linear in (az, el) between them:
      #   - [0.0, -10.0, 5.0]    # [t_s, azimuth_deg, elevation_deg], or
      #   - {t: 4.0, pixel: [320, 240]}      # {t, direction: [az, el]} / {t, pixel: [u, v]}

Times of the trajectory are seconds after ``lead_in_s``; the loudspeaker plays from the start
of the trajectory to its end; the scene lasts ``lead_in_s + trajectory + tail_s``.

:class:`SweepScene` renders the sound (white noise from the moving loudspeaker,
:meth:`sbm_ros.sim.render.VirtualHead.render_moving`: BRIRs crossfaded every 40 ms, no
clicks), the marker's true pixel at any time and the camera image with the loudspeaker and its
ArUco marker drawn where it is (OpenCV's ``aruco`` module generates the marker; the marker side
in pixels is ``side_m / distance * fy``; the marker's centre is the loudspeaker's direction).

Pixel convention: (u, v) with the origin at the top-left *corner* of the image (as
:class:`.camera.VirtualCamera`); OpenCV's detector reports pixel *centres*, i.e. 0.5 px less.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .render import VirtualHead, add_self_noise
from .room import Room
from .scenario import ScenarioError, _check_keys, _num, _parse_camera, _parse_room, _position
from .sources import white_noise

__all__ = ["Trajectory", "raster_trajectory", "SweepScene", "parse_sweep", "load_sweep",
           "default_sweep_path", "draw_loudspeaker"]


class Trajectory:
    """Piecewise-linear path in (azimuth, elevation) through waypoints ``(t, az, el)``.

    Before the first waypoint the source is at the first, after the last at the last.
    """

    def __init__(self, waypoints):
        w = np.asarray(waypoints, dtype=float)
        if w.ndim != 2 or w.shape[1] != 3 or w.shape[0] < 1:
            raise ValueError("waypoints must be rows of (t, az, el)")
        if not np.all(np.isfinite(w)):
            raise ValueError("waypoints must be finite")
        if np.any(np.diff(w[:, 0]) < 0):
            raise ValueError("waypoint times must not decrease")
        self.waypoints = w

    @property
    def start_s(self) -> float:
        return float(self.waypoints[0, 0])

    @property
    def end_s(self) -> float:
        return float(self.waypoints[-1, 0])

    def shifted(self, dt: float) -> "Trajectory":
        w = self.waypoints.copy()
        w[:, 0] += dt
        return Trajectory(w)

    def direction_at(self, t):
        """(az, el) degrees at time(s) ``t`` (scalars or arrays)."""
        w = self.waypoints
        t = np.asarray(t, dtype=float)
        if w.shape[0] == 1:
            return np.full(t.shape, w[0, 1]), np.full(t.shape, w[0, 2])
        # np.interp needs increasing x: equal times (a jump) take the later value
        x = w[:, 0] + np.arange(w.shape[0]) * 1e-9
        return np.interp(t, x, w[:, 1]), np.interp(t, x, w[:, 2])

    __call__ = direction_at

    def speed_at(self, t) -> np.ndarray:
        """Angular speed (deg/s) at time(s) ``t`` (0 while standing still)."""
        w = self.waypoints
        t = np.asarray(t, dtype=float)
        dt = np.diff(w[:, 0])
        d = np.hypot(np.diff(w[:, 1]), np.diff(w[:, 2]))
        v = np.where(dt > 0, d / np.where(dt > 0, dt, 1.0), 0.0)
        k = np.searchsorted(w[:, 0], t, side="right") - 1
        inside = (k >= 0) & (k < v.size)
        return np.where(inside, v[np.clip(k, 0, max(v.size - 1, 0))] if v.size else 0.0, 0.0)


def raster_trajectory(camera, rows: int = 12, speed_deg_s: float = 1.8, margin: float = 0.03,
                      pause_every_deg: float = 0.0, pause_s: float = 0.0,
                      step_px: float = 4.0, margin_px: Optional[float] = None,
                      turn_pause_s: float = 0.0) -> Trajectory:
    """Serpentine over the image: ``rows`` horizontal passes (left to right, then back) evenly
    spaced from the top margin line to the bottom one (one pass in the middle if ``rows`` is
    1), joined by vertical moves, at ``speed_deg_s`` along the path; optional stops of
    ``pause_s`` every ``pause_every_deg`` degrees of path. The margin is ``margin_px`` pixels
    on every side, else ``margin`` times the width / height. ``turn_pause_s``: the loudspeaker
    stands still that long at both ends of every pass (the image's corner and edge cells get
    still samples there). Starts at t = 0."""
    if rows < 1 or speed_deg_s <= 0:
        raise ValueError("raster needs rows >= 1 and speed_deg_s > 0")
    W, H = camera.width, camera.height
    mu, mv = (margin * W, margin * H) if margin_px is None else (margin_px, margin_px)
    if not (0 <= mu < W / 2 and 0 <= mv < H / 2):
        raise ValueError("the raster margin leaves no room in the image")
    u0, u1 = mu, W - mu
    v0, v1 = mv, H - mv
    vs = np.linspace(v0, v1, rows) if rows > 1 else np.array([0.5 * (v0 + v1)])
    n_u = max(2, int(math.ceil((u1 - u0) / step_px)) + 1)
    pts, turns = [], []
    for r, v in enumerate(vs):
        us = np.linspace(u0, u1, n_u) if r % 2 == 0 else np.linspace(u1, u0, n_u)
        if pts:                                         # vertical move from the previous row
            pu, pv = pts[-1]
            n_v = max(2, int(math.ceil(abs(v - pv) / step_px)) + 1)
            pts.extend((pu, vv) for vv in np.linspace(pv, v, n_v)[1:-1])
        turns.append(len(pts))
        pts.extend((u, v) for u in us)
        turns.append(len(pts) - 1)
    px = np.asarray(pts)
    az, el = camera.pixel_to_direction(px[:, 0], px[:, 1])
    dist = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(az), np.diff(el)))])
    t = dist / speed_deg_s
    if turn_pause_s > 0:
        stop = np.zeros(px.shape[0])
        stop[turns] = turn_pause_s
        wait = np.cumsum(stop)                          # stops up to and including point i
        rows_out = []
        for i in range(px.shape[0]):
            rows_out.append((t[i] + wait[i] - stop[i], az[i], el[i]))
            if stop[i]:
                rows_out.append((t[i] + wait[i], az[i], el[i]))
        if pause_every_deg > 0 and pause_s > 0:
            raise ValueError("give either turn_pause_s or pause_every_deg / pause_s")
        return Trajectory(rows_out)
    if pause_every_deg > 0 and pause_s > 0:
        marks = np.arange(pause_every_deg, dist[-1], pause_every_deg)
        all_d = np.union1d(dist, marks)
        az = np.interp(all_d, dist, az)
        el = np.interp(all_d, dist, el)
        t = all_d / speed_deg_s
        stops = np.isin(all_d, marks)
        extra = np.cumsum(stops) * pause_s             # pauses before each point (inclusive)
        rows_out = []
        for i in range(all_d.size):
            before = extra[i] - (pause_s if stops[i] else 0.0)
            rows_out.append((t[i] + before, az[i], el[i]))
            if stops[i]:
                rows_out.append((t[i] + extra[i], az[i], el[i]))
        return Trajectory(rows_out)
    return Trajectory(np.stack([t, az, el], axis=1))


# ----------------------------------------------------------------------------- drawing
def _aruco_marker(dictionary: str, marker_id: int, side_px: int) -> np.ndarray:
    import cv2
    if not hasattr(cv2, "aruco"):
        raise ScenarioError(f"OpenCV {cv2.__version__} has no aruco module (needed to draw "
                            f"the loudspeaker's marker)")
    key = str(dictionary).upper()
    key = key if key.startswith("DICT_") else "DICT_" + key
    if not hasattr(cv2.aruco, key):
        raise ScenarioError(f"loudspeaker.marker: unknown ArUco dictionary {dictionary!r}")
    d = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, key))
    if not 0 <= int(marker_id) < d.bytesList.shape[0]:
        raise ScenarioError(f"loudspeaker.marker: id {marker_id} is not in {key}")
    return cv2.aruco.generateImageMarker(d, int(marker_id), int(side_px), borderBits=1)


def draw_loudspeaker(img: np.ndarray, u: float, v: float, side_px: float,
                     marker: np.ndarray) -> None:
    """Draw the loudspeaker (dark cabinet, white plate, marker of ``side_px`` centred at the
    corner-convention pixel (u, v)) on a BGR image, with sub-pixel placement."""
    import cv2
    H, W = img.shape[:2]
    # the patch: white plate (quiet zone 0.25 side on each side) holding the marker
    m = marker.shape[0]
    q = int(round(0.25 * m))
    P = m + 2 * q
    patch = np.full((P, P), 255, np.uint8)
    patch[q:q + m, q:q + m] = marker
    # shrink to about the drawn size first (area averaging: no aliasing of the bits), then
    # place with a sub-pixel affine map (scale close to 1)
    P2 = max(8, int(round(P * float(side_px) / m)))
    patch = cv2.resize(patch, (P2, P2), interpolation=cv2.INTER_AREA)
    s = float(side_px) / m * P / P2
    P = P2
    # corner convention on both sides: dst = s * (src - P / 2) + (u, v); OpenCV maps pixel
    # centres, i.e. src_cv = src - 0.5 and dst_cv = dst - 0.5
    A = np.array([[s, 0.0, s * (0.5 - P / 2.0) + u - 0.5],
                  [0.0, s, s * (0.5 - P / 2.0) + v - 0.5]])
    # the cabinet below the plate (a dark box with a woofer); it does not surround the plate:
    # OpenCV's detector missed markers whose dark surround touched the image border
    half = 0.5 * s * P
    x0, x1 = int(round(u - half)), int(round(u + half))
    y0, y1 = int(round(v + half)) + 1, int(round(v + 2.6 * half))
    cv2.rectangle(img, (x0, y0), (x1, y1), (45, 45, 50), -1)
    cv2.circle(img, (int(round(u)), int(round(v + 1.8 * half))), max(2, int(half * 0.45)),
               (25, 25, 25), -1)
    warped = cv2.warpAffine(patch, A, (W, H), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mask = cv2.warpAffine(np.full((P, P), 255, np.uint8), A, (W, H), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    a = (mask.astype(np.float32) / 255.0)[..., None]
    img[:] = np.clip(img * (1.0 - a) + warped[..., None].astype(np.float32) * a + 0.5, 0,
                     255).astype(np.uint8)


# ----------------------------------------------------------------------------- the scene
@dataclass
class SweepScene:
    name: str
    camera_name: str
    camera: object                                # VirtualCamera
    sample_rate: int
    room: Dict
    snr_db: Optional[float]
    seed: int
    lead_in_s: float
    tail_s: float
    camera_rate: float
    trajectory: Trajectory                        # scene time (lead-in included)
    level_dbfs: float = -20.0
    marker_dictionary: str = "DICT_4X4_50"
    marker_id: int = 7
    marker_side_m: float = 0.08
    source: str = ""
    raw: Dict = field(default_factory=dict, repr=False)

    @property
    def duration_s(self) -> float:
        return self.trajectory.end_s + self.tail_s

    @property
    def distance(self) -> float:
        return float(self.room.get("distance", 2.0))

    @property
    def marker_side_px(self) -> float:
        return self.marker_side_m / self.distance * float(self.camera.fy)

    def make_head(self) -> VirtualHead:
        return VirtualHead(room=Room(**self.room), snr_db=self.snr_db,
                           sample_rate=self.sample_rate, seed=self.seed)

    def direction_at(self, t):
        return self.trajectory.direction_at(t)

    def marker_pixel_at(self, t) -> Tuple:
        """True (u, v) of the marker centre (corner convention) at scene time(s) ``t``."""
        az, el = self.direction_at(t)
        return self.camera.direction_to_pixel(az, el)

    def playing(self, t) -> np.ndarray:
        t = np.asarray(t, float)
        return (t >= self.trajectory.start_s) & (t < self.trajectory.end_s)

    def frame_times(self) -> np.ndarray:
        return np.arange(0.0, self.duration_s, 1.0 / self.camera_rate)

    def render_audio(self, head: Optional[VirtualHead] = None, hop: int = 640,
                     say: Callable[[str], None] = lambda m: None) -> np.ndarray:
        """The scene's binaural track (n, 2): white noise from the moving loudspeaker while the
        trajectory runs (reverberation tail kept), self-noise at ``snr_db`` re the clean
        track's power while it plays, scaled down if it would exceed 0.99."""
        head = head or self.make_head()
        rate = self.sample_rate
        n = int(math.ceil(self.duration_s * rate))
        i0 = int(round(self.trajectory.start_s * rate))
        i1 = int(round(self.trajectory.end_s * rate))
        rms = 10.0 ** (self.level_dbfs / 20.0)
        src = white_noise((i1 - i0) / rate, rate, seed=[self.seed, 31], rms=rms)
        t0 = i0 / rate
        y = head.render_moving_clean(src, lambda t: self.direction_at(np.asarray(t) + t0),
                                     hop=hop, keep_tail=True)
        track = np.zeros((n, 2))
        m = min(y.shape[0], n - i0)
        track[i0:i0 + m] = y[:m]
        say(f"rendered {src.size / rate:.1f} s of moving white noise")
        if self.snr_db is not None:
            ref = float(np.mean(track[i0:i1] ** 2))
            track = add_self_noise(track, self.snr_db, np.random.default_rng([self.seed, 99]),
                                   reference_power=ref)
        peak = float(np.max(np.abs(track))) if track.size else 0.0
        if peak > 0.99:
            track *= 0.99 / peak
            say(f"track peak {peak:.2f} > 0.99: scaled down")
        return track

    def image_at(self, t: float, background: Optional[np.ndarray] = None) -> np.ndarray:
        """BGR image (H, W, 3) at scene time ``t``: the room and the loudspeaker with its
        marker (when in front of the camera)."""
        from .drawing import draw_room
        img = (draw_room(self.camera.width, self.camera.height) if background is None
               else background.copy())
        u, v = self.marker_pixel_at(float(t))
        if np.isfinite(u) and np.isfinite(v):
            side = self.marker_side_px
            key = int(round(side * 4))
            if getattr(self, "_marker_cache", (None,))[0] != key:
                self._marker_cache = (key, _aruco_marker(self.marker_dictionary,
                                                         self.marker_id, max(48, key)))
            draw_loudspeaker(img, float(u), float(v), side, self._marker_cache[1])
        return img


def _parse_waypoints(raw, camera):
    if not isinstance(raw, list) or not raw:
        raise ScenarioError("loudspeaker.waypoints must be a non-empty list")
    out = []
    for i, w in enumerate(raw):
        where = f"loudspeaker.waypoints[{i}]"
        if isinstance(w, dict):
            _check_keys(w, {"t", "direction", "pixel"}, where)
            t = _num(w, "t", where, nonneg=True)
            if t is None:
                raise ScenarioError(f"{where}: needs 't' (seconds)")
            az, el = _position(w, where, camera)
        elif (isinstance(w, (list, tuple)) and len(w) == 3
              and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in w)):
            t, az, el = (float(a) for a in w)
            _position({"direction": [az, el]}, where, camera)
            if t < 0:
                raise ScenarioError(f"{where}: t must be >= 0")
        else:
            raise ScenarioError(f"{where}: must be [t, azimuth_deg, elevation_deg] or "
                                f"{{t, direction|pixel}}, got {w!r}")
        if out and t < out[-1][0]:
            raise ScenarioError(f"{where}: times must not decrease ({t} after {out[-1][0]})")
        out.append((t, az, el))
    return Trajectory(out)


def _parse_loudspeaker(ls, camera, sc_where="loudspeaker"):
    if not isinstance(ls, dict):
        raise ScenarioError("'loudspeaker' must be a mapping")
    _check_keys(ls, {"level_dbfs", "marker", "raster", "waypoints"}, sc_where)
    if ("raster" in ls) == ("waypoints" in ls):
        raise ScenarioError("loudspeaker: give exactly one of 'raster' or 'waypoints'")
    if "raster" in ls:
        r = ls["raster"] or {}
        if not isinstance(r, dict):
            raise ScenarioError("loudspeaker.raster must be a mapping")
        where = "loudspeaker.raster"
        _check_keys(r, {"rows", "speed_deg_s", "margin", "margin_px", "pause_every_deg",
                        "pause_s", "turn_pause_s"}, where)
        rows = r.get("rows", 12)
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise ScenarioError(f"{where}: 'rows' must be an integer >= 1, got {rows!r}")
        margin = _num(r, "margin", where, 0.03, nonneg=True)
        if margin >= 0.5:
            raise ScenarioError(f"{where}: 'margin' must be < 0.5")
        try:
            traj = raster_trajectory(camera, rows,
                                     _num(r, "speed_deg_s", where, 1.8, positive=True), margin,
                                     _num(r, "pause_every_deg", where, 0.0, nonneg=True),
                                     _num(r, "pause_s", where, 0.0, nonneg=True),
                                     margin_px=_num(r, "margin_px", where, None, nonneg=True),
                                     turn_pause_s=_num(r, "turn_pause_s", where, 0.0,
                                                       nonneg=True))
        except ValueError as exc:
            raise ScenarioError(f"{where}: {exc}") from None
    else:
        traj = _parse_waypoints(ls["waypoints"], camera)
    mk = ls.get("marker") or {}
    if not isinstance(mk, dict):
        raise ScenarioError("loudspeaker.marker must be a mapping")
    _check_keys(mk, {"dictionary", "id", "side_m"}, "loudspeaker.marker")
    mid = mk.get("id", 7)
    if isinstance(mid, bool) or not isinstance(mid, int) or mid < 0:
        raise ScenarioError(f"loudspeaker.marker: 'id' must be an integer >= 0, got {mid!r}")
    return traj, {"level_dbfs": _num(ls, "level_dbfs", sc_where, -20.0),
                  "marker_dictionary": str(mk.get("dictionary", "DICT_4X4_50")),
                  "marker_id": int(mid),
                  "marker_side_m": _num(mk, "side_m", "loudspeaker.marker", 0.08,
                                        positive=True)}


def parse_sweep(data: Dict, source: str = "") -> SweepScene:
    """Validate a sweep mapping (the YAML content); raises :class:`ScenarioError`."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source or 'sweep'}: top level must be a mapping")
    known = {"name", "description", "camera", "sample_rate", "room", "snr_db", "seed",
             "lead_in_s", "tail_s", "camera_rate", "loudspeaker"}
    _check_keys(data, known, source or "sweep")
    if "loudspeaker" not in data:
        raise ScenarioError(f"{source or 'sweep'}: needs a 'loudspeaker' entry")
    cam_name, camera = _parse_camera(data)
    rate = data.get("sample_rate", 16000)
    if isinstance(rate, bool) or not isinstance(rate, int) or rate < 8000:
        raise ScenarioError(f"sample_rate must be an integer >= 8000, got {rate!r}")
    traj, ls = _parse_loudspeaker(data["loudspeaker"], camera)
    lead = _num(data, "lead_in_s", "sweep", 1.0, nonneg=True)
    return SweepScene(name=str(data.get("name", "sweep")), camera_name=cam_name, camera=camera,
                      sample_rate=int(rate), room=_parse_room(data),
                      snr_db=_num(data, "snr_db", "sweep", 30.0), seed=int(data.get("seed", 0)),
                      lead_in_s=lead, tail_s=_num(data, "tail_s", "sweep", 1.0, nonneg=True),
                      camera_rate=_num(data, "camera_rate", "sweep", 15.0, positive=True),
                      trajectory=traj.shifted(lead), source=source, raw=copy.deepcopy(data),
                      **ls)


def default_sweep_path() -> str:
    """``config/sweep_scenario.yaml`` of the checkout, else of the installed package share."""
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    here = os.path.join(checkout, "config", "sweep_scenario.yaml")
    if os.path.exists(here):
        return here
    try:
        from ament_index_python.packages import get_package_share_directory
        return os.path.join(get_package_share_directory("sbm_ros"), "config",
                            "sweep_scenario.yaml")
    except Exception:  # noqa: BLE001 - not an ament install
        return here


def load_sweep(path: Optional[str] = None) -> SweepScene:
    """Read and validate a sweep YAML file (default :func:`default_sweep_path`)."""
    import yaml
    path = os.path.expanduser(str(path or default_sweep_path()))
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ScenarioError(f"cannot read sweep {path!r}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"sweep {path!r} is not valid YAML: {exc}") from None
    try:
        return parse_sweep(data, source=path)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


# ----------------------------------------------------------------------------- playback
@dataclass
class LoudspeakerState:
    """What the virtual head's frame loop needs of the loudspeaker at one time (the fields of a
    scene person state it reads)."""
    name: str
    talking: bool
    u_px: float
    v_px: float


class SweepPlayback:
    """A rendered sweep in the shape the virtual head plays: ``audio``, ``duration_s``,
    ``summary()``, ``talkers_at(t)`` and ``image_at(t) -> (image, states)`` /
    ``face_detections(states)`` (none: the loudspeaker is not a face)."""

    def __init__(self, scene: SweepScene, audio: np.ndarray):
        from .drawing import draw_room
        self.scene = scene
        self.audio = audio
        self.duration_s = audio.shape[0] / scene.sample_rate
        self._background = draw_room(scene.camera.width, scene.camera.height)

    @classmethod
    def render(cls, scene: SweepScene, say: Callable[[str], None] = lambda m: None):
        return cls(scene, scene.render_audio(scene.make_head(), say=say))

    def summary(self) -> Dict:
        sc = self.scene
        tr = sc.trajectory
        return {"name": sc.name, "source": sc.source, "kind": "sweep",
                "camera": sc.camera.to_json_dict(), "duration_s": round(self.duration_s, 3),
                "sample_rate": sc.sample_rate, "people": [], "moves": [], "utterances": [],
                "sounds": [], "loudspeaker": {
                    "start_s": round(tr.start_s, 3), "end_s": round(tr.end_s, 3),
                    "level_dbfs": sc.level_dbfs, "marker": {
                        "dictionary": sc.marker_dictionary, "id": sc.marker_id,
                        "side_m": sc.marker_side_m}}}

    def talkers_at(self, t: float) -> List:
        return []

    def state_at(self, t: float) -> LoudspeakerState:
        u, v = self.scene.marker_pixel_at(float(t))
        return LoudspeakerState("loudspeaker", bool(self.scene.playing(float(t))), float(u),
                                float(v))

    def image_at(self, t: float):
        return self.scene.image_at(float(t), self._background), [self.state_at(t)]

    def face_detections(self, states) -> List:
        return []

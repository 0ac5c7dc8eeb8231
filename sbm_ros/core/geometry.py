"""Geometry: REP 103 directions, pinhole camera, pixel <-> direction, covariance propagation.

Conventions (``docs/architecture.md``, ``method.md`` §6)
-------------------------------------------------------
* **Head frame** (REP 103): x forward, y left, z up. A direction is ``(azimuth, elevation)``
  in **degrees**: azimuth positive to the LEFT (counter-clockwise seen from above, measured
  from +x towards +y), elevation positive UP. Unit vector:
  ``(cos el cos az, cos el sin az, sin el)``; inverse: ``az = atan2(y, x)``,
  ``el = atan2(z, hypot(x, y))`` (so ``az`` in (-180, 180], ``el`` in [-90, 90]).
* **Camera body frame** (ROS ``camera_link``): same axes as the head frame. By default it
  coincides with the head frame (camera at the head origin looking along +x); an extrinsic
  rotation ``R_head_cam`` (3x3, columns = camera-body axes expressed in the head frame) may be
  given. Translation is ignored: directions are treated as points at infinity.
* **Camera optical frame**: z forward, x right, y down:
  ``x_opt = -y_body``, ``y_opt = -z_body``, ``z_opt = x_body``.
* **Pixels** ``(u, v)``: u to the right, v down; pinhole ``u = fx X/Z + cx``,
  ``v = fy Y/Z + cy`` with the intrinsics of ``sensor_msgs/CameraInfo`` (``K``). Lens
  distortion is ignored (rectified images assumed). The image spans
  ``0 <= u <= width``, ``0 <= v <= height`` (origin at the top-left pixel corner);
  :meth:`PinholeCamera.from_fov` therefore puts the principal point at ``(width/2, height/2)``.
* A direction is "in front" of the camera iff ``Z_opt > 1e-9`` (unit vector); otherwise
  projection yields NaN pixels and ``valid = False``.
* Covariances are propagated to first order with the analytic Jacobian
  ``J = d(u, v) / d(az, el)`` (pixels per degree): ``C_px = J C_deg J^T`` and
  ``C_deg = J^-1 C_px J^-T``.
* Quaternions are plain ``(x, y, z, w)`` tuples (geometry_msgs order), Hamilton convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

__all__ = [
    "direction_to_vector",
    "vector_to_direction",
    "R_OPT_BODY",
    "PinholeCamera",
    "quaternion_from_direction",
    "direction_from_quaternion",
    "quaternion_multiply",
    "rotate_vector",
    "angular_distance_deg",
]

#: Rotation taking camera-body (x fwd, y left, z up) coordinates to optical (z fwd, x right,
#: y down).
R_OPT_BODY = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
_FRONT_EPS = 1e-9


def direction_to_vector(azimuth_deg, elevation_deg=0.0) -> np.ndarray:
    """Unit vector(s) (..., 3) in the head frame for azimuth/elevation in degrees."""
    az = np.deg2rad(np.asarray(azimuth_deg, dtype=np.float64))
    el = np.deg2rad(np.asarray(elevation_deg, dtype=np.float64))
    az, el = np.broadcast_arrays(az, el)
    ce = np.cos(el)
    return np.stack([ce * np.cos(az), ce * np.sin(az), np.sin(el)], axis=-1)


def vector_to_direction(v) -> np.ndarray:
    """(azimuth, elevation) in degrees, shape (..., 2), of head-frame vector(s) (..., 3) (any
    norm > 0)."""
    v = np.asarray(v, dtype=np.float64)
    if v.shape[-1] != 3:
        raise ValueError(f"vectors must have last dimension 3, got {v.shape}")
    az = np.arctan2(v[..., 1], v[..., 0])
    el = np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1]))
    return np.rad2deg(np.stack([az, el], axis=-1))


def angular_distance_deg(dir_a, dir_b) -> np.ndarray:
    """Great-circle angle (degrees) between directions (..., 2) given as (az, el) in degrees."""
    a = np.asarray(dir_a, dtype=np.float64)
    b = np.asarray(dir_b, dtype=np.float64)
    va = direction_to_vector(a[..., 0], a[..., 1])
    vb = direction_to_vector(b[..., 0], b[..., 1])
    c = np.cross(va, vb)
    return np.rad2deg(np.arctan2(np.linalg.norm(c, axis=-1), (va * vb).sum(-1)))


def _as_dirs(directions) -> np.ndarray:
    d = np.asarray(directions, dtype=np.float64)
    if d.shape[-1] == 1:  # azimuth only -> elevation 0
        d = np.concatenate([d, np.zeros_like(d)], axis=-1)
    if d.shape[-1] != 2:
        raise ValueError(
            f"directions must have last dimension 2 (az, el in degrees), got {d.shape}")
    return d


@dataclass(frozen=True)
class PinholeCamera:
    """Pinhole camera (no distortion) attached to the head.

    Parameters
    ----------
    fx, fy : float
        Focal lengths in pixels.
    cx, cy : float
        Principal point in pixels.
    width, height : int
        Image size in pixels.
    R_head_cam : (3, 3) array, optional
        Orientation of the camera body frame (x fwd, y left, z up) in the head frame; identity
        if omitted (camera looks along head +x).
    frame_id : str
        Optical frame name (metadata only).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    R_head_cam: Optional[np.ndarray] = field(default=None, compare=False)
    frame_id: str = "camera_optical_frame"

    def __post_init__(self) -> None:
        for name in ("fx", "fy"):
            v = float(getattr(self, name))
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"PinholeCamera.{name} must be finite and > 0, got {v}")
            object.__setattr__(self, name, v)
        for name in ("cx", "cy"):
            v = float(getattr(self, name))
            if not np.isfinite(v):
                raise ValueError(f"PinholeCamera.{name} must be finite, got {v}")
            object.__setattr__(self, name, v)
        for name in ("width", "height"):
            v = getattr(self, name)
            if int(v) != v or int(v) <= 0:
                raise ValueError(f"PinholeCamera.{name} must be a positive integer, got {v}")
            object.__setattr__(self, name, int(v))
        R = np.eye(3) if self.R_head_cam is None else np.asarray(self.R_head_cam, dtype=np.float64)
        if (R.shape != (3, 3) or not np.allclose(R @ R.T, np.eye(3), atol=1e-6)
                or np.linalg.det(R) < 0):
            raise ValueError("R_head_cam must be a 3x3 proper rotation matrix")
        R = R.copy()
        R.setflags(write=False)
        object.__setattr__(self, "R_head_cam", R)
        M = R_OPT_BODY @ R.T  # head -> optical
        M.setflags(write=False)
        object.__setattr__(self, "_M", M)

    # ------------------------------------------------------------------ constructors
    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @classmethod
    def from_K(cls, K, width: int, height: int, **kw) -> "PinholeCamera":
        """From a 3x3 (or 9-element row-major) intrinsic matrix. Skew is not supported."""
        K = np.asarray(K, dtype=np.float64).reshape(3, 3)
        if abs(K[0, 1]) > 1e-9 * max(1.0, abs(K[0, 0])):
            raise ValueError("camera skew K[0,1] != 0 is not supported")
        return cls(K[0, 0], K[1, 1], K[0, 2], K[1, 2], width, height, **kw)

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float,
                 vfov_deg: Optional[float] = None, **kw) -> "PinholeCamera":
        """From full horizontal / vertical fields of view (degrees), principal point at the centre.

        ``fx = (width/2) / tan(hfov/2)``, ``fy = (height/2) / tan(vfov/2)`` (``fy = fx`` if
        ``vfov_deg`` is None), ``cx = width/2``, ``cy = height/2``. The paper's lenses:
        ``from_fov(640, 480, 28, 21)`` and ``from_fov(1600, 1200, 62, 48)``.
        """
        if not 0 < hfov_deg < 180 or (vfov_deg is not None and not 0 < vfov_deg < 180):
            raise ValueError("fields of view must be in (0, 180) degrees")
        fx = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        fy = fx if vfov_deg is None else (height / 2.0) / math.tan(math.radians(vfov_deg) / 2.0)
        return cls(fx, fy, width / 2.0, height / 2.0, width, height, **kw)

    @classmethod
    def from_camera_info_dict(cls, d: dict) -> "PinholeCamera":
        """From a dict: ``width``, ``height`` and either ``K``/``k`` (9 values row-major or 3x3)
        or ``fx, fy, cx, cy``; optional ``frame_id`` / ``header.frame_id`` and ``R_head_cam``
        (3x3). Distortion (``D``/``d``) is ignored."""
        if "width" not in d or "height" not in d:
            raise ValueError("camera info needs 'width' and 'height'")
        kw = {}
        fid = d.get("frame_id")
        if fid is None and isinstance(d.get("header"), dict):
            fid = d["header"].get("frame_id")
        if fid:
            kw["frame_id"] = str(fid)
        if d.get("R_head_cam") is not None:
            kw["R_head_cam"] = np.asarray(d["R_head_cam"], dtype=np.float64).reshape(3, 3)
        K = d.get("K", d.get("k"))
        if K is not None:
            return cls.from_K(K, d["width"], d["height"], **kw)
        try:
            return cls(d["fx"], d["fy"], d["cx"], d["cy"], d["width"], d["height"], **kw)
        except KeyError as e:
            raise ValueError(f"camera info needs 'K' or fx, fy, cx, cy (missing {e})") from None

    def to_dict(self) -> dict:
        """JSON-friendly dict (readable by :meth:`from_camera_info_dict`)."""
        d = {
            "width": self.width, "height": self.height, "K": self.K.reshape(-1).tolist(),
            "fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "frame_id": self.frame_id,
        }
        if not np.allclose(self.R_head_cam, np.eye(3)):
            d["R_head_cam"] = self.R_head_cam.tolist()
        return d

    @property
    def hfov_deg(self) -> float:
        """Horizontal field of view (degrees) for a centred principal point."""
        return 2 * math.degrees(math.atan(self.width / 2 / self.fx))

    @property
    def vfov_deg(self) -> float:
        """Vertical field of view (degrees) for a centred principal point."""
        return 2 * math.degrees(math.atan(self.height / 2 / self.fy))

    # ------------------------------------------------------------------ frames
    def head_to_optical(self, v) -> np.ndarray:
        """Head-frame vector(s) (..., 3) -> optical-frame vector(s)."""
        return np.asarray(v, dtype=np.float64) @ self._M.T

    def optical_to_head(self, v) -> np.ndarray:
        """Optical-frame vector(s) (..., 3) -> head-frame vector(s)."""
        return np.asarray(v, dtype=np.float64) @ self._M

    # ------------------------------------------------------------------ projection
    def project(self, directions) -> Tuple[np.ndarray, np.ndarray]:
        """Project direction(s) to pixel(s).

        Parameters
        ----------
        directions : array_like (..., 2)
            (azimuth, elevation) in degrees (a last dimension of 1 means elevation 0).

        Returns
        -------
        uv : ndarray (..., 2)
            Pixel coordinates; NaN where the direction is not in front of the camera.
        valid : ndarray (...) bool
            True where the direction is in front of the camera (it may still be outside
            the image; see :meth:`in_image`).
        """
        d = _as_dirs(directions)
        p = self.head_to_optical(direction_to_vector(d[..., 0], d[..., 1]))
        valid = p[..., 2] > _FRONT_EPS
        z = np.where(valid, p[..., 2], 1.0)
        uv = np.stack([self.fx * p[..., 0] / z + self.cx,
                      self.fy * p[..., 1] / z + self.cy], axis=-1)
        uv[~valid] = np.nan
        return uv, valid

    def project_direction(self, azimuth_deg: float,
                          elevation_deg: float = 0.0) -> Optional[Tuple[float, float]]:
        """Scalar convenience: ``(u, v)`` or ``None`` if behind the camera."""
        uv, ok = self.project([azimuth_deg, elevation_deg])
        return (float(uv[0]), float(uv[1])) if ok else None

    def unproject(self, uv) -> np.ndarray:
        """Pixel(s) (..., 2) -> direction(s) (..., 2) (azimuth, elevation) in degrees."""
        uv = np.asarray(uv, dtype=np.float64)
        if uv.shape[-1] != 2:
            raise ValueError(f"pixels must have last dimension 2, got {uv.shape}")
        ray = np.stack([(uv[..., 0] - self.cx) / self.fx, (uv[..., 1] - self.cy) / self.fy,
                        np.ones(uv.shape[:-1])], axis=-1)
        return vector_to_direction(self.optical_to_head(ray))

    def in_image(self, uv) -> np.ndarray:
        """True where finite pixel(s) lie inside ``[0, width] x [0, height]``."""
        uv = np.asarray(uv, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return (
                np.isfinite(uv).all(-1) & (uv[..., 0] >= 0) & (uv[..., 0] <= self.width)
                & (uv[..., 1] >= 0) & (uv[..., 1] <= self.height)
            )

    # ------------------------------------------------------------------ Jacobians
    def jacobian_deg_to_px(self, directions) -> np.ndarray:
        """Analytic ``d(u, v)/d(az, el)`` in pixels per degree, shape (..., 2, 2).

        Rows: u, v; columns: azimuth, elevation. NaN where the direction is behind the camera.
        """
        d = _as_dirs(directions)
        az = np.deg2rad(d[..., 0])
        el = np.deg2rad(d[..., 1])
        ca, sa, ce, se = np.cos(az), np.sin(az), np.cos(el), np.sin(el)
        v = np.stack([ce * ca, ce * sa, se], axis=-1)
        dv_daz = np.stack([-ce * sa, ce * ca, np.zeros_like(az)], axis=-1)
        dv_del = np.stack([-se * ca, -se * sa, ce], axis=-1)
        p = self.head_to_optical(v)
        dp = np.stack([self.head_to_optical(dv_daz), self.head_to_optical(dv_del)],
                      axis=-1)  # (...,3,2)
        valid = p[..., 2] > _FRONT_EPS
        z = np.where(valid, p[..., 2], 1.0)
        Jp = np.zeros(p.shape[:-1] + (2, 3))
        Jp[..., 0, 0] = self.fx / z
        Jp[..., 0, 2] = -self.fx * p[..., 0] / z ** 2
        Jp[..., 1, 1] = self.fy / z
        Jp[..., 1, 2] = -self.fy * p[..., 1] / z ** 2
        J = Jp @ dp * (np.pi / 180.0)
        J[~valid] = np.nan
        return J

    def cov_deg_to_px(self, directions, cov_deg) -> np.ndarray:
        """First-order pixel covariance (..., 2, 2) of a direction estimate with covariance in
        deg^2."""
        J = self.jacobian_deg_to_px(directions)
        C = np.asarray(cov_deg, dtype=np.float64)
        return J @ C @ np.swapaxes(J, -1, -2)

    def cov_px_to_deg(self, uv, cov_px) -> np.ndarray:
        """First-order direction covariance (deg^2, (..., 2, 2)) of a pixel estimate ``uv`` with
        covariance ``cov_px`` (px^2), via the inverse Jacobian at ``unproject(uv)``."""
        J = self.jacobian_deg_to_px(self.unproject(uv))
        C = np.asarray(cov_px, dtype=np.float64)
        Ji = np.linalg.inv(J)
        return Ji @ C @ np.swapaxes(Ji, -1, -2)


# ---------------------------------------------------------------------- quaternions


def quaternion_multiply(q1, q2) -> Tuple[float, float, float, float]:
    """Hamilton product ``q1 * q2`` of (x, y, z, w) quaternions."""
    x1, y1, z1, w1 = q1
    x2, y2, z2, w2 = q2
    return (
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
    )


def rotate_vector(q, v) -> np.ndarray:
    """Rotate 3-vector ``v`` by unit quaternion ``q`` = (x, y, z, w)."""
    x, y, z, w = q
    u = np.array([x, y, z], dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def quaternion_from_direction(azimuth_deg: float,
                              elevation_deg: float = 0.0) -> Tuple[float, float, float, float]:
    """Unit quaternion (x, y, z, w) rotating the head +x axis onto the direction, with no roll.

    ``q = q_z(az) * q_y(-el)`` (yaw by the azimuth, then pitch up by the elevation; REP 103
    pitch is positive nose-down, hence the minus sign). Suitable for a
    ``geometry_msgs/Pose`` orientation whose x axis points at the source.
    """
    a = math.radians(float(azimuth_deg)) / 2.0
    b = -math.radians(float(elevation_deg)) / 2.0
    qz = (0.0, 0.0, math.sin(a), math.cos(a))
    qy = (0.0, math.sin(b), 0.0, math.cos(b))
    return tuple(float(c) for c in quaternion_multiply(qz, qy))


def direction_from_quaternion(q) -> Tuple[float, float]:
    """(azimuth, elevation) in degrees of the rotated +x axis of quaternion (x, y, z, w)."""
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q)
    if not n > 0:
        raise ValueError("zero quaternion")
    d = vector_to_direction(rotate_vector(q / n, [1.0, 0.0, 0.0]))
    return float(d[0]), float(d[1])

"""Virtual camera of the virtual head (the paper's narrow and wide lenses).

Pinhole model, no distortion, camera centre at the head origin, optical axis = the head's
forward axis (+x), image u to the right (towards negative azimuth), v down (towards negative
elevation). Pixel coordinates follow the project convention: origin at the top-left CORNER of
the top-left pixel, so the principal point is the image centre ``cx = W / 2``, ``cy = H / 2``
and the focal lengths ``fx = (W / 2) / tan(hfov / 2)``, ``fy = (H / 2) / tan(vfov / 2)`` put
the edges of the field of view on the image borders (u = 0 and u = W for azimuth = +-hfov/2 at
elevation 0; v = 0 and v = H for elevation = +-vfov/2 at azimuth 0).

Direction (az, el) -> ray in the optical frame (X right, Y down, Z forward):
``X = -cos(el) sin(az)``, ``Y = -sin(el)``, ``Z = cos(el) cos(az)``; ``u = cx + fx X / Z``,
``v = cy + fy Y / Z``. Inverse: ``az = atan2(-(u - cx) / fx, 1)``,
``el = atan2(-(v - cy) / fy, hypot(1, (u - cx) / fx))``.

(``sbm_ros.core.geometry`` holds the project's general pinhole camera; this one is deliberately
self-contained.)
"""

from __future__ import annotations

import numpy as np

__all__ = ["VirtualCamera", "NARROW", "WIDE"]


class VirtualCamera:
    def __init__(self, width: int, height: int, hfov_deg: float, vfov_deg: float,
                 frame_id: str = "sbm_camera", name: str = "camera"):
        self.width = int(width)
        self.height = int(height)
        self.hfov_deg = float(hfov_deg)
        self.vfov_deg = float(vfov_deg)
        self.frame_id = frame_id
        self.name = name
        self.fx = (self.width / 2.0) / np.tan(np.radians(self.hfov_deg) / 2.0)
        self.fy = (self.height / 2.0) / np.tan(np.radians(self.vfov_deg) / 2.0)
        self.cx = self.width / 2.0
        self.cy = self.height / 2.0

    @classmethod
    def narrow(cls, **kw) -> "VirtualCamera":
        """The paper's narrow lens: 640 x 480, 28 x 21 deg."""
        kw.setdefault("name", "narrow")
        return cls(640, 480, 28.0, 21.0, **kw)

    @classmethod
    def wide(cls, **kw) -> "VirtualCamera":
        """The paper's wide lens: 1600 x 1200, 62 x 48 deg."""
        kw.setdefault("name", "wide")
        return cls(1600, 1200, 62.0, 48.0, **kw)

    def __repr__(self) -> str:
        return (f"VirtualCamera({self.name!r}, {self.width}x{self.height}, "
                f"{self.hfov_deg}x{self.vfov_deg} deg)")

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    # ------------------------------------------------------------------ projections
    def direction_to_pixel(self, az_deg, el_deg):
        """(az, el) degrees -> (u, v) pixels (arrays broadcast). Points behind give NaN."""
        az = np.radians(np.asarray(az_deg, dtype=float))
        el = np.radians(np.asarray(el_deg, dtype=float))
        X = -np.cos(el) * np.sin(az)
        Y = -np.sin(el)
        Z = np.cos(el) * np.cos(az)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(Z > 0, self.cx + self.fx * X / Z, np.nan)
            v = np.where(Z > 0, self.cy + self.fy * Y / Z, np.nan)
        return u, v

    def pixel_to_direction(self, u, v):
        """(u, v) pixels -> (az, el) degrees."""
        x = (np.asarray(u, dtype=float) - self.cx) / self.fx
        y = (np.asarray(v, dtype=float) - self.cy) / self.fy
        az = np.degrees(np.arctan2(-x, 1.0))
        el = np.degrees(np.arctan2(-y, np.hypot(1.0, x)))
        return az, el

    def in_image(self, u, v, margin: float = 0.0):
        u = np.asarray(u, dtype=float)
        v = np.asarray(v, dtype=float)
        return ((u >= margin) & (u <= self.width - margin) & (v >= margin)
                & (v <= self.height - margin))

    # ------------------------------------------------------------------ serialisation
    def camera_info_dict(self) -> dict:
        """Fields of ``sensor_msgs/CameraInfo`` (plain lists; no ROS import)."""
        K = self.K
        P = np.hstack([K, np.zeros((3, 1))])
        return {
            "header": {"frame_id": self.frame_id},
            "width": self.width,
            "height": self.height,
            "distortion_model": "plumb_bob",
            "d": [0.0] * 5,
            "k": K.ravel().tolist(),
            "r": np.eye(3).ravel().tolist(),
            "p": P.ravel().tolist(),
            "binning_x": 0,
            "binning_y": 0,
            # upper-case aliases as in the ROS 1 message / OpenCV naming
            "D": [0.0] * 5,
            "K": K.ravel().tolist(),
            "R": np.eye(3).ravel().tolist(),
            "P": P.ravel().tolist(),
        }

    def to_json_dict(self) -> dict:
        """``camera.json`` content of the dataset folder format."""
        return {"width": self.width, "height": self.height, "K": self.K.ravel().tolist(),
                "fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy,
                "frame_id": self.frame_id, "hfov_deg": self.hfov_deg,
                "vfov_deg": self.vfov_deg, "name": self.name,
                "pixel_origin": "top-left corner of the top-left pixel"}

    @classmethod
    def from_json_dict(cls, d: dict) -> "VirtualCamera":
        if "hfov_deg" in d and "vfov_deg" in d:
            return cls(d["width"], d["height"], d["hfov_deg"], d["vfov_deg"],
                       frame_id=d.get("frame_id", "sbm_camera"), name=d.get("name", "camera"))
        K = np.asarray(d["K"], dtype=float).reshape(3, 3) if "K" in d else None
        fx = d["fx"] if "fx" in d else K[0, 0]
        fy = d["fy"] if "fy" in d else K[1, 1]
        w, h = int(d["width"]), int(d["height"])
        hfov = 2.0 * np.degrees(np.arctan((w / 2.0) / fx))
        vfov = 2.0 * np.degrees(np.arctan((h / 2.0) / fy))
        return cls(w, h, hfov, vfov, frame_id=d.get("frame_id", "sbm_camera"))


NARROW = VirtualCamera.narrow
WIDE = VirtualCamera.wide

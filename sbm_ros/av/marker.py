"""ArUco marker detection for training capture (paper section VI: a loudspeaker carrying a
visual marker gives every training sound its pixel position).

Pure (no ROS); needs OpenCV with the ``aruco`` module (``opencv-python-headless`` >= 4.7, or older
``opencv-contrib-python``). Both OpenCV APIs are handled: ``cv2.aruco.ArucoDetector`` (4.7+)
and the older ``cv2.aruco.detectMarkers`` function.

The marker's position is the intersection of its two diagonals, computed from the four corners
after OpenCV's sub-pixel corner refinement. Under perspective this is the image of the marker's
physical centre (the mean of the corners is not). Pixel coordinates follow OpenCV: integer values
at pixel centres, u to the right, v down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np


class MarkerError(ValueError):
    """OpenCV/aruco missing or a bad dictionary name / id; the message says which."""


def _aruco():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise MarkerError('OpenCV is not installed: pip install opencv-python-headless '
                          f'({exc})') from None
    if not hasattr(cv2, 'aruco'):  # pragma: no cover
        raise MarkerError(f'OpenCV {cv2.__version__} has no aruco module: install '
                          'opencv-python-headless >= 4.7 (or opencv-contrib-python)')
    return cv2, cv2.aruco


def dictionary_names() -> List[str]:
    """Names of OpenCV's predefined ArUco dictionaries (e.g. ``DICT_4X4_50``)."""
    _, aruco = _aruco()
    return sorted(n for n in dir(aruco) if n.startswith('DICT_'))


def get_dictionary(name: str):
    """The predefined dictionary called ``name`` (``DICT_4X4_50`` or ``4X4_50``)."""
    _, aruco = _aruco()
    key = str(name).strip().upper()
    if not key.startswith('DICT_'):
        key = 'DICT_' + key
    if not hasattr(aruco, key):
        raise MarkerError(f'unknown ArUco dictionary {name!r}; one of {dictionary_names()}')
    return aruco.getPredefinedDictionary(getattr(aruco, key))


def dictionary_size(dictionary) -> int:
    return int(dictionary.bytesList.shape[0])


def render_marker(dictionary_name: str, marker_id: int, side_px: int,
                  border_bits: int = 1) -> np.ndarray:
    """The marker as a (side_px, side_px) uint8 image (black/white, no quiet zone)."""
    _, aruco = _aruco()
    d = get_dictionary(dictionary_name)
    if not 0 <= int(marker_id) < dictionary_size(d):
        raise MarkerError(f'marker id {marker_id} is not in {dictionary_name} '
                          f'(0..{dictionary_size(d) - 1})')
    if hasattr(aruco, 'generateImageMarker'):
        return aruco.generateImageMarker(d, int(marker_id), int(side_px), borderBits=border_bits)
    img = np.zeros((int(side_px), int(side_px)), np.uint8)  # pragma: no cover (OpenCV < 4.7)
    return aruco.drawMarker(d, int(marker_id), int(side_px), img, border_bits)


def quad_centre(corners) -> np.ndarray:
    """Intersection of the diagonals 0-2 and 1-3 of a quadrilateral (4, 2); falls back to the
    mean of the corners when the diagonals are (nearly) parallel."""
    c = np.asarray(corners, float).reshape(4, 2)
    p, r = c[0], c[2] - c[0]
    q, s = c[1], c[3] - c[1]
    den = r[0] * s[1] - r[1] * s[0]
    if abs(den) < 1e-9 * max(1.0, float(np.dot(r, r) + np.dot(s, s))):
        return c.mean(axis=0)
    t = ((q - p)[0] * s[1] - (q - p)[1] * s[0]) / den
    return p + t * r


@dataclass
class MarkerDetection:
    marker_id: int
    u: float
    v: float
    corners: np.ndarray      # (4, 2) px, OpenCV order (top-left, top-right, bottom-right, ...)
    side_px: float           # mean side length in pixels

    @property
    def centre(self):
        return (self.u, self.v)


class MarkerDetector:
    """Find one ArUco marker (by dictionary and id) in an image.

    >>> det = MarkerDetector('DICT_4X4_50', marker_id=7)
    >>> hit = det.detect(gray)          # MarkerDetection or None
    """

    def __init__(self, dictionary: str = 'DICT_4X4_50', marker_id: int = 0,
                 min_side_px: float = 8.0):
        cv2, aruco = _aruco()
        self._cv2, self._aruco = cv2, aruco
        self.dictionary_name = str(dictionary)
        self.dictionary = get_dictionary(dictionary)
        n = dictionary_size(self.dictionary)
        if not 0 <= int(marker_id) < n:
            raise MarkerError(f'marker_id {marker_id} is not in {dictionary} (0..{n - 1})')
        self.marker_id = int(marker_id)
        self.min_side_px = float(min_side_px)
        params = (aruco.DetectorParameters() if hasattr(aruco, 'DetectorParameters')
                  and not hasattr(aruco, 'DetectorParameters_create')
                  else aruco.DetectorParameters_create())
        params.cornerRefinementMethod = aruco.CORNER_REFINE_SUBPIX
        params.cornerRefinementWinSize = 5
        params.cornerRefinementMaxIterations = 50
        params.cornerRefinementMinAccuracy = 0.01
        self._params = params
        self._detector = (aruco.ArucoDetector(self.dictionary, params)
                          if hasattr(aruco, 'ArucoDetector') else None)

    def detect_all(self, image: np.ndarray) -> List[MarkerDetection]:
        """Every marker of the dictionary found in a grey (H, W) or BGR (H, W, 3) uint8 image."""
        img = np.asarray(image)
        if img.ndim == 3:
            img = self._cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]),
                                     self._cv2.COLOR_BGR2GRAY)
        if img.ndim != 2 or img.dtype != np.uint8:
            raise MarkerError(f'marker detection needs a uint8 grey or BGR image, got shape '
                              f'{img.shape} dtype {img.dtype}')
        img = np.ascontiguousarray(img)
        if self._detector is not None:
            corners, ids, _ = self._detector.detectMarkers(img)
        else:  # pragma: no cover (OpenCV < 4.7)
            corners, ids, _ = self._aruco.detectMarkers(img, self.dictionary,
                                                        parameters=self._params)
        out = []
        if ids is None:
            return out
        for c, i in zip(corners, np.asarray(ids).reshape(-1)):
            c = np.asarray(c, float).reshape(4, 2)
            side = float(np.mean(np.linalg.norm(c - np.roll(c, 1, axis=0), axis=1)))
            u, v = quad_centre(c)
            out.append(MarkerDetection(int(i), float(u), float(v), c, side))
        return out

    def detect(self, image: np.ndarray) -> Optional[MarkerDetection]:
        """The configured marker (the largest if it appears several times), or None."""
        hits = [d for d in self.detect_all(image)
                if d.marker_id == self.marker_id and d.side_px >= self.min_side_px]
        if not hits:
            return None
        return max(hits, key=lambda d: d.side_px)

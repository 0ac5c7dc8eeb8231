"""A classic face detector on the drawn camera picture (a check of the drawings, not an input).

:func:`haar_faces` runs OpenCV's frontal-face Haar cascade on a BGR image, e.g. one drawn by
:class:`~sbm_ros.sim.scene_view.SceneRenderer`, to see whether a detector of real faces takes
the cartoon faces for faces; the demo reports the count. The virtual head's published face
boxes come from the ground truth instead (see :mod:`.scene_view`). OpenCV is imported when
called.
"""

from __future__ import annotations

import os
from typing import List, Tuple

import numpy as np

__all__ = ["haar_faces"]


def haar_faces(bgr: np.ndarray) -> List[Tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h) found by OpenCV's frontal-face Haar cascade (empty if OpenCV
    ships no cascade files)."""
    import cv2
    path = os.path.join(getattr(getattr(cv2, "data", None), "haarcascades", ""),
                        "haarcascade_frontalface_default.xml")
    if not os.path.exists(path):
        return []
    det = cv2.CascadeClassifier(path)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    found = det.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4, minSize=(40, 40))
    return [tuple(int(v) for v in b) for b in (found if len(found) else [])]

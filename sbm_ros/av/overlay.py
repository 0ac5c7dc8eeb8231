"""The overlay picture of ``av_fusion``: what is drawn, made safe to draw (no ROS).

:class:`OverlayScene` is what the overlay shows at an image's time (faces with their speaking
scores, the sound estimates); :func:`render` draws it with :func:`sbm_ros.av.image_io.draw_overlay`
after :func:`drawable` has dropped what cannot be drawn: a face or sound with a non-finite
position (or box size), or a position absurdly far outside the image (more than ``far`` image
sizes from it: a producer in another unit or a corrupted message). Such items are reported, so
the node can warn; the picture is still published with everything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Sequence, Set, Tuple

import numpy as np

from . import image_io
from .fusion import Face, Sound

#: positions further than this many image sizes outside the image are not drawn
FAR = 4.0


@dataclass
class OverlayScene:
    faces: List[Face] = field(default_factory=list)
    sounds: List[Sound] = field(default_factory=list)
    scores: Dict[str, float] = field(default_factory=dict)
    speaking: Set[str] = field(default_factory=set)


def _far(u: float, v: float, width: int, height: int, far: float) -> bool:
    m = far * max(width, height)
    return not (-m <= u <= width + m and -m <= v <= height + m)


def drawable(scene: OverlayScene, width: int, height: int,
             far: float = FAR) -> Tuple[OverlayScene, List[str]]:
    """The scene without the items that cannot be drawn, and a description of each dropped."""
    faces, sounds, bad = [], [], []
    for f in scene.faces:
        vals = (f.u, f.v, f.w, f.h)
        if not all(np.isfinite(vals)):
            bad.append(f'face {f.id!r}: non-finite box {vals}')
        elif _far(f.u, f.v, width, height, far):
            bad.append(f'face {f.id!r}: centre ({f.u:.3g}, {f.v:.3g}) far outside the '
                       f'{width}x{height} image')
        else:
            faces.append(f)
    for s in scene.sounds:
        if not (np.isfinite(s.u) and np.isfinite(s.v)):
            bad.append(f'sound {s.id!r}: non-finite position ({s.u}, {s.v})')
        elif _far(s.u, s.v, width, height, far):
            bad.append(f'sound {s.id!r}: position ({s.u:.3g}, {s.v:.3g}) far outside the '
                       f'{width}x{height} image')
        else:
            sounds.append(s)
    return replace(scene, faces=faces, sounds=sounds), bad


def render(bgr: np.ndarray, scene: OverlayScene, mouth_offset: float = 0.25,
           n_sigma: float = 2.0) -> Tuple[np.ndarray, List[str]]:
    """The overlay drawn on a copy of a BGR uint8 image, and what could not be drawn."""
    height, width = np.shape(bgr)[:2]
    ok, bad = drawable(scene, width, height)
    mouths: Sequence = [tuple(f.mouth(mouth_offset)) for f in ok.faces]
    out = image_io.draw_overlay(bgr, ok.faces, ok.sounds, ok.scores, ok.speaking,
                                n_sigma=n_sigma, mouth=mouths)
    return out, bad

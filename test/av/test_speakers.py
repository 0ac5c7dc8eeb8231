"""Faces x sounds over time (SpeakerFusion): ids, the face cap, NaN boxes, frame checks; the
near-linear face-id assignment gives the same ids as comparing with every remembered face."""

import math

import numpy as np

from sbm_ros.av.fusion import Face, FaceIdAssigner, MatchConfig, iou
from sbm_ros.av.speakers import SpeakerFusion, sound_from_box, strongest


def face(fid, u, v, size=80.0, score=1.0):
    return Face(fid, u, v, size, size * 1.2, score)


def test_speaking_face_found_and_scene_for_the_overlay():
    fu = SpeakerFusion()
    faces = [face('', 150, 200), face('', 400, 210)]
    for k in range(10):
        t = 0.1 * k
        up = fu.add_faces(t, 'cam', faces, (640, 480), 'cam')
        s = sound_from_box('s0', *faces[1].mouth(0.25), 60, 60, 0.9,
                           cov=np.eye(2) * 225)
        fu.add_sounds(t, 'cam', [s])
    st = fu.add_faces(1.0, 'cam', faces, (640, 480), 'cam').faces
    assert [f.speaking for f in st] == [False, True] and st[1].face.id.startswith('face_')
    assert [f.index for f in st] == [0, 1] and not up.notices
    scene = fu.scene_at(1.0)
    assert scene.speaking == {st[1].face.id} and len(scene.sounds) == 1


def test_faces_with_nan_boxes_are_ignored_with_a_notice():
    fu = SpeakerFusion()
    faces = [face('', math.nan, 200), face('', 400, 210), Face('', 300, 200, math.nan, 90),
             Face('', 300, 200, 90, math.inf)]
    up = fu.add_faces(0.0, 'cam', faces, (640, 480))
    assert [f.index for f in up.faces] == [1]
    assert any(n.key == 'faces_bad' and 'non-finite' in n.text for n in up.notices)
    # without a known image size too; the overlay scene holds only the good face
    up = fu.add_faces(0.1, 'cam', faces, None)
    assert [f.index for f in up.faces] == [1]
    assert [f.id for f in fu.scene_at(0.1).faces] == [up.faces[0].face.id]
    up = fu.add_sounds(0.1, 'cam', [sound_from_box('s', 400, 240, 40, 40)])
    assert len(up.matches) == 1
    assert sound_from_box('s', math.nan, 1.0, 10, 10) is None


def test_max_faces_keeps_the_strongest_and_says_so():
    fu = SpeakerFusion(max_faces=3)
    faces = [face(f'f{k}', 40 + 50 * k, 100, 30, score=s)
             for k, s in enumerate([0.5, 0.9, 0.1, 0.8, 0.95, 0.2])]
    up = fu.add_faces(0.0, 'cam', faces, (640, 480))
    assert [f.index for f in up.faces] == [1, 3, 4]
    assert [n.key for n in up.notices] == ['max_faces']
    assert 'only the 3 with the highest scores' in up.notices[0].text
    assert strongest(faces, 10) == list(range(6))
    assert strongest([face('a', 1, 1, score=math.nan), face('b', 2, 2)], 1) == [1]


def test_frame_checks_and_time_jumps():
    fu = SpeakerFusion()
    up = fu.add_faces(10.0, 'other', [face('a', 100, 100)], (640, 480), camera_frame='cam')
    assert any(n.key == 'faces_frame' for n in up.notices)
    up = fu.add_sounds(10.0, 'cam', [sound_from_box('s', 100, 125, 40, 40)])
    assert [n.key for n in up.notices] == ['sound_frame'] and not up.matches
    up = fu.add_sounds(20.0, 'other', [])
    assert [n.key for n in up.notices] == ['faces_late']
    up = fu.add_faces(1.0, 'other', [face('a', 100, 100)], (640, 480))
    assert any(n.key == 'jump:faces' for n in up.notices)


def _brute_force(assigner, faces):
    """The assignment rule compared with every remembered face (the reference)."""
    used, out = set(f.id for f in faces if f.id), []
    for f in faces:
        if f.id:
            out.append(f.id)
            continue
        best, best_iou = None, assigner.min_iou
        for kid, (p, _) in assigner._known.items():
            if kid not in used and iou(f, p) >= best_iou:
                best, best_iou = kid, iou(f, p)
        out.append(best)
        used.add(best)
    return out


def test_grid_assignment_equals_the_full_comparison():
    rng = np.random.default_rng(1)
    a = FaceIdAssigner()
    centres = rng.uniform(0, 600, (300, 2))
    sizes = np.exp(rng.uniform(np.log(5), np.log(300), 300))    # many size levels
    for frame in range(4):
        jit = rng.normal(0, 0.1 * sizes[:, None], (300, 2))
        faces = [Face('' if k % 7 else f'named_{k}', *(c + j), s, s * rng.uniform(0.3, 3))
                 for k, (c, j, s) in enumerate(zip(centres, jit, sizes))]
        ref = _brute_force(a, faces)
        before = set(a._known)
        got = [f.id for f in a.assign(faces)]
        for r, g in zip(ref, got):                  # None: the rule gives a new id
            assert g == r if r is not None else g not in before, (r, g)
        if frame:
            assert sum(r is not None for r in ref) > 200   # most faces kept their ids


def test_assignment_with_min_iou_zero_compares_every_face():
    a = FaceIdAssigner(min_iou=0.0)
    first = a.assign([face('', 100, 100)])[0].id
    assert a.assign([face('', 500, 400)])[0].id == first   # any remembered face qualifies


def test_match_config_used():
    fu = SpeakerFusion(cfg=MatchConfig(gate=0.5))
    fu.add_faces(0.0, 'cam', [face('', 100, 100)], (640, 480))
    assert fu.add_sounds(0.0, 'cam', [sound_from_box('s', 100, 160, 8, 8)]).matches == []

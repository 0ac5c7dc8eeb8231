"""The virtual world: a binaural head in a room, the people around it and their camera picture.

The virtual head (:mod:`.hrtf`: MIT KEMAR HRIRs, interpolated; :mod:`.room`; :mod:`.render`),
measured heads and rooms read from SOFA files (:mod:`.measured`: Surrey BRIRs, SONICOM HRIRs),
sound sources (:mod:`.sources`: white noise, espeak-ng speech; :mod:`.ambient`: the computer fan),
the virtual camera (:mod:`.camera`), training/test dataset writers (:mod:`.datasets`), the moving
loudspeaker of a calibration sweep (:mod:`.sweep`) and the
demo's scripted scene: the scenario file (:mod:`.scenario`), its timeline and binaural track
(:mod:`.timeline`), the camera picture and face boxes (:mod:`.scene_view`), the Haar-cascade
check (:mod:`.faces`). Pure numpy/scipy; ``slab`` is imported lazily (only to build the KEMAR
cache), ``h5py`` too (only to read SOFA files), speech needs the ``espeak-ng`` command and
drawing uses OpenCV.

Dependency rule (checked by ``test/test_layout.py``): modules here import ``sbm_ros.core`` and
third-party libraries only, never ``av``, ``nodes``, ``apps`` or ROS.

    from sbm_ros.sim import VirtualHead, Room, VirtualCamera, white_noise
    head = VirtualHead(room=Room(t60=0.3, distance=2.0), snr_db=30.0)
    x = head.render(white_noise(1.0, 16000, seed=0), az_deg=10.0, el_deg=-5.0)   # (16000, 2)
"""

from .ambient import FanNoise
from .camera import VirtualCamera
from .datasets import (grid_pixels, grid_positions, make_speech_test_set, make_training_set,
                       read_targets, write_dataset)
from .hrtf import HRIRSet, cache_dir, fractional_shift, load_kemar
from .measured import MeasuredHead
from .render import VirtualHead, add_self_noise
from .room import Room, estimate_t60, schroeder_decay
from .sources import (COUNT_WORDS, VOICES, count_utterances, counting_speech, espeak_available,
                      speech, white_noise)

__all__ = [
    "FanNoise", "VirtualCamera", "grid_pixels", "grid_positions", "make_speech_test_set",
    "make_training_set", "read_targets", "write_dataset", "HRIRSet", "cache_dir",
    "fractional_shift", "load_kemar", "MeasuredHead", "VirtualHead", "add_self_noise", "Room",
    "estimate_t60",
    "schroeder_decay", "COUNT_WORDS", "VOICES", "count_utterances", "counting_speech",
    "espeak_available", "speech", "white_noise",
]

"""Virtual binaural head: MIT KEMAR HRIRs (interpolated), room model, speech, camera, datasets.

Pure numpy/scipy; ``slab`` is imported lazily (only to build the KEMAR cache) and speech needs
the ``espeak-ng`` command. No ROS imports.

    from sbm_ros.virtual_head import VirtualHead, Room, VirtualCamera, white_noise
    head = VirtualHead(room=Room(t60=0.3, distance=2.0), snr_db=30.0)
    x = head.render(white_noise(1.0, 16000, seed=0), az_deg=10.0, el_deg=-5.0)   # (16000, 2)
"""

from .ambient import FanNoise
from .camera import VirtualCamera
from .datasets import (grid_pixels, grid_positions, make_speech_test_set, make_training_set,
                       read_targets, write_dataset)
from .hrtf import HRIRSet, cache_dir, fractional_shift, load_kemar
from .render import VirtualHead, add_self_noise
from .room import Room, estimate_t60, schroeder_decay
from .sources import (COUNT_WORDS, VOICES, count_utterances, counting_speech, espeak_available,
                      speech, white_noise)

__all__ = [
    "FanNoise", "VirtualCamera", "grid_pixels", "grid_positions", "make_speech_test_set",
    "make_training_set", "read_targets", "write_dataset", "HRIRSet", "cache_dir",
    "fractional_shift", "load_kemar", "VirtualHead", "add_self_noise", "Room", "estimate_t60",
    "schroeder_decay", "COUNT_WORDS", "VOICES", "count_utterances", "counting_speech",
    "espeak_available", "speech", "white_noise",
]

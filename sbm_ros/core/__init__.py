"""The method: Supervised Binaural Mapping without ROS.

Binaural features and the activity mask (:mod:`.features`), GLLiM training (:mod:`.gllim`,
:mod:`.params`), Theorem 1's closed-form posterior over a sparse spectrogram window
(:mod:`.posterior`), the versioned model file (:mod:`.model`), the streaming localiser
(:mod:`.localizer`), dataset folders and training sets (:mod:`.dataset`, :mod:`.training`,
:mod:`.calibration`, :mod:`.densify`), the GCC-PHAT baseline (:mod:`.phat`), REP 103 directions
and the pinhole camera (:mod:`.geometry`), audio and file I/O (:mod:`.audio_io`, :mod:`.fileio`).

Dependency rule (checked by ``test/test_layout.py``): modules here import numpy, scipy and the
standard library, other ``sbm_ros.core`` modules and ``sbm_ros.__version__`` only — never
``av``, ``sim``, ``nodes``, ``apps`` or ROS.
"""

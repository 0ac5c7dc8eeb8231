"""The image side: what sound positions mean in a camera picture, and capturing training data.

Face matching, face ids and speaking scores (:mod:`.fusion`), the faces x sounds state over time
(:mod:`.speakers`), image message conversion and the overlay drawing without cv_bridge
(:mod:`.image_io`), what the overlay shows and its safety checks (:mod:`.overlay`), the ArUco
calibration marker (:mod:`.marker`), training capture -- audio clock, recording, checks, the
appended sample (:mod:`.capture`) -- and the training subprocess (:mod:`.training_run`). These
are the objects behind the ``av_fusion`` node. OpenCV is imported lazily where drawing or
detection needs it.

Dependency rule (checked by ``test/test_layout.py``): modules here may import ``sbm_ros.core``
and third-party libraries (numpy, scipy, OpenCV), never ``sim``, ``nodes``, ``apps`` or ROS.
"""

"""The image side: what sound positions mean in a camera picture.

Face matching, face ids and speaking scores (:mod:`.fusion`), image message conversion and the
overlay drawing without cv_bridge (:mod:`.image_io`), the ArUco calibration marker
(:mod:`.marker`). OpenCV is imported lazily where drawing or detection needs it.

Dependency rule (checked by ``test/test_layout.py``): modules here may import ``sbm_ros.core``
and third-party libraries (numpy, scipy, OpenCV), never ``sim``, ``nodes``, ``apps`` or ROS.
"""

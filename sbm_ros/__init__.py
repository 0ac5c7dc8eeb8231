"""sbm_ros: Supervised Binaural Mapping for ROS 2.

Audio-visual localisation of one or two simultaneous talkers (azimuth and elevation) from the two
microphones of a humanoid head, after Deleforge, Horaud, Schechner and Girin, "Co-localization of
audio sources in images using binaural features and locally-linear regression", IEEE/ACM TASLP
23(4), 2015.

The package is in rooms, each importing only the ones below it (``test/test_layout.py`` checks):

* ``sbm_ros.core``  – the method (features, GLLiM, posterior, model file, localiser, PHAT);
* ``sbm_ros.av``    – the image side (face matching, speaking scores, overlay, ArUco marker);
* ``sbm_ros.sim``   – the virtual world (virtual head, room, camera, scenario);
* ``sbm_ros.nodes`` – ROS 2 nodes, thin shells over the rooms above;
* ``sbm_ros.apps``  – the programs (CLI, benchmark, demo, bag tool).

Only ``nodes`` and ``apps`` import ROS.
"""

__version__ = "0.1.0"

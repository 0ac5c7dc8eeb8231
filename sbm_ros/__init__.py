"""sbm_ros: Supervised Binaural Mapping for ROS 2.

Audio-visual localisation of one or two simultaneous talkers (azimuth and elevation) from the two
microphones of a humanoid head, after Deleforge, Horaud, Schechner and Girin, "Co-localization of
audio sources in images using binaural features and locally-linear regression", IEEE/ACM TASLP
23(4), 2015.

The numerical core (``features``, ``gllim``, ``posterior``, ``model``, ``dataset``, ``localizer``,
``phat``, ``geometry``, ``virtual_head``) imports no ROS; the ROS 2 nodes live in
``sbm_ros.nodes``.
"""

__version__ = "0.1.0"

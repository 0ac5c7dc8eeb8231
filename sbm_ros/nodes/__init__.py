"""ROS 2 only: one node per file, each a thin shell over ``core``/``av``/``sim`` objects.

``binaural_capture`` (microphones or a WAV file -> audio chunks), ``sbm_localizer`` (audio ->
directions, pixels, markers), ``av_fusion`` (sounds x faces -> speaking faces, overlay, training
capture), ``virtual_head`` (the simulated robot); :mod:`.common` holds parameter declaration, QoS
and the Humble-safe ``run()``; :mod:`.ros_convert` converts core objects to and from messages.
A node converts messages, holds state and calls the core; numerics stay out of node classes.

Dependency rule (checked by ``test/test_layout.py``): nodes may import ``core``, ``av``, ``sim``
and ROS, never ``apps``; only ``nodes`` and ``apps`` import rclpy.
"""

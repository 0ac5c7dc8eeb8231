"""Test helpers shipped with sbm_ros (pure Python, no ROS imports)."""

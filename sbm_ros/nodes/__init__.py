"""ROS 2 nodes of sbm_ros (thin: message conversion and state; numerics live in the core)."""

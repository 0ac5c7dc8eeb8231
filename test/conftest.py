"""Shared pytest fixtures and path setup (works with or without an installed package)."""

import os
import sys

TEST_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TEST_DIR)
# the package (also without an install) and the shared helpers (synth, rostest_utils) for the
# tests in the sub-folders, which mirror the package's rooms (core/, av/, sim/, nodes/, apps/)
for _path in (ROOT, TEST_DIR):
    if _path not in sys.path:
        sys.path.insert(0, _path)


def pytest_configure(config):
    # Markers of the ROS 2 linter tests (registered by ament_lint's plugins when installed).
    for name in ('linter', 'flake8', 'pep257'):
        config.addinivalue_line('markers', f'{name}: code style check')

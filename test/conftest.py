"""Shared pytest fixtures and path setup (works with or without an installed package)."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def pytest_configure(config):
    # Markers of the ROS 2 linter tests (registered by ament_lint's plugins when installed).
    for name in ('linter', 'flake8', 'pep257'):
        config.addinivalue_line('markers', f'{name}: code style check')

"""Code style: flake8 with the project's settings (setup.cfg: 99 columns).

Plain flake8, also under a full ROS 2 install: ament_flake8 adds plugins (quote style, import
order, docstring rules) whose conventions this code base does not follow, so running it would
fail ``colcon test`` for reasons unrelated to correctness.
"""

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATHS = ['sbm_ros', 'test', 'launch', 'setup.py']


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    if importlib.util.find_spec('flake8') is None:
        pytest.skip('flake8 is not installed (pip install flake8 / apt install python3-flake8)')
    proc = subprocess.run([sys.executable, '-m', 'flake8', '--max-line-length', '99', *PATHS],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, \
        'flake8 found code style errors / warnings:\n' + proc.stdout + proc.stderr

"""The README's parameter tables are generated from the nodes' declared parameters."""

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_parameter_tables_match_the_code():
    pytest.importorskip('rclpy', reason='the node modules need rclpy (tools/dev test has it)')
    from sbm_ros.docs_api import NODES, render
    with open(os.path.join(ROOT, 'README.md')) as fh:
        text = fh.read()
    for node in NODES:
        assert f'<!-- BEGIN PARAMS {node} -->' in text, f'README lacks the {node} table'
    assert render(text) == text, ('README parameter tables are out of date: run '
                                  'python -m sbm_ros.docs_api --update README.md')


def test_readme_commands_exist():
    with open(os.path.join(ROOT, 'README.md')) as fh:
        text = fh.read()
    assert 'tools/dev demo' in text and 'tools/dev test' in text
    with open(os.path.join(ROOT, '.ci', 'run')) as fh:
        assert 'tools/dev test' in fh.read()

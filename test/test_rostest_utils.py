"""The DDS domain helper of the node tests: one domain per test module, and concurrent test
processes on one machine (two suites, two checkouts) never share one."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from rostest_utils import _dds_test_modules, domain_id_for  # noqa: E402


def test_modules_in_sub_folders_get_consecutive_distinct_domains():
    mods = _dds_test_modules()
    # the node tests live in test/nodes and test/apps: they must be found there
    assert {'test_node_localizer', 'test_node_fusion', 'test_demo_pipeline'} <= set(mods)
    ids = [domain_id_for(m, {'ROS_DOMAIN_ID': '7'}) for m in mods]
    assert len(set(ids)) == len(ids)
    assert all(20 <= d <= 101 for d in ids)
    # the same module asks again: the same id
    assert [domain_id_for(m, {'ROS_DOMAIN_ID': '7'}) for m in mods] == ids


def test_a_domain_held_by_another_process_is_not_reused():
    name = 'test_node_localizer'
    code = ('import sys; sys.path.insert(0, %r); from rostest_utils import domain_id_for; '
            'print(domain_id_for(%r, {"ROS_DOMAIN_ID": "33"}), flush=True); sys.stdin.read()'
            % (HERE, name))
    other = subprocess.Popen([sys.executable, '-c', code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        theirs = int(other.stdout.readline())
        mine = domain_id_for(name, {'ROS_DOMAIN_ID': '33'})
        assert mine != theirs
        assert 20 <= mine <= 101
    finally:
        other.stdin.close()
        other.wait(10)

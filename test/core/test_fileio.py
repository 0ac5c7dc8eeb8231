"""atomic_write: all or nothing, no temporary files left behind."""

import os
import stat

import pytest

from sbm_ros.core.fileio import atomic_write


def test_success_replaces_the_file(tmp_path):
    p = tmp_path / 'f.txt'
    p.write_text('old')
    with atomic_write(p, 'w', perms=0o644) as fh:
        fh.write('new')
    assert p.read_text() == 'new'
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o644
    assert os.listdir(tmp_path) == ['f.txt']


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / 'f.bin'
    p.write_bytes(b'old')
    with pytest.raises(RuntimeError, match='mid-write'):
        with atomic_write(p) as fh:
            fh.write(b'partial')
            raise RuntimeError('mid-write')
    assert p.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['f.bin']


def test_text_mode_newline(tmp_path):
    p = tmp_path / 'rows.csv'
    with atomic_write(p, 'w', newline='') as fh:
        fh.write('a\r\nb\n')
    assert p.read_bytes() == b'a\r\nb\n'


def test_default_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_write(tmp_path / "m.npz") as fh:
            fh.write(b"x")
        assert stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode) == 0o640
        os.umask(0o022)
        with atomic_write(tmp_path / "m.npz") as fh:      # replacing keeps following it
            fh.write(b"y")
        assert stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode) == 0o644
        with atomic_write(tmp_path / "p.bin", perms=0o600) as fh:
            fh.write(b"z")
        assert stat.S_IMODE(os.stat(tmp_path / "p.bin").st_mode) == 0o600
    finally:
        os.umask(old)

"""rtm_plugin.cache.atomic_write: all or nothing, and the permissions a plain open() would give."""

import os
import stat

import pytest

from rtm_plugin.cache import atomic_write, atomic_write_bytes

def test_new_file_gets_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_bytes(tmp_path / 'sub' / 'a.bin', b'abc')
    finally:
        os.umask(old)
    assert path.read_bytes() == b'abc'
    assert stat.S_IMODE(path.stat().st_mode) == 0o644       # not mkstemp's 0o600: others can read a snapshot

def test_explicit_mode(tmp_path):
    path = atomic_write_bytes(tmp_path / 'x.sh', b'#!/bin/sh\n', mode=0o755)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755

def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / 'keep.txt'
    path.write_bytes(b'old')

    def half_then_fail(f):
        f.write(b'new, but')
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['keep.txt']

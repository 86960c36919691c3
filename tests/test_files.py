"""rtm_plugin.files.atomic_write: all or nothing, bytes, text or a writer, and the permissions a plain open()
would give."""

import os
import stat

import pytest

from rtm_plugin.files import TEMP_RE, atomic_write

def test_new_file_gets_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / 'sub' / 'a.bin', b'abc')
    finally:
        os.umask(old)
    assert path.read_bytes() == b'abc'
    assert stat.S_IMODE(path.stat().st_mode) == 0o644       # not mkstemp's 0o600: others can read a snapshot

def test_explicit_mode(tmp_path):
    path = atomic_write(tmp_path / 'x.sh', b'#!/bin/sh\n', mode=0o755)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755

def test_bytes_text_and_a_writer_are_one_call(tmp_path):
    assert atomic_write(tmp_path / 'b', b'\xffbytes').read_bytes() == b'\xffbytes'
    assert atomic_write(tmp_path / 't', 'text: \u00e9\n').read_bytes() == 'text: \u00e9\n'.encode('utf-8')
    assert atomic_write(str(tmp_path / 'w'), lambda f: f.write(b'from a writer')).read_bytes() == b'from a writer'
    assert sorted(os.listdir(tmp_path)) == ['b', 't', 'w']

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

def test_temporaries_are_named_as_resume_expects(tmp_path, monkeypatch):
    """A killed write leaves `.<name>.<random>.tmp`: TEMP_RE (what resume deletes) must match it."""
    seen = []

    def look(f):
        seen.extend(n for n in os.listdir(tmp_path) if n != 'snap.pkl')
        f.write(b'x')
    atomic_write(tmp_path / 'snap.pkl', look)
    assert len(seen) == 1 and TEMP_RE.match(seen[0]), seen

"""Fault injection on rtm-imle runs: kill -9 during a snapshot write, SIGTERM then resume in a new process, torn
logs and broken snapshots, a full disk. After each, the run resumes, and where it can, bit for bit."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from imle_tiny import (TINY, TINY_CLI, assert_same_state, invoke, one_thread, only_run_dir,  # noqa: F401 (a fixture)
                       snapshot_state, state_of, tiny_images)

pytestmark = pytest.mark.usefixtures('one_thread')
from rtm_plugin.imle.train import RunOptions, Trainer
from rtm_plugin.snapshots import latest_snapshot, load_snapshot

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS, os.environ.get('PYTHONPATH', '')]))

def options(outdir, **kw):
    return RunOptions(outdir=str(outdir), perceptual='fallback', progress=False, grid_kimg=1000, **kw)

KILL_DURING_SECOND_SNAPSHOT = r'''
import os, signal, sys
from dataclasses import replace
import torch
import rtm_plugin.files as files
import rtm_plugin.imle.checkpoint as checkpoint
from imle_tiny import TINY, tiny_images
from rtm_plugin.imle.train import RunOptions, Trainer
torch.set_num_threads(1)
real, snapshots = files.atomic_write, []

def dying(path, data, mode=None):
    if 'network-snapshot-' in str(path):
        snapshots.append(path)
    if len(snapshots) < 2 or 'network-snapshot-' not in str(path):
        return real(path, data, mode)
    def half_then_kill(f):
        data(f)
        f.truncate(f.tell() // 2)
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, half_then_kill, mode)
files.atomic_write = checkpoint.atomic_write = dying
Trainer(replace(TINY, kimg=0.16), tiny_images(), RunOptions(outdir=sys.argv[1], snap_kimg=0.04, grid_kimg=1000,
        perceptual='fallback', progress=False), log=lambda m: None).run()
'''

def test_kill_9_during_a_snapshot_write_leaves_the_previous_snapshot(tmp_path):
    """Snapshots every 5 steps; the second write is cut in half and the process SIGKILLed. Resume removes the
    temporary, continues from step 5 and ends where an uninterrupted run ends."""
    cfg = replace(TINY, kimg=0.16)
    proc = subprocess.run([sys.executable, '-c', KILL_DURING_SECOND_SNAPSHOT, str(tmp_path / 'b')], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    temps = [n for n in os.listdir(tmp_path / 'b') if n.endswith('.tmp')]
    assert len(temps) == 1 and temps[0].startswith('.network-snapshot-000000.pkl.')
    assert load_snapshot(str(tmp_path / 'b' / 'network-snapshot-000000.pkl'))['rs_imle']['step'] == 5
    logged = []
    c = Trainer(cfg, tiny_images(), options(tmp_path / 'b', snap_kimg=0.04), resume=str(tmp_path / 'b'),
                log=logged.append)
    assert c.step == 5
    assert c.run()[0] == 'done'
    assert not [n for n in os.listdir(tmp_path / 'b') if n.endswith('.tmp')]
    assert f'resume: removed {temps[0]}, left by an interrupted write' in logged
    a = Trainer(cfg, tiny_images(), options(tmp_path / 'a', snap_kimg=0.04), log=lambda m: None)
    a.run()
    assert_same_state(state_of(a), state_of(c))

def test_sigterm_then_the_printed_resume_command_in_a_new_process_is_bit_exact(tmp_path):
    args = [*TINY_CLI, '--kimg', '0.4', '--perceptual', 'fallback']
    command = [sys.executable, '-m', 'rtm_plugin.imle']
    proc = subprocess.Popen([*command, '--outdir', str(tmp_path / 'b'), *args], env=ENV, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (tmp_path / 'b').exists() or not any(os.path.exists(os.path.join(tmp_path / 'b', d, 'metrics.jsonl'))
                                                   for d in os.listdir(tmp_path / 'b')):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)                # training has started: its handler is installed
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    resume = re.search(r'continue with (--resume \S+)', err).group(1).split()
    done = subprocess.run([*command, *resume], env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert invoke(['--outdir', tmp_path / 'a', *args]).exit_code == 0
    assert_same_state(snapshot_state(latest_snapshot(only_run_dir(tmp_path / 'a'))),
                      snapshot_state(latest_snapshot(only_run_dir(tmp_path / 'b'))))

def test_torn_logs_broken_snapshots_and_stale_temporaries_do_not_block_resume(tmp_path):
    assert invoke(['--outdir', tmp_path, *TINY_CLI, '--perceptual', 'fallback']).exit_code == 0
    run_dir = only_run_dir(tmp_path)
    good = open(os.path.join(run_dir, 'network-snapshot-000000.pkl'), 'rb').read()
    for name in ('metrics.jsonl', 'stats.jsonl'):
        with open(os.path.join(run_dir, name), 'a') as f:
            f.write('{"kind": "train", "st')            # a kill during an append (before writes were atomic)
    open(os.path.join(run_dir, 'network-snapshot-000009.pkl'), 'wb').close()
    open(os.path.join(run_dir, 'network-snapshot-000008.pkl'), 'wb').write(b'garbage' * 100)
    open(os.path.join(run_dir, 'network-snapshot-000007.pkl'), 'wb').write(good[:len(good) // 2])
    open(os.path.join(run_dir, '.network-snapshot-000006.pkl.k3j_x9q2.tmp'), 'wb').write(good[:100])
    result = invoke(['--resume', run_dir, '--kimg', '0.16'])
    assert result.exit_code == 0, result.output
    for name, why in (('000009', 'empty file (0 bytes)'), ('000008', 'not a network pickle, or truncated'),
                      ('000007', 'not a network pickle, or truncated')):
        assert f'resume: skipped network-snapshot-{name}.pkl ({why}' in result.output
    assert 'removed .network-snapshot-000006.pkl.k3j_x9q2.tmp' in result.output
    assert 'resuming network-snapshot-000000.pkl, step 10' in result.output
    assert not os.path.exists(os.path.join(run_dir, '.network-snapshot-000006.pkl.k3j_x9q2.tmp'))
    for name in ('metrics.jsonl', 'stats.jsonl'):
        records = [json.loads(line) for line in open(os.path.join(run_dir, name))]
        assert records
    assert load_snapshot(os.path.join(run_dir, 'network-snapshot-000000.pkl'))['rs_imle']['step'] == 20

def test_a_log_line_is_one_write(tmp_path, monkeypatch):
    from rtm_plugin.imle.runlog import append_json
    writes = []
    real = os.write
    monkeypatch.setattr(os, 'write', lambda fd, data: writes.append(data) or real(fd, data))
    append_json(str(tmp_path / 'log.jsonl'), dict(loss=float('nan'), step=3, note='x' * 10000))
    assert len(writes) == 1 and writes[0].endswith(b'\n')
    assert json.loads(open(tmp_path / 'log.jsonl').read()) == dict(loss=None, step=3, note='x' * 10000)

def test_a_full_disk_stops_the_run_with_one_line_and_it_resumes(tmp_path, monkeypatch):
    """os.write fails (ENOSPC) once a snapshot exists: one line naming the file, the last snapshot, and the
    command to continue; after space is freed, that command finishes the run."""
    real = os.write

    def full_disk(fd, data):
        if any(n.endswith('.pkl') for d in os.listdir(tmp_path) for n in os.listdir(os.path.join(tmp_path, d))):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)
    with monkeypatch.context() as m:
        m.setattr(os, 'write', full_disk)
        result = invoke(['--outdir', tmp_path, *TINY_CLI, '--perceptual', 'fallback', '--snap-kimg', '0.04'])
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert re.match(r'Error: cannot write \S+\.jsonl: No space left on device; the last good snapshot is \S+'
                    r'network-snapshot-000000\.pkl; free space, then continue with --resume \S+$', last), last
    result = invoke(last.split('continue with ')[1].split())
    assert result.exit_code == 0, result.output
    assert load_snapshot(latest_snapshot(only_run_dir(tmp_path)))['rs_imle']['step'] == 10

@pytest.mark.skipif(not os.path.isdir('/proc/self/fd'), reason='needs /proc to tell which file is synced')
def test_a_full_disk_during_a_snapshot_write_keeps_the_previous_snapshot(tmp_path, monkeypatch):
    real = os.fsync

    def full_on_second_snapshot(fd):
        target = os.readlink(f'/proc/self/fd/{fd}')
        if '.network-snapshot-' in target and any(n.endswith('.pkl') for n in os.listdir(os.path.dirname(target))):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)
    monkeypatch.setattr(os, 'fsync', full_on_second_snapshot)
    result = invoke(['--outdir', tmp_path, *TINY_CLI, '--perceptual', 'fallback', '--snap-kimg', '0.04'])
    assert result.exit_code == 1 and 'No space left on device' in result.output
    run_dir = only_run_dir(tmp_path)
    assert not [n for n in os.listdir(run_dir) if n.endswith('.tmp')]
    assert load_snapshot(os.path.join(run_dir, 'network-snapshot-000000.pkl'))['rs_imle']['step'] == 5

"""`python -m rtm_plugin.gpu_check` on a machine without a GPU (this one and CI; CUDA_VISIBLE_DEVICES is
emptied so that a GPU machine takes the same path): it says so, runs the CPU parts it is asked for, writes both
reports and exits 0. --quick keeps the CPU build only; the full CPU run (tests and a CPU bench, about a minute)
is what a GPU-less `--out DIR` does."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def gpu_check(tmp_path, *args):
    env = dict(os.environ, PYTHONPATH=REPO, CUDA_VISIBLE_DEVICES='')
    return subprocess.run([sys.executable, '-m', 'rtm_plugin.gpu_check', '--out', str(tmp_path / 'report'), *args],
                          env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)

def test_without_a_gpu_it_says_so_runs_the_cpu_parts_and_exits_0(tmp_path):
    result = gpu_check(tmp_path, '--quick')
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'This machine has no CUDA GPU' in result.stdout
    report = json.loads((tmp_path / 'report' / 'gpu_check.json').read_text())
    status = {s['step']: (s['status'], s['summary']) for s in report['steps']}
    assert report['gpu'] is False and report['verdict'].startswith('No CUDA GPU on this machine')
    assert status['environment'][0] == 'ok' and status['build'] == ('ok', status['build'][1])
    assert status['build'][1].startswith('cpu plugin built')
    for step in ('sanitizer', 'latency', 'imle', 'sg2ada'):
        assert status[step] == ('skipped', 'needs a GPU'), status
    assert status['tests'] == ('skipped', '--quick') and status['bench'] == ('skipped', '--quick')
    md = (tmp_path / 'report' / 'gpu_check.md').read_text()
    assert md.startswith('# GPU check') and '| sanitizer | skipped | 0 | needs a GPU |' in md

def test_unknown_step_is_a_usage_error(tmp_path):
    result = gpu_check(tmp_path, '--skip', 'bench,warp')
    assert result.returncode == 2 and "unknown step(s) in --skip: warp" in result.stderr

"""`python -m rtm_plugin.gpu_check` on a machine without a GPU (this one and CI; CUDA_VISIBLE_DEVICES is
emptied so that a GPU machine takes the same path): it says so, runs the CPU parts it is asked for, writes both
reports and exits 0. --quick keeps the CPU build only; the full CPU run (tests and a CPU bench, about a minute)
is what a GPU-less `--out DIR` does."""

import json
import os
import subprocess
import sys

import torch

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

def test_fp32_lanes_per_sm_by_architecture():
    # The % of FP32 peak in the bench: a Turing T4 (sm_75) has 64 FP32 lanes per SM, like all of Volta; 128 on
    # consumer Pascal, GA10x, Ada, Hopper and Blackwell. Twice the lanes would halve the reported % of peak.
    from rtm_plugin.gpu_check import fp32_lanes_per_sm
    lanes = {(6, 0): 64, (6, 1): 128, (7, 0): 64, (7, 2): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 9): 128,
             (9, 0): 128, (10, 0): 128}
    assert {cc: fp32_lanes_per_sm(*cc) for cc in lanes} == lanes

def test_imle_step_reads_only_the_run_it_made(tmp_path, monkeypatch):
    # gpu_check run twice into one --out: the second imle step must not report the first run's log as its own.
    from rtm_plugin import gpu_check
    ctx = dict(out=str(tmp_path), device='cuda', timeout=lambda want: want)
    old_run = tmp_path / 'imle-runs' / '00000-old'
    old_run.mkdir(parents=True)
    (old_run / 'metrics.jsonl').write_text('{"kimg": 12.8, "step": 200}\n')
    made = []
    def fake_run(cmd, ctx, name, timeout, **kwargs):         # rtm-imle exits 0 but writes no log
        made.append(cmd)
        return 0, ''
    monkeypatch.setattr(gpu_check, 'run_logged', fake_run)
    status, summary, details = gpu_check.step_imle(ctx)
    assert made and status == 'failed' and details['last_tick'] == {}, summary
    def fake_run_with_log(cmd, ctx, name, timeout, **kwargs):
        run = tmp_path / 'imle-runs' / '00001-new'
        run.mkdir()
        (run / 'metrics.jsonl').write_text('{"kimg": 0.1, "step": 1}\n{"kimg": 12.8, "step": 199}\n')
        return 0, ''
    monkeypatch.setattr(gpu_check, 'run_logged', fake_run_with_log)
    status, _, details = gpu_check.step_imle(ctx)
    assert status == 'ok' and details['last_tick'] == {'kimg': 12.8, 'step': 199}

def test_work_folder_is_removed_after_ctrl_c(tmp_path, monkeypatch):
    # The work folder holds the sanitizer harness and a copy of the SG2-ADA checkout: removed however the run ends.
    import tempfile
    from click.testing import CliRunner
    from rtm_plugin import gpu_check
    (tmp_path / 'tmp').mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path / 'tmp'))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    def interrupted(ctx):
        assert os.path.isdir(ctx['work'])
        raise KeyboardInterrupt
    monkeypatch.setitem(gpu_check.STEP_FUNCTIONS, 'environment', interrupted)
    result = CliRunner().invoke(gpu_check.main, ['--out', str(tmp_path / 'report'), '--quick', '--skip', 'build'])
    assert result.exit_code == 1 and 'Aborted' in result.output, result.output
    assert os.listdir(tmp_path / 'tmp') == []

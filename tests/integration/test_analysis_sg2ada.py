"""rtm-analyze on StyleGAN2-ADA pickles (RTM_SG2ADA_DIR): tiny conditional RTM and MLP generators built in a
patched copy of the checkout, loaded through an unpatched copy, as a user of a pickle would.

Everything upstream runs in subprocesses (the checkout's top-level packages stay out of the pytest process)."""

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

import checkouts
from rtm_plugin.patching import engine
from rtm_plugin.patching.targets import load_target

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name('analysis_sg2ada_driver.py')
UPSTREAM, pytestmark = checkouts.upstream_checkout('RTM_SG2ADA_DIR')

class Features(torch.nn.Module):
    """A stand-in TorchScript detector with upstream's call signature (no download needed)."""
    def forward(self, img, return_features: bool = False):
        return torch.nn.functional.adaptive_avg_pool2d(img.float() / 255, 4).flatten(1)

def run(work, cwd, *args, module=False):
    cmd = [sys.executable, *(['-m', 'rtm_plugin.analysis'] if module else [str(DRIVER)]), *map(str, args)]
    result = subprocess.run(cmd, cwd=cwd, env=work['env'], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f'{cmd}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}'
    return result.stdout

@pytest.fixture(scope='module')
def work(tmp_path_factory):
    base = tmp_path_factory.mktemp('analysis-sg2ada')
    data = base / 'data'
    data.mkdir()
    rng = np.random.RandomState(0)
    for i in range(10):
        PIL.Image.fromarray(rng.randint(0, 256, (16, 16, 3), dtype=np.uint8)).save(data / f'img{i}.png')
    (data / 'dataset.json').write_text(json.dumps({'labels': [[f'img{i}.png', i % 2] for i in range(10)]}))
    ignore = shutil.ignore_patterns('.git', '__pycache__')
    patched = shutil.copytree(UPSTREAM, base / 'patched', ignore=ignore, symlinks=True)
    engine.apply(patched, load_target('stylegan2-ada-pytorch'))
    pristine = shutil.copytree(UPSTREAM, base / 'pristine', ignore=ignore, symlinks=True)
    with warnings.catch_warnings():     # TorchScript is deprecated, but it is the detector format upstream ships
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.jit.script(Features()).save(str(base / 'features.pt'))
    env = dict(os.environ, PYTHONPATH=str(REPO), RTM_SG2ADA_DIR=str(pristine))
    work = dict(base=base, env=env)
    built = json.loads(run(work, patched, 'build', base).strip().splitlines()[-1])
    assert built == {'rtm': 'RTMMappingNetwork', 'mlp': 'MappingNetwork'}
    return work

def test_view_matches_the_generator_itself(work):
    out = json.loads(run(work, work['base'], 'check', work['base']).strip().splitlines()[-1])
    assert (out['rtm']['kind'], out['rtm']['depth'], out['mlp']['kind'], out['mlp']['depth']) == ('rtm', 3, 'mlp', 2)
    for name in ('rtm', 'mlp'):
        assert out[name]['c_is_one_hot'] and out[name]['tsk_path'] == str(work['base'] / 'data')
        assert out[name]['w_equals_mapping'] and out[name]['trace_last_equals_w'] and out[name]['images_equal_G']

def test_tools_run_on_stylegan2_ada_pickles(work):
    base, out = work['base'], work['base'] / 'out'
    rtm, mlp = base / 'rtm.pkl', base / 'mlp.pkl'
    common = ['--outdir', out]
    run(work, base, 'hsweep', '--network', rtm, '--steps', '1,3,6', '--num-samples', 12, '--num-real', 10,
        '--detector', base / 'features.pt', *common, module=True)
    assert [line.split(',')[0] for line in (out / 'hsweep.csv').read_text().split()[1:]] == ['1', '3', '6']
    run(work, base, 'progression', '--rtm', rtm, '--mlp', mlp, '--num', 2, '--cols', 2, *common, module=True)
    assert PIL.Image.open(out / 'progression.gif').n_frames == 3
    run(work, base, 'sample', '--network', rtm, '--num', 6, '--steps', 6, '--halt-tol', 1e9, '--h-min', 2, *common,
        module=True)
    assert (out / 'samples-steps.txt').read_text().split() == ['2'] * 6
    run(work, base, 'stability', '--network', rtm, '--steps', 5, '--num', 8, *common, module=True)
    run(work, base, 'slerp', '--network', rtm, '--network', mlp, '--rows', 2, '--cols', 3, *common, module=True)
    run(work, base, 'nn', '--baseline', mlp, '--rtm', rtm, '--queries', 2, '--pool', 10, '--k', 2,
        '--detector', base / 'features.pt', *common, module=True)
    run(work, base, 'latency', '--rtm', rtm, '--mlp', mlp, '--batch', 2, '--warmup', 1, '--repeats', 2, *common,
        module=True)
    rows = json.loads((out / 'latency.json').read_text())['rows']
    assert [r['mapper'] for r in rows] == ['RTM (H=3, L=1)'] * 2 + ['MLP-2']
    run(work, base, 'halt', '--network', rtm, '--tol', 0, '--h-max', 4, '--num-samples', 10, '--num-real', 10,
        '--detector', base / 'features.pt', *common, module=True)
    assert json.loads((out / 'halt.json').read_text())['histograms'] == {'0.0': [0, 0, 0, 10]}
    for name in ('hsweep.png', 'progression.png', 'samples.png', 'stability.png', 'slerp.png', 'nn.png', 'halt.png'):
        assert (out / name).stat().st_size > 0

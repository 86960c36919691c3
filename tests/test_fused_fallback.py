"""When the fused op cannot be built, the RTM warns once and trains on the reference path; a process that
only unpickles a mapper builds nothing. Runs in a fresh process whose compiler is /bin/false and whose
TORCH_EXTENSIONS_DIR is empty, so the build really fails."""

import json
import os
import pickle
import subprocess
import sys

import torch

from rtm_plugin.rtm import RecursiveTokenMapper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r'''
import contextlib, io, json, pickle, sys, warnings
import torch
stdout = io.StringIO()
with contextlib.redirect_stdout(stdout), warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    with open(sys.argv[1], 'rb') as f:
        m = pickle.load(f)
    from torch_utils_ext import rtm_fused
    built_after_unpickle = dict(rtm_fused._plugins)
    printed_after_unpickle = stdout.getvalue()

    torch.manual_seed(0)
    x = torch.randn(16, 12)
    w_auto = m(x)                               # 'auto': tries to build, fails, warns, uses the reference
    with torch.no_grad():
        same = torch.equal(w_auto.detach(), m(x, use_fused=False))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    target = torch.randn(16, 10)
    losses = []
    for _ in range(8):
        loss = (m(x) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    try:
        m(x, use_fused=True)
        required_error = None
    except RuntimeError as e:
        required_error = str(e)
print(json.dumps(dict(
    built_after_unpickle=list(built_after_unpickle), printed_after_unpickle=printed_after_unpickle,
    printed=stdout.getvalue(), warnings=[str(w.message).splitlines()[0] for w in caught],
    same=same, losses=losses, required_error=required_error)))
'''

def test_failed_build_warns_once_and_training_uses_the_reference(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / 'rtm.pkl'
    with open(path, 'wb') as f:
        pickle.dump(RecursiveTokenMapper(12, 10, tokens=4, token_dim=8, H=4, L=2), f)
    env = dict(os.environ, PYTHONPATH=REPO, CXX='/bin/false', TORCH_EXTENSIONS_DIR=str(tmp_path / 'ext'))
    result = subprocess.run([sys.executable, '-c', CHILD, str(path)], env=env, capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])

    assert out['built_after_unpickle'] == [] and out['printed_after_unpickle'] == ''   # nothing before a forward
    assert out['printed'].count('Setting up PyTorch plugin') == 1 and 'Failed!' in out['printed']
    build_warnings = [w for w in out['warnings'] if 'Failed to build the fused RTM op (cpu)' in w]
    assert len(build_warnings) == 1, out['warnings']            # once, not per call
    assert 'Falling back to the slow reference implementation' in build_warnings[0]
    assert out['same']
    assert all(b < a for a, b in zip(out['losses'], out['losses'][1:])), out['losses']     # it trains
    assert 'use_fused=True' in out['required_error'] and 'failed to build' in out['required_error']

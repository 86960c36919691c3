"""Where rtm-imle runs: device selection from torchrun's environment, and --amp.

select_device is tested for real: only the CUDA queries that need a GPU (is_available, device_count, set_device)
are faked, the environment is torchrun's (LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE)."""

import json
import math
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from imle_tiny import TINY, tiny_images
from rtm_plugin.imle import distributed as D
from rtm_plugin.imle.train import RunOptions, Trainer

@pytest.fixture
def gpus(monkeypatch):
    """A node with `n` fake GPUs; returns the list of devices set_device received."""
    chosen = []

    def install(n):
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: n > 0)
        monkeypatch.setattr(torch.cuda, 'device_count', lambda: n)
        monkeypatch.setattr(torch.cuda, 'set_device', lambda d: chosen.append(torch.device(d)))
        return chosen
    return install

def torchrun_env(monkeypatch, local_rank, local_world, nodes=1):
    for name in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('LOCAL_RANK', str(local_rank))
    monkeypatch.setenv('LOCAL_WORLD_SIZE', str(local_world))
    monkeypatch.setenv('WORLD_SIZE', str(local_world * nodes))
    monkeypatch.setenv('RANK', str(local_rank))

def test_auto_is_the_cpu_without_cuda(gpus, monkeypatch):
    torchrun_env(monkeypatch, 1, 2)
    chosen = gpus(0)
    assert D.select_device('auto') == torch.device('cpu') and D.backend_for('cpu') == 'gloo'
    assert D.select_device('cpu') == torch.device('cpu')
    assert chosen == []

@pytest.mark.parametrize('requested', ['auto', 'cuda'])
@pytest.mark.parametrize('local_rank', [0, 1, 3])
def test_each_rank_takes_cuda_local_rank(gpus, monkeypatch, requested, local_rank):
    torchrun_env(monkeypatch, local_rank, 4, nodes=2)           # node 2 of a 2 x 4 job: LOCAL_RANK, not RANK
    monkeypatch.setenv('RANK', str(4 + local_rank))
    chosen = gpus(4)
    device = D.select_device(requested)
    assert device == torch.device('cuda', local_rank) and chosen == [device]
    assert D.backend_for(device) == 'nccl'

def test_one_process_without_torchrun(gpus, monkeypatch):
    for name in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE'):
        monkeypatch.delenv(name, raising=False)
    chosen = gpus(2)
    assert D.select_device('auto') == torch.device('cuda', 0)
    assert D.select_device('cuda:1') == torch.device('cuda', 1)
    assert D.select_device('cpu') == torch.device('cpu')          # asked for: CUDA present but unused
    assert chosen == [torch.device('cuda', 0), torch.device('cuda', 1)]

def test_more_ranks_than_gpus_is_an_error(gpus, monkeypatch):
    torchrun_env(monkeypatch, 0, 4)
    gpus(2)
    with pytest.raises(ValueError, match=r'^4 processes on this node but only 2 GPU\(s\): start at most '
                                         r'--nproc_per_node=2$'):
        D.select_device('auto')

def test_bad_requests(gpus, monkeypatch):
    torchrun_env(monkeypatch, 1, 2)
    gpus(2)
    with pytest.raises(ValueError, match=r'cuda:0 under torchrun: each process takes cuda:\$LOCAL_RANK \(here cuda:1\)'):
        D.select_device('cuda:0')
    assert D.select_device('cuda:1') == torch.device('cuda', 1)   # the resolved device, passed on again
    with pytest.raises(ValueError, match='not a torch device'):
        D.select_device('gpu')
    gpus(0)
    with pytest.raises(ValueError, match='CUDA is not available here'):
        D.select_device('cuda')

def test_cli_errors_are_one_line(gpus, monkeypatch, tmp_path):
    from rtm_plugin.imle.cli import main
    torchrun_env(monkeypatch, 0, 8)
    gpus(4)
    result = CliRunner().invoke(main, ['--outdir', str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == ('Error: 8 processes on this node but only 4 GPU(s): '
                                                      'start at most --nproc_per_node=4')
    for name in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE'):
        monkeypatch.delenv(name)
    gpus(0)
    result = CliRunner().invoke(main, ['--device', 'cuda', '--outdir', str(tmp_path)])
    assert result.exit_code == 2 and 'CUDA is not available here' in result.output
    assert not list(tmp_path.iterdir())                          # nothing started

# ---------------------------------------------------------------------------- mixed precision

@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

def trained(amp, outdir, steps=6):
    t = Trainer(replace(TINY, eps=0.0), tiny_images(), RunOptions(outdir=str(outdir), perceptual='fallback',
                progress=False, device='cpu', amp=amp), log=lambda m: None)
    t.rematch(0)
    start = {k: v.clone() for k, v in t.G.state_dict().items()}
    losses = [t.train_step()[0] for _ in range(steps)]
    return t, start, losses

def test_bf16_keeps_the_loss_finite_and_the_weights_near_fp32(tmp_path, one_thread):
    full, start, loss32 = trained('off', tmp_path / 'fp32')
    half, start16, loss16 = trained('bf16', tmp_path / 'bf16')
    assert all(math.isfinite(l) for l in loss16)
    assert loss16 != loss32                                      # bf16 did run
    assert max(abs(a - b) / a for a, b in zip(loss32, loss16)) < 0.02
    lrs = sum(replace(TINY).lr * min(1.0, (s + 1) / TINY.warmup_iters) for s in range(6))
    moved, apart = 0.0, 0.0
    for k, w32 in full.G.state_dict().items():
        assert torch.equal(start[k], start16[k])                  # same start
        if w32.dtype.is_floating_point:
            w16 = half.G.state_dict()[k]
            assert w16.dtype == torch.float32                     # the weights themselves stay fp32
            assert (w16 - w32).abs().max() <= 2 * lrs + 1e-6, k  # Adam moves a weight by <= lr per step
            moved += (w32 - start[k]).square().sum().item()
            apart += (w16 - w32).square().sum().item()
    assert apart < 0.1 * moved, (apart, moved)                  # far closer to fp32 than to where it started

def test_under_autocast_the_mapper_stays_fp32(one_thread):
    from rtm_plugin.imle.precision import autocast
    from rtm_plugin.imle.generator import build_generator
    G = build_generator(TINY)
    seen = {}
    G.mapping.register_forward_hook(lambda m, i, o: seen.__setitem__('w', o.dtype))
    conv = next(m for m in G.synthesis.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: seen.__setitem__('conv', o.dtype))
    with torch.no_grad(), autocast('cpu', 'bf16'):
        G(torch.randn(2, TINY.z_dim))
    assert seen == {'w': torch.float32, 'conv': torch.bfloat16}

def test_fp16_uses_a_grad_scaler(tmp_path, one_thread):
    t, _, losses = trained('fp16', tmp_path / 'fp16', steps=2)
    assert t.scaler.is_enabled() and all(math.isfinite(l) for l in losses)
    assert t.snapshot_dict()['rs_imle']['scaler']['scale'] > 0     # saved with the snapshot, for --resume

def test_throughput_is_logged(tmp_path, one_thread):
    lines = []
    t = Trainer(replace(TINY, kimg=0.04), tiny_images(), RunOptions(outdir=str(tmp_path), perceptual='fallback',
                progress=False, tick_kimg=0.016, snap_kimg=1, grid_kimg=1, pool_batch=7), log=lines.append)
    t.run()
    records = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
    match = [r for r in records if r['kind'] == 'match']
    train = [r for r in records if r['kind'] == 'train']
    assert match and train
    assert all(r['pool_img_per_s'] > 0 and r['render_seconds'] > 0 and r['match_seconds'] >= 0 for r in match)
    assert all(r['train_img_per_s'] > 0 for r in train)
    assert any(l.startswith('match round 0: pool of 72 rendered in') and 'img/s' in l for l in lines)

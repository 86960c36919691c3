"""torchrun with 2 CPU processes (gloo) splits the data and the pool, yet matches exactly as 1 process does."""

import os
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

def test_two_processes_match_like_one(tmp_path):
    sys.path.insert(0, HERE)
    from imle_ddp_worker import run_steps
    one = str(tmp_path / 'one.pt')
    before = torch.get_num_threads()
    try:
        run_steps(one, str(tmp_path / 'run1'))
    finally:
        torch.set_num_threads(before)
    two = str(tmp_path / 'two.pt')
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                           os.path.join(HERE, 'imle_ddp_worker.py'), two, str(tmp_path / 'run2')],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = torch.load(one, weights_only=False), torch.load(two, weights_only=False)
    assert (a['world'], b['world']) == (1, 2)
    assert torch.equal(a['data_features'], b['data_features'])         # all-gathered shards, in order
    assert torch.equal(a['matched'], b['matched'])                      # the same nearest samples and noise
    for k in ('rejected', 'unmatched', 'distinct_samples', 'pool'):
        assert a['record'][k] == b['record'][k]
    assert a['record']['rejected'] > 0                                  # rejection did something
    first, last = a['grads'][0], b['grads'][0]
    for k, v in first.items():                                          # DDP averages half-batch gradients
        assert torch.allclose(v, last[k], rtol=1e-4, atol=1e-7), k
    # Later steps: the few-shot decoder's last convs start at zero, so Adam's first step sets them to
    # +-lr * sign(g), and where g is at fp32 rounding level that sign depends on the summation order.
    # The synthesis gradients behind those convs then legitimately differ; the mapper's must not.
    for step in range(1, len(a['grads'])):
        for k, v in a['grads'][step].items():
            if k.startswith('mapping.'):
                assert (v - b['grads'][step][k]).norm() <= 1e-3 * v.norm() + 1e-9, (step, k)
    budget = 2 * sum(a['lrs']) + 1e-6                                   # Adam moves a weight by <= lr per step
    assert a['lrs'] == b['lrs']
    for k, v in a['G'].items():
        if k.endswith('w_avg'):                                         # rank 0's half batch, as in StyleGAN
            continue
        assert (v - b['G'][k]).abs().max() <= budget, k

def test_ranks_wait_for_the_metrics_rank_0_computes_at_a_snapshot(tmp_path):
    """--metrics run on rank 0 alone; the other ranks must not reach the next step's collective and time out there
    (fid50k_full at a snapshot can outlast NCCL's timeout)."""
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                           os.path.join(HERE, 'imle_ddp_worker.py'), '--slow-metric', str(tmp_path / 'run'), '6'],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

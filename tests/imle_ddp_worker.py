"""Run by tests/test_imle_ddp.py under torchrun: one RS-IMLE match and a few steps, then rank 0 saves the state."""

import os
import sys

from dataclasses import replace

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from imle_tiny import TINY, tiny_images                                     # noqa: E402
from rtm_plugin.imle.train import RunOptions, Trainer                       # noqa: E402

def run_steps(out_path, outdir, steps=3):
    torch.set_num_threads(1)
    cfg = replace(TINY, eps=1.0)                                # wide enough to reject part of the first pool
    t = Trainer(cfg, tiny_images(), RunOptions(outdir=outdir, perceptual='fallback', progress=False),
                log=lambda m: None)
    record = t.rematch(0)
    matched = t.latents.clone()
    grads, lrs = [], []
    for _ in range(steps):
        t.train_step()
        grads.append({k: p.grad.clone() for k, p in t.G.named_parameters()})   # DDP's averaged gradients
        lrs.append(t.opt.param_groups[0]['lr'])
    if t.rank == 0:
        torch.save(dict(record=record, matched=matched, grads=grads, lrs=lrs, G=t.G.state_dict(), world=t.world,
                        data_features=t.data_features), out_path)

def slow_metric_run(outdir, seconds):
    """Snapshots with --metrics that rank 0 computes alone for longer than the collectives' timeout: the other rank
    must wait for it, not time out in the next step's collective."""
    import datetime
    import time
    import torch.distributed as dist
    from rtm_plugin.imle import snapshot_metrics
    dist.init_process_group('gloo', timeout=datetime.timedelta(seconds=seconds / 3))    # the training collectives'

    def slow(metric, **kw):
        time.sleep(seconds)
        return dict(results={'modes1k_modes': 1}, metric=metric, total_time=seconds, total_time_str='0s', num_gpus=1)
    snapshot_metrics.calc_metric = slow
    torch.set_num_threads(1)
    cfg = replace(TINY, kimg=0.032)                             # 4 steps, a snapshot (and the metric) after 2
    opts = RunOptions(outdir=outdir, perceptual='fallback', progress=False, snap_kimg=0.016, metrics=('modes1k',))
    status, _ = Trainer(cfg, tiny_images(), opts, log=lambda m: None).run()
    assert status == 'done', status

if __name__ == '__main__':
    if sys.argv[1] == '--slow-metric':
        slow_metric_run(sys.argv[2], float(sys.argv[3]))
    else:
        run_steps(sys.argv[1], sys.argv[2])

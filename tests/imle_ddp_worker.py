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

if __name__ == '__main__':
    run_steps(sys.argv[1], sys.argv[2])

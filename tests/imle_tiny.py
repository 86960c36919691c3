"""A tiny RS-IMLE setup shared by the training tests and the 2-process worker (not a test module)."""

from dataclasses import replace

import numpy as np

from rtm_plugin.imle.config import FEWSHOT

TINY = replace(FEWSHOT, z_dim=16, w_dim=16, rtm_tokens=2, rtm_dim=8, rtm_h=2, rtm_l=1, mlp_layers=2,
               dec_blocks='1x1,4m1,8m4,16m8', width=8, resolution=16, batch=8, lr=1e-3, ema=0.99,
               force_factor=3.0, pool_multiple=1, force_resample=1, eps=0.3, shuffle=True, kimg=0.08)

def tiny_images(n=24, seed=0):
    from rtm_plugin.datasets.stacked_digits import make_stacked_digits
    return make_stacked_digits(n, 16, seed=seed)[0]

def state_of(trainer):
    """Everything a resumed run must reproduce bit for bit."""
    out = {f'G.{k}': v.clone() for k, v in trainer.G.state_dict().items()}
    out.update({f'G_ema.{k}': v.clone() for k, v in trainer.G_ema.state_dict().items()})
    out['latents'] = trainer.latents.clone()
    return out

def assert_same_state(a, b):
    assert a.keys() == b.keys()
    bad = [k for k in a if not np.array_equal(a[k].numpy(), b[k].numpy())]
    assert not bad, f'differ: {bad[:5]}'

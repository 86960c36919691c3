"""A tiny RS-IMLE setup shared by the training tests and the 2-process worker (not a test module)."""

import os
from dataclasses import replace

import numpy as np
import pytest
import torch

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

# The tiny setup as rtm-imle flags: 10 steps of 8 on 24 images (default run, or --data), no final evaluation.
TINY_CLI = ['--kimg', '0.08', '--num-images', '24', '--batch', '8', '--z-dim', '16', '--w-dim', '16', '--width', '8',
            '--rtm-h', '2', '--rtm-l', '1', '--rtm-tokens', '2', '--dec-blocks', '1x1,4m1,8m4,16m8',
            '--force-factor', '3', '--force-resample', '2', '--eval-samples', '0', '--no-progress']

def write_png_folder(folder, images):
    """uint8 [N, 3, R, R] as numbered PNGs in folder (a --data folder)."""
    import os
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    for i, x in enumerate(images):
        Image.fromarray(np.asarray(x).transpose(1, 2, 0)).save(os.path.join(folder, f'{i:03d}.png'))
    return str(folder)

def snapshot_state(path):
    """state_of() for a snapshot file: G, G_ema and the matched latents."""
    from rtm_plugin.snapshots import load_snapshot
    data = load_snapshot(str(path))
    out = {f'G.{k}': v for k, v in data['G'].state_dict().items()}
    out.update({f'G_ema.{k}': v for k, v in data['G_ema'].state_dict().items()})
    out['latents'] = data['rs_imle']['latents']
    return out

@pytest.fixture
def one_thread():
    """Tiny models gain nothing from a second thread, and lose a lot when another process holds the core. A test
    module makes it autouse with `pytestmark = pytest.mark.usefixtures('one_thread')`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

def invoke(args):
    """rtm-imle in this process (click's runner): exit code, output and exception without a subprocess."""
    from click.testing import CliRunner
    from rtm_plugin.imle.cli import main
    return CliRunner().invoke(main, [str(a) for a in args])

def only_run_dir(outdir):
    (name,) = os.listdir(outdir)
    return os.path.join(outdir, name)

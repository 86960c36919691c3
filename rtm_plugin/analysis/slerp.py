"""SLERP interpolation grids (the paper's Appendix J): each row walks the great circle between two random
latents, z(t) = sin((1-t) a)/sin(a) z0 + sin(t a)/sin(a) z1 with a the angle between z0 and z1."""

import os

import click
import torch

from rtm_plugin.analysis.options import common, echo_written, open_view
from rtm_plugin.analysis.sheets import label, vstack
from rtm_plugin.image_grid import save_png, tile, upscale

def slerp(z0, z1, t):
    """Spherical interpolation between rows of z0 and z1 [N, D] at t in [0, 1] ([T]): [N, T, D]. Falls back to
    linear interpolation where the two are (nearly) parallel."""
    t = torch.as_tensor(t, dtype=z0.dtype)[None, :, None]
    cos = torch.nn.functional.cosine_similarity(z0, z1, dim=1).clamp(-1, 1)[:, None, None]
    angle = torch.acos(cos)
    sin = torch.sin(angle)
    linear = sin.abs() < 1e-6
    safe = torch.where(linear, torch.ones_like(sin), sin)
    a = torch.where(linear, 1 - t, torch.sin((1 - t) * angle) / safe)
    b = torch.where(linear, t, torch.sin(t * angle) / safe)
    return a * z0[:, None] + b * z1[:, None]

def slerp_grid(view, rows, cols, seed, batch=256, **trunk_kwargs):
    """uint8 [rows * cols, C, R, R]: row i interpolates between two latents drawn from `seed`."""
    z, c = view.latents(2 * rows, seed)
    path = slerp(z[:rows], z[rows:], torch.linspace(0, 1, cols)).flatten(0, 1)
    labels = None if c is None else c[:rows].repeat_interleave(cols, dim=0)    # one label per row
    return view.images(path, labels, batch=batch, **trunk_kwargs)[0]

@click.command('slerp')
@click.option('--network', 'networks', required=True, multiple=True, help='Generator(s); several are stacked')
@click.option('--rows', type=click.IntRange(min=1), default=6, show_default=True)
@click.option('--cols', type=click.IntRange(min=2), default=10, show_default=True)
@click.option('--scale', type=click.IntRange(min=1), default=3, show_default=True, help='Pixel upscaling')
@common()
def command(networks, rows, cols, scale, outdir, seed, device, batch):
    """slerp.png: SLERP grids between random latents, the same latents for every --network."""
    blocks = []
    for path in networks:
        _, view = open_view(path, device)
        images = slerp_grid(view, rows, cols, seed, batch)
        blocks.append(label(tile(upscale(images.numpy(), scale), cols), f'{view.label}: SLERP in z, rows = pairs'))
    echo_written([save_png(os.path.join(outdir, 'slerp.png'), vstack(blocks, gap=12))])

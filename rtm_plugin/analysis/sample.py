"""Sample grids at a chosen inference-time H, or with adaptive halting (--halt-tol): the generation path of
the analysis tools."""

import io
import os

import click
import numpy as np
import torch

from rtm_plugin.analysis.options import common, echo_written, open_view
from rtm_plugin.files import atomic_write
from rtm_plugin.image_grid import save_png, tile, upscale

@click.command('sample')
@click.option('--network', required=True, help='Generator (snapshot, run folder or StyleGAN2-ADA pickle)')
@click.option('--num', type=click.IntRange(min=1), default=64, show_default=True)
@click.option('--cols', type=click.IntRange(min=1), default=8, show_default=True)
@click.option('--steps', 'h', type=click.IntRange(min=1), help='RTM outer steps H (H_max with --halt-tol) [trained H]')
@click.option('--halt-tol', type=click.FloatRange(min=0), help='Adaptive halting tolerance (RTM)')
@click.option('--h-min', type=click.IntRange(min=1), default=1, show_default=True, help='Fewest steps with --halt-tol')
@click.option('--scale', type=click.IntRange(min=1), default=1, show_default=True, help='Pixel upscaling')
@click.option('--npy', is_flag=True, help='Also write the images as uint8 [N, C, R, R] samples.npy')
@common()
def command(network, num, cols, h, halt_tol, h_min, scale, npy, outdir, seed, device, batch):
    """samples.png (and samples.npy; samples-steps.txt with --halt-tol)."""
    _, view = open_view(network, device)
    kw = {}
    if h is not None or halt_tol is not None:
        try:
            view.require_rtm('--steps / --halt-tol')
        except ValueError as e:
            raise click.ClickException(str(e))
        kw['H'] = h
    if halt_tol is not None:
        kw.update(halt_tol=halt_tol, H_min=h_min)
    try:
        images, used = view.images(*view.latents(num, seed), batch=batch, **kw)
    except ValueError as e:
        raise click.ClickException(str(e))
    paths = [save_png(os.path.join(outdir, 'samples.png'), tile(upscale(images.numpy(), scale), cols, gap=0))]
    if npy:
        buf = io.BytesIO()
        np.save(buf, images.numpy())
        paths.append(atomic_write(os.path.join(outdir, 'samples.npy'), buf.getvalue()))
    if used is not None:
        counts = torch.bincount(used)
        click.echo(f'steps used: mean {used.float().mean():.2f}, min {int(used.min())}, max {int(used.max())}; '
                   + ', '.join(f'{h}: {int(n)}' for h, n in enumerate(counts.tolist()) if n))
        paths.append(atomic_write(os.path.join(outdir, 'samples-steps.txt'), '\n'.join(map(str, used.tolist())) + '\n'))
    echo_written(paths)

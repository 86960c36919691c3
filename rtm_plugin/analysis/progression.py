"""Refinement progression (the project page's videos): the same latents decoded step by step.

RTM: the w read out after each outer step 1..H. The MLP baseline: the output after keeping only its first k
layers, k = 1..depth. Written as a side-by-side animated GIF, an MP4 when imageio-ffmpeg is installed, and a
PNG strip (one row per sample, one column per step)."""

import os

import click
import torch

from rtm_plugin.analysis.options import common, echo_written, open_view
from rtm_plugin.analysis.sheets import hstack, label, save_gif, save_mp4, vstack
from rtm_plugin.image_grid import save_png, tile, upscale

@torch.no_grad()
def step_images(view, z, c=None, trace_len=None):
    """uint8 [S, N, C, R, R]: the samples decoded after each RTM outer step (1..trace_len, default the trained H)
    or each MLP layer."""
    return torch.stack([view.decode(w) for w in view.trace(view.trunk_input(z, c), trace_len)])

def step_name(view, k, total):
    return f'step {k}/{total}' if view.kind == 'rtm' else f'{k}/{total} layers'

def animation_frames(panels, cols, scale):
    """One HWC frame per step of the longest sequence; panels [(view, [S, N, C, R, R])] side by side, a shorter
    sequence holding its last image."""
    total = max(len(seq) for _, seq in panels)
    frames = []
    for t in range(total):
        parts = []
        for view, seq in panels:
            k = min(t, len(seq) - 1)
            parts.append(label(tile(upscale(seq[k].numpy(), scale), cols), f'{view.label}: {step_name(view, k + 1, len(seq))}'))
        frames.append(hstack(parts, gap=12))
    return frames

def strip(panels, scale):
    """Per panel, rows = samples and columns = steps 1..S; panels stacked vertically."""
    blocks = []
    for view, seq in panels:
        s, n = seq.shape[:2]
        grid = tile(upscale(seq.transpose(0, 1).flatten(0, 1).numpy(), scale), cols=s)
        what = 'w after outer step' if view.kind == 'rtm' else 'output of the first k layers,'
        blocks.append(label(grid, f'{view.label}: {what} 1..{s}, left to right'))
    return vstack(blocks, gap=12)

@click.command('progression')
@click.option('--rtm', 'rtm_path', help='RTM generator (snapshot, run folder or StyleGAN2-ADA pickle)')
@click.option('--mlp', 'mlp_path', help='MLP-baseline generator')
@click.option('--rtm-steps', type=click.IntRange(min=1), help='RTM outer steps to show [trained H]')
@click.option('--num', type=click.IntRange(min=1), default=6, show_default=True, help='Samples')
@click.option('--cols', type=click.IntRange(min=1), default=3, show_default=True, help='Samples per row in the GIF')
@click.option('--scale', type=click.IntRange(min=1), default=4, show_default=True, help='Pixel upscaling')
@click.option('--frame-ms', type=click.IntRange(min=20), default=400, show_default=True)
@common()
def command(rtm_path, mlp_path, rtm_steps, num, cols, scale, frame_ms, outdir, seed, device, batch):
    """progression.gif (+ .mp4 with imageio-ffmpeg) and progression.png: the same latents, step by step."""
    if not rtm_path and not mlp_path:
        raise click.UsageError('give --rtm and/or --mlp')
    panels = []
    for path, trace_len in ((rtm_path, rtm_steps), (mlp_path, None)):
        if path:
            _, view = open_view(path, device)
            z, c = view.latents(num, seed)
            panels.append((view, step_images(view, z, c, trace_len if view.kind == 'rtm' else None)))
    frames = animation_frames(panels, cols, scale)
    paths = [save_gif(os.path.join(outdir, 'progression.gif'), frames, frame_ms=frame_ms),
             save_mp4(os.path.join(outdir, 'progression.mp4'), frames, fps=1000 / frame_ms),
             save_png(os.path.join(outdir, 'progression.png'), strip(panels, scale))]
    if paths[1] is None:
        click.echo('no MP4: pip install imageio-ffmpeg', err=True)
    echo_written(paths)

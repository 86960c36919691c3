"""Latent trajectory stability (the reviewers' open question: does the recursion settle?).

For h = 1..S: the mean over samples of ||w_h - w_{h-1}|| (w_0 = the read-out of the initial carry, as adaptive
halting uses), the same relative to ||w_h||, and the ratio of the mean step to the previous one: an empirical
contraction factor. Ratios below 1 that stay there mean the trajectory converges; near 1, it drifts at a
constant rate; above 1, it grows."""

import math
import os

import click
import torch

from rtm_plugin.analysis.options import common, echo_written, open_view
from rtm_plugin.analysis.output import figure, save_figure, write_table

@torch.no_grad()
def trajectory_stats(view, z, c=None, trace_len=None):
    """[{'step', 'mean_step', 'mean_rel_step', 'ratio'}] for outer steps 1..trace_len (default the trained H;
    ratio from step 2 on)."""
    view.require_rtm('trajectory stability')
    x = view.trunk_input(z, c)
    trace = torch.cat([view.initial_w(x)[None], view.trace(x, trace_len)])     # [S + 1, N, w_dim]
    delta = (trace[1:] - trace[:-1]).norm(dim=2)                               # [S, N]
    mean = delta.mean(dim=1)
    rel = (delta / trace[1:].norm(dim=2).clamp_min(1e-12)).mean(dim=1)
    rows = []
    for h in range(len(mean)):
        ratio = float(mean[h] / mean[h - 1]) if h and mean[h - 1] > 0 else None
        rows.append(dict(step=h + 1, mean_step=float(mean[h]), mean_rel_step=float(rel[h]), ratio=ratio))
    return rows

def tail_contraction(rows, first):
    """Geometric mean of the ratios from step `first` on (None when there are none)."""
    ratios = [r['ratio'] for r in rows if r['step'] >= first and r['ratio']]
    return math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else None

def plot_stability(rows, path, trained_h, label):
    fig, axes = figure(1, 2, size=(4.2, 3.0))
    hs = [r['step'] for r in rows]
    ax = axes[0, 0]
    ax.semilogy(hs, [r['mean_step'] for r in rows], 'o-', ms=3, label=r'mean $\|w_h - w_{h-1}\|$')
    ax.semilogy(hs, [r['mean_rel_step'] for r in rows], 's-', ms=3, label=r'mean $\|w_h - w_{h-1}\| / \|w_h\|$')
    ax.set_xlabel('outer step h')
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    ax.plot([r['step'] for r in rows if r['ratio']], [r['ratio'] for r in rows if r['ratio']], 'o-', ms=3, color='tab:red')
    ax.axhline(1.0, color='gray', lw=1)
    ax.set_xlabel('outer step h')
    ax.set_title('contraction factor (step h / step h-1)', fontsize=9)
    for ax in axes.flat:
        ax.axvline(trained_h, color='gray', ls='--', lw=1)
        ax.tick_params(labelsize=7)
    fig.suptitle(f'{label}: latent trajectory (dashed: trained H)', fontsize=10)
    return save_figure(fig, path)

@click.command('stability')
@click.option('--network', required=True, help='RTM generator (snapshot, run folder or StyleGAN2-ADA pickle)')
@click.option('--steps', 'trace_len', type=click.IntRange(min=2), default=64, show_default=True,
              help='Outer steps to follow')
@click.option('--num', type=click.IntRange(min=1), default=1024, show_default=True, help='Samples')
@common()
def command(network, trace_len, num, outdir, seed, device, batch):
    """stability.md/.csv and stability.png: per-step change of w and its contraction factor."""
    _, view = open_view(network, device)
    try:
        z, c = view.latents(num, seed)
        rows = trajectory_stats(view, z, c, trace_len)
    except ValueError as e:
        raise click.ClickException(str(e))
    tail = tail_contraction(rows, view.depth + 1)
    notes = [f'{view.label}, {num} samples (seed {seed}). Geometric-mean contraction factor after the trained H '
             f'({view.depth}): ' + (f'{tail:.3f}' if tail else 'n/a') + '.']
    paths = write_table(outdir, 'stability', rows, ['step', 'mean_step', 'mean_rel_step', 'ratio'],
                        title=f'Trajectory stability: {view.label}', notes=notes)
    paths += (plot_stability(rows, os.path.join(outdir, 'stability.png'), view.depth, view.label),)
    click.echo(open(paths[0]).read())
    echo_written(paths)

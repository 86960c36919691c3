"""Adaptive halting (future work in the paper; GRN's entropy-guided steps are the analogue): each sample stops
refining once ||w_h - w_{h-1}|| / ||w_h|| < tol, between H_min and H_max steps (RecursiveTokenMapper.halt).

For each tol: the distribution of steps used, the compute saved (outer steps skipped / N H_max), the mapper's
measured time, how far the images move from the fixed-H_max images, and the metrics against fixed H_max."""

import os

import click
import torch

from rtm_plugin.analysis.options import common, echo_written, open_view
from rtm_plugin.analysis.output import figure, save_figure, write_json, write_table
from rtm_plugin.timing import median_seconds

COLUMNS = ['tol', 'mean_steps', 'min_steps', 'max_steps', 'saved', 'mapper_us', 'pixel_diff', 'fid', 'fid_change',
           'precision', 'recall', 'density', 'coverage', 'modes', 'modes_change', 'kl']

def mapper_seconds(view, x, repeats, **kw):
    with torch.no_grad():
        return median_seconds(lambda: view.w(x, **kw), warmup=2, repeats=repeats)

def halting_report(view, reals_u8, tols, H_max, H_min=1, num_samples=10000, detector='digits', seed=0, batch=256,
                   device='cpu', timing_repeats=10):
    """(rows, histograms): one row for fixed H_max, then one per tol; histograms[tol] = counts of steps 1..H_max."""
    from rtm_plugin.metrics.detectors import load_detector
    from rtm_plugin.metrics.evaluate import evaluate_images
    view.require_rtm('adaptive halting')
    if isinstance(detector, str):
        detector = load_detector(detector, device=device)
    z, c = view.latents(num_samples, seed)
    x = view.trunk_input(z[:batch], None if c is None else c[:batch])

    def metrics(images):
        m = evaluate_images(reals_u8, images, detector=detector, device=device, batch_size=batch)
        return {k: (int(v) if k == 'modes' else float(v)) for k, v in m.items()}

    fixed, _ = view.images(z, c, batch=batch, H=H_max)
    base = metrics(fixed)
    t_fixed = mapper_seconds(view, x, timing_repeats, H=H_max)
    rows = [dict(tol='fixed', mean_steps=float(H_max), min_steps=H_max, max_steps=H_max, saved=0.0,
                 mapper_us=t_fixed / len(x) * 1e6, pixel_diff=0.0, **base)]
    histograms = {}
    for tol in tols:
        images, used = view.images(z, c, batch=batch, H=H_max, halt_tol=tol, H_min=H_min)
        m = metrics(images)
        histograms[tol] = torch.bincount(used, minlength=H_max + 1)[1:].tolist()
        rows.append(dict(tol=tol, mean_steps=float(used.float().mean()), min_steps=int(used.min()),
                         max_steps=int(used.max()), saved=1 - float(used.float().mean()) / H_max,
                         mapper_us=mapper_seconds(view, x, timing_repeats, H=H_max, halt_tol=tol, H_min=H_min)
                         / len(x) * 1e6,
                         pixel_diff=float((images.float() - fixed.float()).abs().mean()), **m))
    for r in rows[1:]:
        r['fid_change'] = r['fid'] - base['fid']
        if 'modes' in base:
            r['modes_change'] = r['modes'] - base['modes']
    return rows, histograms

def plot_histograms(histograms, H_max, path, label):
    fig, axes = figure(1, 1, size=(5.0, 3.0))
    ax = axes[0, 0]
    hs = list(range(1, H_max + 1))
    for tol, counts in histograms.items():
        total = sum(counts)
        ax.step(hs, [n / total for n in counts], where='mid', label=f'tol {tol:g}')
    ax.set_xlabel('outer steps used')
    ax.set_ylabel('fraction of samples')
    ax.set_xticks(hs if H_max <= 16 else hs[::max(1, H_max // 16)])
    ax.legend(fontsize=8)
    ax.set_title(f'{label}: adaptive halting, H_max = {H_max}', fontsize=10)
    return save_figure(fig, path)

@click.command('halt')
@click.option('--network', required=True, help='RTM generator (snapshot, run folder or StyleGAN2-ADA pickle)')
@click.option('--tol', 'tols', type=click.FloatRange(min=0), multiple=True, default=(0.01, 0.03, 0.1),
              show_default=True, help='Relative-change tolerance(s)')
@click.option('--h-max', type=click.IntRange(min=1), help='Most outer steps [trained H]')
@click.option('--h-min', type=click.IntRange(min=1), default=1, show_default=True, help='Fewest outer steps')
@click.option('--num-samples', type=click.IntRange(min=6), default=10000, show_default=True)
@click.option('--real', type=click.Path(exists=True), help='Real images (folder, zip, .npy) [the training set]')
@click.option('--num-real', type=click.IntRange(min=6), default=10000, show_default=True)
@click.option('--detector', help='Feature space: digits, inception, vgg16 or a path [digits for Stacked Digits]')
@common()
def command(network, tols, h_max, h_min, num_samples, real, num_real, detector, outdir, seed, device, batch):
    """halt.md/.csv/.json and halt.png: steps used, compute saved and metric change against fixed H_max."""
    from rtm_plugin.analysis.loader import default_detector, real_images
    net, view = open_view(network, device)
    try:
        view.require_rtm('adaptive halting')
        h_max = h_max or view.depth
        if h_min > h_max:
            raise ValueError(f'--h-min {h_min} exceeds --h-max {h_max}')
        detector = default_detector(net, detector)
        reals = real_images(net, real, num_real)
        rows, histograms = halting_report(view, reals, tols, h_max, h_min, num_samples, detector, seed, batch,
                                          device)
    except ValueError as e:
        raise click.ClickException(str(e))
    columns = [c for c in COLUMNS if any(c in r for r in rows)]
    notes = [f'{view.label}, H_min = {h_min}, H_max = {h_max}; {num_samples} samples (seed {seed}) against '
             f'{len(reals)} reals, detector `{detector}`. saved = outer steps skipped / (N x H_max); mapper_us = '
             f'median mapper time per image at batch {batch} ({torch.get_num_threads()} thread(s)); pixel_diff = '
             'mean |halted - fixed| in 0..255 levels; *_change = halted - fixed H_max.']
    paths = write_table(outdir, 'halt', rows, columns, title=f'Adaptive halting: {view.label}', notes=notes)
    paths += (write_json(os.path.join(outdir, 'halt.json'), dict(network=net.path, H_min=h_min, H_max=h_max,
              num_samples=num_samples, rows=rows, histograms={str(k): v for k, v in histograms.items()})),
              plot_histograms(histograms, h_max, os.path.join(outdir, 'halt.png'), view.label))
    click.echo(open(paths[0]).read())
    echo_written(paths)

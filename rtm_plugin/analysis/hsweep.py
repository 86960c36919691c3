"""H sweep (the paper's Table 4): an RTM generator's metrics at inference-time H in {1, 2, 4, ..., 64}, with no
retraining. The same latents at every H; metrics from rtm_plugin.metrics.evaluate_images."""

import os

import click
from tqdm import tqdm

from rtm_plugin.analysis.options import common, echo_written, open_view, parse_int_list
from rtm_plugin.analysis.output import figure, save_figure, write_json, write_table

DEFAULT_H_VALUES = '1,2,4,8,16,32,64'
METRIC_COLUMNS = ('fid', 'precision', 'recall', 'density', 'coverage', 'is', 'modes', 'kl')
TITLES = {'fid': 'FID', 'is': 'IS', 'modes': 'modes covered', 'kl': 'KL'}

def h_sweep(view, reals_u8, h_values, num_samples, detector, seed=0, batch=256, device='cpu', progress=False):
    """[{'H': h, metric: value, ...}] for each h in h_values, the same num_samples latents at every h."""
    from rtm_plugin.metrics.detectors import load_detector
    from rtm_plugin.metrics.evaluate import evaluate_images
    view.require_rtm('an H sweep')
    if isinstance(detector, str):
        detector = load_detector(detector, device=device)
    z, c = view.latents(num_samples, seed)
    rows = []
    for h in tqdm(h_values, desc='H sweep', disable=not progress):
        fakes, _ = view.images(z, c, batch=batch, H=h)
        metrics = evaluate_images(reals_u8, fakes, detector=detector, device=device, batch_size=batch)
        rows.append({'H': h, **{k: (int(v) if k == 'modes' else float(v)) for k, v in metrics.items()}})
    return rows

def plot_sweep(rows, path, trained_h=None, label=''):
    metrics = [m for m in METRIC_COLUMNS if m in rows[0]]
    cols = 4
    fig, axes = figure(-(-len(metrics) // cols), cols, size=(3.0, 2.4))
    hs = [r['H'] for r in rows]
    for ax, m in zip(axes.flat, metrics):
        ax.plot(hs, [r[m] for r in rows], 'o-', color='tab:blue')
        ax.set_xscale('log', base=2)
        ax.set_xticks(hs, [str(h) for h in hs])
        ax.set_title(TITLES.get(m, m), fontsize=10)
        ax.set_xlabel('H at inference', fontsize=8)
        ax.tick_params(labelsize=7)
        if trained_h is not None:
            ax.axvline(trained_h, color='gray', ls='--', lw=1)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis('off')
    fig.suptitle(f'{label}: metrics vs H (dashed: trained H)', fontsize=10)
    return save_figure(fig, path)

@click.command('hsweep')
@click.option('--network', required=True, help='RS-IMLE snapshot or run folder, or a StyleGAN2-ADA pickle')
@click.option('--steps', 'h_values', default=DEFAULT_H_VALUES, show_default=True, help='Inference-time H values')
@click.option('--num-samples', type=click.IntRange(min=6), default=10000, show_default=True)
@click.option('--real', type=click.Path(exists=True), help='Real images (folder, zip, .npy) [the training set]')
@click.option('--num-real', type=click.IntRange(min=6), default=10000, show_default=True)
@click.option('--detector', help="Feature space: digits, inception, vgg16 or a path [digits for Stacked Digits]")
@common()
def command(network, h_values, num_samples, real, num_real, detector, outdir, seed, device, batch):
    """Metrics at each inference-time H: hsweep.md, hsweep.csv, hsweep.json, hsweep.png."""
    from rtm_plugin.analysis.loader import default_detector, real_images
    h_values = parse_int_list(h_values)
    net, view = open_view(network, device)
    try:
        view.require_rtm('an H sweep')
        detector = default_detector(net, detector)
        reals = real_images(net, real, num_real)
    except ValueError as e:
        raise click.ClickException(str(e))
    rows = h_sweep(view, reals, h_values, num_samples, detector, seed, batch, device, progress=True)
    columns = ['H'] + [m for m in METRIC_COLUMNS if m in rows[0]]
    notes = [f'{view.label} from `{net.path}`; {num_samples} samples (seed {seed}) against {len(reals)} reals, '
             f'detector `{detector}`; trained H = {view.depth}.']
    paths = write_table(outdir, 'hsweep', rows, columns, title=f'H sweep: {view.label}', notes=notes)
    paths += (write_json(os.path.join(outdir, 'hsweep.json'), dict(network=net.path, detector=str(detector),
              num_samples=num_samples, num_real=len(reals), seed=seed, trained_H=view.depth, rows=rows)),
              plot_sweep(rows, os.path.join(outdir, 'hsweep.png'), view.depth, view.label))
    click.echo(open(paths[0]).read())
    echo_written(paths)

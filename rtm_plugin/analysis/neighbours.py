"""Nearest-neighbour queries (the paper's Appendix L): for real query images, the generated samples nearest to
each, from the baseline and from RTM, in the detector's feature space. One PNG sheet: per query row, the query,
then the baseline's k nearest, then RTM's k nearest (closest first)."""

import os

import click
import numpy as np
import torch

from rtm_plugin.analysis.options import common, echo_written, open_view
from rtm_plugin.analysis.output import write_table
from rtm_plugin.analysis.sheets import hstack, label
from rtm_plugin.image_grid import save_png, tile, upscale
from rtm_plugin.knn import sq_distances

def k_nearest(query_feats, feats, k):
    """(distances [Q, k], indices [Q, k]) of the k nearest rows of feats, closest first."""
    d, idx = sq_distances(query_feats, feats).topk(k, dim=1, largest=False)
    return d.sqrt(), idx

def neighbour_sheet(queries_u8, results, scale):
    """results: [(label, images [Q, k, C, R, R])]. Columns: query | label 1's k | label 2's k ..."""
    q = len(queries_u8)
    columns = [label(tile(upscale(queries_u8, scale), 1), 'query')]
    for name, images in results:
        k = images.shape[1]
        columns.append(label(tile(upscale(images.flatten(0, 1).numpy(), scale), k), f'{name}: {k} nearest'))
    assert all(len(images) == q for _, images in results)
    return hstack(columns, gap=10)

@click.command('nn')
@click.option('--baseline', required=True, help='Baseline (MLP) generator')
@click.option('--rtm', 'rtm_path', required=True, help='RTM generator')
@click.option('--real', type=click.Path(exists=True), help='Query images (folder, zip, .npy) [the training set]; '
              'a random subset of the first 1000 is queried')
@click.option('--queries', type=click.IntRange(min=1), default=8, show_default=True)
@click.option('--pool', type=click.IntRange(min=1), default=5000, show_default=True, help='Samples per generator')
@click.option('--k', type=click.IntRange(min=1), default=5, show_default=True)
@click.option('--detector', help='Feature space: digits, inception, vgg16 or a path [digits for Stacked Digits]')
@click.option('--scale', type=click.IntRange(min=1), default=3, show_default=True)
@common()
def command(baseline, rtm_path, real, queries, pool, k, detector, scale, outdir, seed, device, batch):
    """nn.png (and nn.md/.csv: mean distance of each generator's nearest sample to the queries)."""
    from rtm_plugin.analysis.loader import default_detector, real_images
    from rtm_plugin.metrics.detectors import load_detector
    net, first = open_view(baseline, device)
    try:
        detector = load_detector(default_detector(net, detector), device=device)
        reals = torch.as_tensor(np.asarray(real_images(net, real, max(queries, 1000))))
    except ValueError as e:
        raise click.ClickException(str(e))
    reals = reals[torch.randperm(len(reals), generator=torch.Generator().manual_seed(seed))[:queries]]
    query_feats = detector.features(reals)
    results, rows = [], []
    for view in (first, open_view(rtm_path, device)[1]):
        samples, _ = view.images(*view.latents(pool, seed), batch=batch)
        dist, idx = k_nearest(query_feats, detector.features(samples), min(k, pool))
        results.append((view.label, samples[idx]))
        rows.append(dict(generator=view.label, mean_nearest=float(dist[:, 0].mean()), mean_k=float(dist.mean())))
    notes = [f'{len(reals)} queries, {pool} samples per generator (seed {seed}), detector `{detector.name}` features.']
    paths = write_table(outdir, 'nn', rows, ['generator', 'mean_nearest', 'mean_k'],
                        title='Distance from the queries to the nearest samples', notes=notes)
    paths += (save_png(os.path.join(outdir, 'nn.png'), neighbour_sheet(reals.numpy(), results, scale)),)
    click.echo(open(paths[0]).read())
    echo_written(paths)

"""Latency protocol (the paper's Appendix H): EMA weights, no grad, batch 64, 20 warm-up passes, then the median
of 200 timed passes (rtm_plugin.timing). Per-image time of the mapper alone and of the whole generator, for RTM
on the fused op and on the reference path, and for the MLP baseline."""

import os
import warnings

import click
import torch

from rtm_plugin.analysis.options import common, echo_written, open_view
from rtm_plugin.analysis.output import write_json, write_table
from rtm_plugin.timing import interleaved_medians

COLUMNS = ['mapper', 'path', 'mapper_us', 'generator_us', 'mapper_share', 'mapper_vs_mlp']

def fused_available(view, x):
    """Whether the RTM trunk runs on the fused op for x (use_fused=True raises when it cannot)."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter('ignore')
            view.w(x[:1], use_fused=True)
        return True
    except (RuntimeError, TypeError):
        return False

def measure(views, batch=64, warmup=20, repeats=200, rounds=1, seed=0):
    """[{'mapper', 'path', 'mapper_us', 'generator_us', 'mapper_share', 'mapper_vs_mlp'}], times in us per image."""
    fns, rows = {}, []
    for view in views:
        z, c = view.latents(batch, seed)
        x = view.trunk_input(z, c)
        paths = [('fused', True), ('reference', False)] if view.kind == 'rtm' else [('-', None)]
        for name, mode in paths:
            if mode and not fused_available(view, x):
                rows.append(dict(mapper=view.label, path='fused (unavailable)'))
                continue
            kw = {} if mode is None else dict(use_fused=mode)
            mapper = lambda view=view, z=z, c=c, kw=kw: view.ws(view.w(view.trunk_input(z, c), **kw))
            generator = lambda view=view, mapper=mapper: view.G.synthesis(mapper(), noise_mode='const')
            key = (view.label, name)
            fns[key + ('mapper',)], fns[key + ('generator',)] = mapper, generator
            rows.append(dict(mapper=view.label, path=name, key=key))
    with torch.no_grad():
        seconds = interleaved_medians(fns, rounds=rounds, warmup=warmup, repeats=repeats,
                                      device=views[0].device if views else None)
    mlp = next((r for r in rows if r.get('path') == '-'), None)
    for r in rows:
        if 'key' in r:
            key = r.pop('key')
            r['mapper_us'] = seconds[key + ('mapper',)] / batch * 1e6
            r['generator_us'] = seconds[key + ('generator',)] / batch * 1e6
            r['mapper_share'] = r['mapper_us'] / r['generator_us']
    if mlp is not None:
        for r in rows:
            if 'mapper_us' in r:
                r['mapper_vs_mlp'] = r['mapper_us'] / mlp['mapper_us']
    return rows

@click.command('latency')
@click.option('--rtm', 'rtm_path', help='RTM generator')
@click.option('--mlp', 'mlp_path', help='MLP-baseline generator')
@click.option('--warmup', type=click.IntRange(min=0), default=20, show_default=True)
@click.option('--repeats', type=click.IntRange(min=1), default=200, show_default=True)
@click.option('--rounds', type=click.IntRange(min=1), default=1, show_default=True,
              help='Interleaved rounds (median of the rounds\' medians); 1 = the protocol as written')
@common(batch=64)
def command(rtm_path, mlp_path, warmup, repeats, rounds, outdir, seed, device, batch):
    """latency.md / latency.json: per-image mapper and generator time. --batch sets the batch (the protocol: 64)."""
    if not rtm_path and not mlp_path:
        raise click.UsageError('give --rtm and/or --mlp')
    views = [open_view(p, device)[1] for p in (rtm_path, mlp_path) if p]
    rows = measure(views, batch, warmup, repeats, rounds, seed)
    notes = [f'{device}, {torch.get_num_threads()} thread(s), torch {torch.__version__}; batch {batch}, EMA weights, '
             f'no grad, {warmup} warm-up passes, median of {repeats}' + (f', median of {rounds} interleaved rounds'
             if rounds > 1 else '') + '. Times in microseconds per image; mapper_share = mapper / generator.']
    paths = write_table(outdir, 'latency', rows, COLUMNS, title='Latency', notes=notes)
    paths += (write_json(os.path.join(outdir, 'latency.json'), dict(device=device, threads=torch.get_num_threads(),
              batch=batch, warmup=warmup, repeats=repeats, rounds=rounds, rows=rows)),)
    click.echo(open(paths[0]).read())
    echo_written(paths)

"""Click options shared by the subcommands, and turning their values into loaded generators."""

import functools

import click
import torch

def parse_int_list(text):
    try:
        values = [int(v) for v in str(text).split(',') if v.strip()]
    except ValueError:
        raise click.BadParameter(f'expected comma-separated integers, got {text!r}') from None
    if not values or min(values) < 1:
        raise click.BadParameter(f'expected positive integers, got {text!r}')
    return values

def common(batch=256):
    """--outdir, --seed, --device, --threads and --batch (default `batch`) on every subcommand."""
    def decorate(fn):
        @click.option('--outdir', default='analysis', show_default=True, help='Where the files are written')
        @click.option('--seed', type=int, default=0, show_default=True, help='Latent seed')
        @click.option('--device', default='cpu', show_default=True, help='torch device')
        @click.option('--threads', type=click.IntRange(min=1), help='torch CPU threads [torch default]')
        @click.option('--batch', type=click.IntRange(min=1), default=batch, show_default=True, help='Batch size')
        @functools.wraps(fn)
        def wrapper(*args, threads=None, **kwargs):
            if threads:
                torch.set_num_threads(threads)
            return fn(*args, **kwargs)
        return wrapper
    return decorate

def open_view(path, device, label=None):
    """(Network, GeneratorView) for a snapshot / run folder / StyleGAN2-ADA pickle; errors as click errors."""
    from rtm_plugin.analysis.loader import load_network
    from rtm_plugin.analysis.view import GeneratorView
    try:
        net = load_network(path, device)
        return net, GeneratorView(net.G, label)
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e))

def echo_written(paths):
    for p in paths:
        if p:
            click.echo(f'wrote {p}')

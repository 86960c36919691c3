"""Click options shared by the subcommands, and turning their values into loaded generators."""

import functools

import click
import torch

STUDIOGAN_CFG = 'rtm_plugin.analysis.studiogan_cfg'   # click context meta key: the --studiogan-cfg values

def parse_int_list(text):
    try:
        values = [int(v) for v in str(text).split(',') if v.strip()]
    except ValueError:
        raise click.BadParameter(f'expected comma-separated integers, got {text!r}') from None
    if not values or min(values) < 1:
        raise click.BadParameter(f'expected positive integers, got {text!r}')
    return values

def common(batch=256):
    """--outdir, --seed, --device, --threads, --batch (default `batch`) and --studiogan-cfg on every subcommand."""
    def decorate(fn):
        @click.option('--studiogan-cfg', 'studiogan_cfg', multiple=True, metavar='YAML',
                      help='StudioGAN runs: the YAML a checkpoint folder was trained with (RTM_STUDIOGAN_DIR: the '
                           'checkout); repeat it for runs of both mappers')
        @click.option('--outdir', default='analysis', show_default=True, help='Where the files are written')
        @click.option('--seed', type=int, default=0, show_default=True, help='Latent seed')
        @click.option('--device', default='cpu', show_default=True, help='torch device')
        @click.option('--threads', type=click.IntRange(min=1), help='torch CPU threads [torch default]')
        @click.option('--batch', type=click.IntRange(min=1), default=batch, show_default=True, help='Batch size')
        @functools.wraps(fn)
        def wrapper(*args, threads=None, studiogan_cfg=(), **kwargs):
            if threads:
                torch.set_num_threads(threads)
            click.get_current_context().meta[STUDIOGAN_CFG] = studiogan_cfg    # read by open_view
            return fn(*args, **kwargs)
        return wrapper
    return decorate

def open_view(path, device, label=None):
    """(Network, GeneratorView) for a snapshot / run folder / NVlabs pickle / StudioGAN checkpoint folder (with
    --studiogan-cfg); errors as click errors."""
    from rtm_plugin.analysis.loader import load_network
    from rtm_plugin.analysis.studiogan_loader import is_studiogan_run
    from rtm_plugin.analysis.view import GeneratorView
    ctx = click.get_current_context(silent=True)
    studiogan_cfg = (ctx.meta.get(STUDIOGAN_CFG) if ctx else None) or None
    studiogan = is_studiogan_run(path)
    if studiogan and not studiogan_cfg:
        raise click.UsageError(f'{path} is a StudioGAN run: pass --studiogan-cfg with the YAML it was trained with')
    try:
        net = load_network(path, device, studiogan_cfg=studiogan_cfg if studiogan else None)
        return net, GeneratorView(net.G, label)
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e))

def echo_written(paths):
    for p in paths:
        if p:
            click.echo(f'wrote {p}')

"""rtm-summary: build a mapper from command-line options and print what it is and what it costs."""

import time

import click
import torch

from rtm_plugin import __version__
from rtm_plugin.mapping import build_mapping
from rtm_plugin.memory import saved_tensors

def count_parameters(module):
    return sum(p.numel() for p in module.parameters())

@click.command(context_settings=dict(help_option_names=['-h', '--help']))
@click.version_option(__version__)
@click.option('--map', 'map_name', type=click.Choice(['rtm', 'mlp']), default='rtm', show_default=True)
@click.option('--z-dim', type=click.IntRange(min=0), default=512, show_default=True)
@click.option('--c-dim', type=click.IntRange(min=0), default=0, show_default=True)
@click.option('--w-dim', type=click.IntRange(min=1), default=512, show_default=True)
@click.option('--num-ws', type=click.IntRange(min=1), default=14, show_default=True)
@click.option('--rtm-h', type=click.IntRange(min=1), default=16, show_default=True)
@click.option('--rtm-l', type=click.IntRange(min=1), default=1, show_default=True)
@click.option('--rtm-tokens', type=click.IntRange(min=1), default=4, show_default=True)
@click.option('--rtm-dim', type=click.IntRange(min=1), default=128, show_default=True)
@click.option('--rtm-block', type=click.Choice(['mlp', 'attention']), default='mlp', show_default=True)
@click.option('--mlp-layers', type=click.IntRange(min=1), default=8, show_default=True)
@click.option('--batch', type=click.IntRange(min=1), default=64, show_default=True)
@click.option('--seed', type=int, default=0, show_default=True)
def main(map_name, z_dim, c_dim, w_dim, num_ws, rtm_h, rtm_l, rtm_tokens, rtm_dim, rtm_block, mlp_layers, batch, seed):
    """Print a mapper's structure, parameter count, output shape, forward time and saved activations (CPU)."""
    torch.manual_seed(seed)
    kwargs = dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=num_ws)
    if map_name == 'rtm':
        kwargs.update(H=rtm_h, L=rtm_l, tokens=rtm_tokens, token_dim=rtm_dim, block=rtm_block)
    else:
        kwargs.update(num_layers=mlp_layers)
    try:
        mapper = build_mapping(map_name, **kwargs)
    except ValueError as e:
        raise click.UsageError(str(e))
    z = torch.randn(batch, z_dim)
    c = torch.nn.functional.one_hot(torch.randint(c_dim, [batch]), c_dim).float() if c_dim else None

    print(mapper)
    print(f'parameters: {count_parameters(mapper):,}')
    w, count, nbytes = saved_tensors(mapper, z, c)
    print(f'output: {list(w.shape)} {w.dtype}, contiguous={w.is_contiguous()}')
    print(f'saved for backward: {count} tensors, {nbytes / 2**20:.2f} MiB at batch {batch}')
    with torch.no_grad():
        mapper(z, c)
        t0 = time.perf_counter()
        for _ in range(5):
            mapper(z, c)
        dt = (time.perf_counter() - t0) / 5
    print(f'forward (no grad, CPU, {torch.get_num_threads()} threads): {dt * 1e3:.2f} ms per batch, '
          f'{dt / batch * 1e6:.1f} us per sample')

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter

"""What the patched scripts of NVlabs' stylegan2-ada-pytorch and stylegan3 call: train.py's --map and --rtm-*
options, --resume across mapper kinds, and --rtm-steps in the generation scripts and calc_metrics.py.

Only the patched scripts import this module; it is never pickled, so it may use rtm_plugin freely.
"""

import click
import torch

from rtm_plugin import rtm
from rtm_plugin.mapping import mapper_kind
from rtm_plugin.integrations import trunk_options
from rtm_plugin.integrations.trunk_options import STYLEGAN_KEYS, to_trunk_kwargs

# What the patched train.py's click options read: --rtm-block's choices, and the defaults its --rtm-* help shows.
BLOCK_TYPES, DEFAULTS = rtm.BLOCK_TYPES, trunk_options.DEFAULTS

def _flag(option):
    return '--' + option.replace('_', '-')

def train_options(opts):
    """The values of --map, --map-depth and the --rtm-* options in stylegan3's train.py (its `opts`)."""
    return {name: opts[name] for name in ('map', 'map_depth', *STYLEGAN_KEYS)}

def configure_mapping(mapping_kwargs, map=None, map_depth=None, **options):  # pylint: disable=redefined-builtin
    """Fill G's mapping_kwargs from --map and the --rtm-* values (None = not given); return the run-name suffix.

    --map=mlp (or no --map) leaves upstream's settings and run name exactly as they were. map_depth: stylegan3's
    --map-depth, the MLP's depth, which an RTM mapper does not have.
    """
    unknown = set(options) - set(STYLEGAN_KEYS)
    if unknown:
        raise TypeError(f'unknown RTM options: {sorted(unknown)}')
    given = {name: value for name, value in options.items() if value is not None}
    if map in (None, 'mlp'):
        if given:
            raise ValueError(f'{", ".join(_flag(n) for n in given)}: RTM options, but the mapper is mlp; '
                             f'add --map=rtm (or drop them)')
        return ''
    if map != 'rtm':
        raise ValueError(f'--map must be mlp or rtm, got {map!r}')
    if map_depth is not None:
        raise ValueError('--map-depth is the depth of the MLP mapper; the RTM mapper\'s is set by --rtm-h (outer steps) '
                         'and --rtm-l (inner cycles)')
    trunk = to_trunk_kwargs(given, STYLEGAN_KEYS, _flag, 'RTM options')

    mapping_kwargs.pop('num_layers', None)          # the MLP's depth; RTM's depth is H x L
    mapping_kwargs.update(map='rtm', **trunk)
    suffix = f'-rtm-h{trunk["H"]}l{trunk["L"]}-t{trunk["tokens"]}x{trunk["token_dim"]}'
    return suffix + ('' if trunk['block'] == 'mlp' else f'-{trunk["block"]}')

def describe_mapping(mapping_kwargs):
    """One line for train.py's summary."""
    if mapping_kwargs.get('map') == 'rtm':
        return 'rtm (' + ', '.join(f'{key}={mapping_kwargs[key]}' for key in STYLEGAN_KEYS.values()) + ')'
    layers = mapping_kwargs.get('num_layers')
    return 'mlp' + (f' ({layers} layers)' if layers is not None else '')

#----------------------------------------------------------------------------
# --resume

def _describe(mapping):
    tensors = sum(t.numel() for t in list(mapping.parameters()) + list(mapping.buffers()))
    return f'{mapper_kind(mapping)} ({type(mapping).__name__}, {tensors:,} values)'

def mappers_match(src, dst):
    """Same kind, and every tensor name they share has the same shape (else copying by name breaks or broadcasts)."""
    if mapper_kind(src) != mapper_kind(dst):
        return False
    src_shapes = {name: t.shape for name, t in list(src.named_parameters()) + list(src.named_buffers())}
    return all(src_shapes.get(name, t.shape) == t.shape
               for name, t in list(dst.named_parameters()) + list(dst.named_buffers()))

def without_child(module, child):
    """A view of `module` without one child: its other tensors keep their names, so copying by name skips `child`."""
    view = torch.nn.Module()
    for name, sub in module.named_children():
        if name != child:
            view.add_module(name, sub)
    for name, tensor in module.named_parameters(recurse=False):
        view.register_parameter(name, tensor)
    for name, tensor in module.named_buffers(recurse=False):
        view.register_buffer(name, tensor)
    return view

def keep_compatible_mapper(resume_data, G, log=print):
    """Called by the patched training loop before it copies the resume pickle into G, D and G_ema by name.

    When the pickle's mapper is of another kind (an MLP pickle resumed with --map=rtm, or back) or has other
    shapes, G and G_ema keep every other tensor of the pickle and start a fresh mapping network.
    """
    src = resume_data.get('G')
    if src is None or not hasattr(src, 'mapping') or mappers_match(src.mapping, G.mapping):
        return False
    log(f'Resume: the pickle\'s mapping network is {_describe(src.mapping)}, this run\'s is {_describe(G.mapping)}. '
        f'Keeping the synthesis network and D from the pickle; G.mapping and G_ema.mapping start fresh.')
    for name in ('G', 'G_ema'):
        if resume_data.get(name) is not None:
            resume_data[name] = without_child(resume_data[name], 'mapping')
    return True

#----------------------------------------------------------------------------
# --rtm-steps

def set_rtm_steps(G, H):
    """--rtm-steps: the RTM mapper's outer steps H at inference, for every later call (None = as trained)."""
    if H is None:
        return
    if mapper_kind(G.mapping) != 'rtm':
        raise click.BadParameter(f'this network\'s mapper is {_describe(G.mapping)}; --rtm-steps needs an RTM '
                                 f'mapper (trained with --map=rtm)', param_hint='--rtm-steps')
    try:
        G.mapping.trunk.H = rtm.check_positive_int('H', H)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint='--rtm-steps') from None

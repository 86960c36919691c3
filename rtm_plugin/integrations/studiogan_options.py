"""What the patched StudioGAN calls for its YAML: STYLEGAN.mapping_type and the RTM keys, checked at start-up
(config.py's check_compatability) and applied where model.py builds G, before the EMA copy and DDP.

Imports nothing from StudioGAN at module level (config.py imports it early); the mapper class is imported when
an RTM mapper is built.
"""

import torch

from rtm_plugin.integrations.trunk_options import STUDIOGAN_KEYS, to_trunk_kwargs

MAPPING_TYPES = ('mlp', 'rtm')      # the values of STYLEGAN.mapping_type
UNSET = 'N/A'                       # an RTM key's default in the patched config.py: the RTM's own default

def mapping_type(STYLEGAN):  # pylint: disable=invalid-name
    return getattr(STYLEGAN, 'mapping_type', 'mlp')

def trunk_kwargs(STYLEGAN):  # pylint: disable=invalid-name
    """The RecursiveTokenMapper arguments the YAML sets, RTM defaults for the rest; ValueError naming the key."""
    given = {key: getattr(STYLEGAN, key, UNSET) for key in STUDIOGAN_KEYS}
    given = {key: value for key, value in given.items() if value != UNSET}
    return to_trunk_kwargs(given, STUDIOGAN_KEYS, lambda key: f'STYLEGAN.{key}', 'STYLEGAN RTM keys')

def check_config(MODEL, STYLEGAN):  # pylint: disable=invalid-name
    """At start-up: a known mapper, RTM keys only with the RTM mapper, and only on the stylegan2 backbone."""
    kind = mapping_type(STYLEGAN)
    if kind not in MAPPING_TYPES:
        raise ValueError(f'STYLEGAN.mapping_type must be "mlp" (StyleGAN\'s mapping network) or "rtm" (Recursive '
                         f'Token Mapper), got {kind!r}')
    if kind == 'mlp':
        stray = [key for key in STUDIOGAN_KEYS if getattr(STYLEGAN, key, UNSET) != UNSET]
        if stray:
            raise ValueError(f'STYLEGAN.{", STYLEGAN.".join(stray)}: RTM settings, but STYLEGAN.mapping_type is '
                             f'"mlp"; set mapping_type: "rtm" (or drop them)')
        return
    if MODEL.backbone != 'stylegan2':
        raise ValueError(f'STYLEGAN.mapping_type "rtm" needs MODEL.backbone "stylegan2", got {MODEL.backbone!r}')
    trunk_kwargs(STYLEGAN)

def describe(STYLEGAN):  # pylint: disable=invalid-name
    """One line for the log."""
    if mapping_type(STYLEGAN) == 'rtm':
        kwargs = trunk_kwargs(STYLEGAN)
        return ('rtm (' + ', '.join(f'{key}={kwargs[name]}' for key, name in STUDIOGAN_KEYS.items()) +
                f'; STYLEGAN.mapping_network={STYLEGAN.mapping_network} is not used)')
    return f'mlp ({STYLEGAN.mapping_network} layers)'

def share_buffers_from_rank0(module):
    """Every rank gets rank 0's buffers (the RTM's fixed carries H_init/L_init). StudioGAN seeds each rank
    differently and wraps G.mapping in DDP with broadcast_buffers=False, which syncs the parameters at start but
    not the buffers: without this, each rank's mapper would start its recursion from other carries."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for buffer in module.buffers():
            torch.distributed.broadcast(buffer, src=0)

def install_mapper(Gen, MODEL, STYLEGAN, logger=None):  # pylint: disable=invalid-name
    """model.py, right after G is built: with mapping_type "rtm", G.mapping becomes an RTMMappingNetwork of the
    same z_dim, c_dim, w_dim and num_ws, on the same device. Before the EMA copy, so G_ema gets one too."""
    check_config(MODEL, STYLEGAN)
    if mapping_type(STYLEGAN) == 'rtm':
        from rtm_plugin.integrations.studiogan import RTMMappingNetwork  # pylint: disable=import-outside-toplevel
        old = Gen.mapping
        device = next(old.parameters()).device
        Gen.mapping = RTMMappingNetwork(z_dim=old.z_dim, c_dim=old.c_dim, w_dim=old.w_dim, num_ws=old.num_ws,
                                        **trunk_kwargs(STYLEGAN)).to(device)
        share_buffers_from_rank0(Gen.mapping)
    if logger is not None:
        logger.info(f'Mapping network: {describe(STYLEGAN)}.')
    return Gen

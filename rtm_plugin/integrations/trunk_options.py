"""The RTM mapper's settings as each upstream's users spell them, mapped to the trunk's own argument names
(RecursiveTokenMapper: H, L, tokens, token_dim, block), and their one check.

    StyleGAN (stylegan2-ada-pytorch, stylegan3)   train.py --rtm-h, --rtm-l, --rtm-tokens, --rtm-dim, --rtm-block
    StudioGAN                                     YAML STYLEGAN.rtm_h, rtm_l, rtm_tokens, rtm_token_dim, rtm_block

The user-facing names stay as documented (README); everything past this table uses the trunk's names.
"""

import inspect

import torch

from rtm_plugin import rtm

STYLEGAN_KEYS = {'rtm_h': 'H', 'rtm_l': 'L', 'rtm_tokens': 'tokens', 'rtm_dim': 'token_dim', 'rtm_block': 'block'}
STUDIOGAN_KEYS = {'rtm_h': 'H', 'rtm_l': 'L', 'rtm_tokens': 'tokens', 'rtm_token_dim': 'token_dim',
                  'rtm_block': 'block'}
DEFAULTS = {name: p.default for name, p in inspect.signature(rtm.RecursiveTokenMapper).parameters.items()
            if name in STYLEGAN_KEYS.values()}

def to_trunk_kwargs(given, keys, spell, what):
    """given {user key: value} (only the keys set) -> RecursiveTokenMapper keywords, the defaults for the rest.
    keys: the upstream's table; spell(key): the key as the user wrote it; what: the error prefix of the cross-key
    checks. A ValueError names the key."""
    for key, value in given.items():
        if keys[key] == 'block':
            if value not in rtm.BLOCK_TYPES:
                raise ValueError(f'{spell(key)} must be one of {", ".join(rtm.BLOCK_TYPES)}, got {value!r}')
        else:
            rtm.check_positive_int(spell(key), value)
    kwargs = {**DEFAULTS, **{keys[key]: value for key, value in given.items()}}
    try:
        with torch.random.fork_rng(devices=[]):         # the trial build must not move the run's seeded RNG
            rtm.RecursiveTokenMapper(1, 1, **kwargs)    # the cross-key checks, e.g. attention heads | token width
    except ValueError as err:
        raise ValueError(f'{what}: {err}') from None
    return kwargs

"""What the patched src/utils/ckpt.py calls before its strict load_state_dict: one clear message when a
checkpoint's mapping network is not the one the YAML builds (an RTM checkpoint with a baseline YAML, or the
reverse), instead of PyTorch's list of every missing and unexpected key.

Only the mapper is compared, from the tensor names and shapes under `mapping.`; any other difference is left to
load_state_dict. StudioGAN's discriminator has an MLP `mapping` too (conditional D); it matches itself.
"""

import re

PREFIX = 'mapping.'

class MapperMismatchError(RuntimeError):
    """The checkpoint's mapping network and the YAML's differ."""

def describe_mapper(state_dict, prefix=PREFIX):
    """('rtm' | 'mlp', 'an RTM mapping network (tokens=4, token_dim=128, block=mlp)'), or None without a mapper."""
    if prefix + 'trunk.lift.weight' in state_dict:
        token_dim = state_dict[prefix + 'trunk.H_init'].shape[0]
        tokens = state_dict[prefix + 'trunk.lift.weight'].shape[0] // token_dim
        block = 'attention' if prefix + 'trunk.block.qkv.weight' in state_dict else 'mlp'
        return 'rtm', f'an RTM mapping network (tokens={tokens}, token_dim={token_dim}, block={block})'
    layers = {m.group(1) for m in (re.match(re.escape(prefix) + r'fc(\d+)\.', key) for key in state_dict) if m}
    if layers:
        return 'mlp', f'an MLP mapping network ({len(layers)} layers)'
    return None

ADVICE = {
    ('rtm', 'mlp'): 'Load it with the YAML it was trained with, which sets STYLEGAN.mapping_type: "rtm" (the '
                    '*-RTM.yaml configs that rtm-patch writes, e.g. src/configs/CIFAR10/StyleGAN2-RTM.yaml).',
    ('mlp', 'rtm'): 'This YAML sets STYLEGAN.mapping_type: "rtm"; load the checkpoint with the baseline YAML it '
                    'was trained with (mapping_type "mlp", the default).',
    ('rtm', 'rtm'): 'Set STYLEGAN.rtm_tokens, rtm_token_dim and rtm_block as in training (rtm_h and rtm_l may '
                    'differ: they do not change the weights).',
    ('mlp', 'mlp'): 'Set STYLEGAN.mapping_network to the number of layers it was trained with.',
}

def check_mapper(model, state_dict, ckpt_path):
    """MapperMismatchError naming both mappers and the YAML keys to fix, when they differ; else nothing."""
    model = getattr(model, 'module', model)             # DataParallel / DDP
    ours = describe_mapper(model.state_dict())
    theirs = describe_mapper(state_dict)
    if ours is None or theirs is None or ours == theirs:
        return
    raise MapperMismatchError(f'{ckpt_path} holds {theirs[1]}, but this YAML builds {ours[1]}. '
                              f'{ADVICE[theirs[0], ours[0]]}')

"""StudioGAN runs in the analysis tools: the EMA generator of a checkpoint folder (src/main.py -save DIR writes
DIR/checkpoints/<run>/model=G_ema-{best,current}-weights-step=N.pth), built from the YAML the run was trained with.

StudioGAN keeps state dicts, not pickles, so the generator is rebuilt by the checkout named by RTM_STUDIOGAN_DIR
(patched by rtm-patch: the RTM YAMLs need it), as its own evaluation does: config.Configurations(YAML), then
models.model.load_generator_discriminator, then the checkpoint's weights, strictly. Several YAMLs may be given
(say the RTM run's and its baseline's, for the tools that compare two runs): each folder takes the one whose
mapper (mlp or rtm) its checkpoint holds.
"""

import glob
import logging
import os
import re
import sys

import torch

from rtm_plugin.integrations.studiogan_checkpoints import describe_mapper
from rtm_plugin.integrations.studiogan_options import mapping_type

CHECKPOINT = re.compile(r'model=(G_ema|G)-(best|current)-weights-step=(\d+)\.pth$')

def is_studiogan_run(path):
    return os.path.isdir(path) and bool(checkpoints(path))

def checkpoints(folder):
    """[(model, when, step, path)] of the generator checkpoints in a run's folder."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(folder), 'model=G*-weights-step=*.pth')):
        m = CHECKPOINT.search(os.path.basename(path))
        if m:
            found.append((m.group(1), m.group(2), int(m.group(3)), path))
    return found

def generator_checkpoint(folder):
    """(model, path): G_ema (G when the run kept no EMA) of the best checkpoint, else of the latest one."""
    found = checkpoints(folder)
    if not found:
        raise ValueError(f'{folder}: no StudioGAN checkpoint here (model=G_ema-best-weights-step=N.pth or '
                         f'model=G_ema-current-weights-step=N.pth); pass the run\'s checkpoints/<run> folder')
    rank = lambda entry: (entry[0] == 'G_ema', entry[1] == 'best', entry[2])
    model, _, _, path = max(found, key=rank)
    return model, path

def studiogan_src():
    """StudioGAN's src/ (config, models, utils) from RTM_STUDIOGAN_DIR, on sys.path."""
    checkout = os.environ.get('RTM_STUDIOGAN_DIR')
    if not checkout:
        raise ValueError('a StudioGAN run: set RTM_STUDIOGAN_DIR to a PyTorch-StudioGAN checkout (patched by '
                         'rtm-patch for RTM runs) to build its generator')
    src = os.path.join(checkout, 'src')
    if not os.path.isfile(os.path.join(src, 'config.py')):
        raise ValueError(f'RTM_STUDIOGAN_DIR={checkout} is not a PyTorch-StudioGAN checkout (no src/config.py)')
    if src not in sys.path:
        sys.path.insert(0, src)
    return src

def read_config(cfg_path):
    import config  # pylint: disable=import-outside-toplevel,import-error
    if not os.path.isfile(cfg_path):
        raise ValueError(f'--studiogan-cfg {cfg_path}: no such file')
    cfgs = config.Configurations(cfg_path)
    cfgs.RUN.mixed_precision = False        # evaluation in float32, on any device
    return cfgs

def configured_mapper_kind(cfgs):
    """The mapper the YAML builds ('rtm' or 'mlp'), None for a backbone without one."""
    return mapping_type(cfgs.STYLEGAN) if cfgs.MODEL.backbone.startswith('stylegan') else None

def pick_config(ckpt_path, state_dict, cfg_paths):
    """The one YAML of cfg_paths whose mapper kind the checkpoint holds (the only one, when one is given)."""
    configs = [(path, read_config(path)) for path in cfg_paths]
    if len(configs) == 1:
        return configs[0]
    held = describe_mapper(state_dict)
    fits = [(path, cfgs) for path, cfgs in configs if held is not None and configured_mapper_kind(cfgs) == held[0]]
    if len(fits) != 1:
        raise ValueError(f'{ckpt_path} holds {held[1] if held else "no mapping network"}: give exactly one '
                         f'--studiogan-cfg for it (of {", ".join(cfg_paths)}, {len(fits)} build that mapper)')
    return fits[0]

def load_studiogan(folder, cfg_paths, device='cpu'):
    """The Network (rtm_plugin.analysis.loader) of a StudioGAN run: its EMA generator on `device`."""
    from rtm_plugin.analysis.loader import Network  # pylint: disable=import-outside-toplevel
    from rtm_plugin.integrations.studiogan_checkpoints import MapperMismatchError, check_mapper  # pylint: disable=import-outside-toplevel
    cfg_paths = [cfg_paths] if isinstance(cfg_paths, str) else list(cfg_paths)
    studiogan_src()
    which, ckpt_path = generator_checkpoint(folder)
    state_dict = torch.load(ckpt_path, map_location='cpu', weights_only=True)['state_dict']
    cfg_path, cfgs = pick_config(ckpt_path, state_dict, cfg_paths)
    from models import model  # pylint: disable=import-outside-toplevel,import-error
    with torch.random.fork_rng(devices=[]):             # the build's random init is overwritten; keep the seed
        built = model.load_generator_discriminator(cfgs.DATA, cfgs.OPTIMIZATION, cfgs.MODEL, cfgs.STYLEGAN,
                                                   cfgs.MODULES, cfgs.RUN, 'cpu', logging.getLogger('rtm-analyze'))
    G = built[4] if which == 'G_ema' else built[0]      # (Gen, ..., Dis, Gen_ema, ...): None without EMA
    if G is None or not hasattr(G, 'mapping') or not hasattr(G, 'synthesis'):
        raise ValueError(f'{cfg_path}: MODEL.backbone {cfgs.MODEL.backbone!r} has no StyleGAN generator (mapping '
                         f'and synthesis networks) for the analysis tools')
    try:
        check_mapper(G, state_dict, ckpt_path)          # one clear message when the YAML builds another mapper
    except MapperMismatchError as err:
        raise ValueError(f'{err} (--studiogan-cfg {cfg_path})') from None
    G.load_state_dict(state_dict, strict=True)
    return Network(G=G.to(device).eval().requires_grad_(False), path=ckpt_path, training_set_kwargs={})

"""One loader for every generator the analysis tools accept: an RS-IMLE snapshot (rtm-imle's
network-snapshot-*.pkl, or its run folder: the latest snapshot), a network pickle of NVlabs' stylegan2-ada-pytorch
or stylegan3, and a StudioGAN checkpoint folder (with its YAML; rtm_plugin/analysis/studiogan_loader.py).

The pickles are dicts with the EMA generator under 'G_ema'. RS-IMLE snapshots pickle rtm_plugin's classes by
reference and load with plain pickle. NVlabs pickles need the checkout of the tree that wrote them importable
(dnnlib, torch_utils, training): set RTM_SG2ADA_DIR or RTM_SG3_DIR to it and they load through its
legacy.load_network_pkl, as its generation scripts do. The two trees' packages share names, so one process loads
the pickles of one tree.
"""

import os
import pickle
import pickletools
import sys
from dataclasses import dataclass

import numpy as np

from rtm_plugin.snapshots import load_snapshot, resolve_snapshot

UPSTREAM_MODULES = ('dnnlib', 'torch_utils', 'training', 'legacy')

@dataclass
class Network:
    G: object                       # the EMA generator, eval mode, no grad
    path: str
    training_set_kwargs: dict       # {} when the pickle has none

# NVlabs tree -> the variable naming its checkout.
NVLABS_CHECKOUTS = {'stylegan2-ada-pytorch': 'RTM_SG2ADA_DIR', 'stylegan3': 'RTM_SG3_DIR'}

def nvlabs_tree(path):
    """The tree that wrote a StyleGAN pickle, from the Generator source it embeds (read, not run): stylegan3's
    Generators take update_emas, stylegan2-ada-pytorch's do not. A pickle without one counts as stylegan2-ada."""
    with open(path, 'rb') as f:
        for _, arg, _ in pickletools.genops(f):
            if isinstance(arg, str) and 'class Generator(' in arg:
                return 'stylegan3' if 'update_emas' in arg else 'stylegan2-ada-pytorch'
    return 'stylegan2-ada-pytorch'

def load_nvlabs_pickle(path):
    """A stylegan2-ada-pytorch or stylegan3 pickle through the checkout of its tree (added to sys.path)."""
    tree = nvlabs_tree(path)
    variable = NVLABS_CHECKOUTS[tree]
    upstream = os.environ.get(variable)
    if not upstream:
        raise ValueError(f'{path} is a {tree} pickle: set {variable} to a {tree} checkout (patched or not) to load it')
    loaded = sys.modules.get('legacy')
    if loaded is not None and os.path.dirname(os.path.realpath(loaded.__file__)) != os.path.realpath(upstream):
        raise ValueError(f'{path} is a {tree} pickle, but this process loaded pickles through '
                         f'{os.path.dirname(loaded.__file__)} already: the two trees\' packages share names, so '
                         f'analyse their pickles in separate runs')
    if upstream not in sys.path:
        sys.path.insert(0, upstream)
    import legacy                   # pylint: disable=import-outside-toplevel,import-error
    with open(path, 'rb') as f:
        return legacy.load_network_pkl(f)

def load_network(path, device='cpu', studiogan_cfg=None):
    """The Network at `path` (a .pkl or an rtm-imle run folder; with studiogan_cfg, a StudioGAN checkpoint
    folder), its generator on `device`."""
    if studiogan_cfg is not None:
        from rtm_plugin.analysis.studiogan_loader import load_studiogan  # pylint: disable=import-outside-toplevel
        return load_studiogan(path, studiogan_cfg, device)
    path = resolve_snapshot(path)
    try:
        data = load_snapshot(path)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split('.')[0] not in UPSTREAM_MODULES:
            raise
        data = load_nvlabs_pickle(path)
    except pickle.UnpicklingError as e:
        raise ValueError(f'{path}: not a network pickle ({e})') from None
    if not isinstance(data, dict) or data.get('G_ema') is None:
        raise ValueError(f'{path}: no G_ema in this pickle')
    G = data['G_ema'].to(device).eval().requires_grad_(False)
    return Network(G=G, path=path, training_set_kwargs=dict(data.get('training_set_kwargs') or {}))

def is_stacked_digits(net):
    return net.training_set_kwargs.get('name') == 'stacked_digits'

def real_images(net, real=None, num=10000):
    """uint8 [N, 3, R, R] reals for the metrics: `real` (folder, zip or .npy) when given, else the training set
    the snapshot names. Stacked Digits: a fresh draw with seed + 1, the reals rtm-imle's final metrics use."""
    if real is not None:
        from rtm_plugin.metrics.image_files import read_images
        return np.asarray(read_images(real, num))
    tsk = net.training_set_kwargs
    if is_stacked_digits(net):
        from rtm_plugin.datasets.stacked_digits import make_stacked_digits
        return make_stacked_digits(num, int(tsk['resolution']), seed=int(tsk.get('seed', 0)) + 1)[0]
    data = tsk.get('path')
    if data and os.path.exists(data):
        from rtm_plugin.image_reader import load_images
        return load_images(data, int(tsk['resolution']) if tsk.get('resolution') else None, max_images=num).images
    raise ValueError(f'{net.path}: its training set ({tsk or "not recorded"}) is not available here; pass --real')

def default_detector(net, detector=None):
    """The given detector, else 'digits' for Stacked-Digits runs."""
    if detector is not None:
        return detector
    if is_stacked_digits(net):
        return 'digits'
    raise ValueError(f'{net.path} was not trained on Stacked Digits: pass --detector (inception, vgg16 or a path)')

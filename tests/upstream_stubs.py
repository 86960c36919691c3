"""Stand-ins for the upstream modules our mapper subclasses import, so the default suite covers them without a
checkout: `torch_utils.persistence` / `torch_utils.misc` and the MappingNetwork base classes of
stylegan2-ada-pytorch (training/networks.py), stylegan3 (training/networks_stylegan2.py, networks_stylegan3.py)
and StudioGAN (src/models/stylegan2.py). Written from their constructors' contracts (arguments, defaults and the
attributes our subclasses read: z_dim, c_dim, w_dim, num_ws, num_layers, w_avg_beta, embed, fc{i}, w_avg); no
upstream code. `install(monkeypatch, tree)` puts one tree's modules into sys.modules (monkeypatch restores them).
"""

import importlib
import importlib.machinery
import importlib.util
import sys
import types

import torch

from rtm_plugin.rtm import EqualizedLinear

class FullyConnectedLayer(EqualizedLinear):
    """Upstream's equalised-lr FC layer: the same parameters (weight, bias) and gains; 'lrelu' as upstream's bias_act."""

    def __init__(self, in_features, out_features, bias=True, activation='linear', lr_multiplier=1, bias_init=0):
        super().__init__(in_features, out_features, bias=bias, lr_multiplier=lr_multiplier, bias_init=bias_init)
        self.activation = activation

    def forward(self, x):
        x = super().forward(x)
        return torch.nn.functional.leaky_relu(x, 0.2) * 2 ** 0.5 if self.activation == 'lrelu' else x

class StyleGAN2MappingNetwork(torch.nn.Module):
    """stylegan2-ada-pytorch's and stylegan3's StyleGAN2 MappingNetwork: embed only when c_dim > 0, fc0..fcN-1,
    w_avg only when num_ws and w_avg_beta are not None. w_avg_beta: 0.995 in stylegan2-ada-pytorch (0.998 in
    stylegan3 and StudioGAN, below)."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, embed_features=None, layer_features=None,
                 activation='lrelu', lr_multiplier=0.01, w_avg_beta=0.995):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        embed_features = 0 if c_dim == 0 else (w_dim if embed_features is None else embed_features)
        layer_features = w_dim if layer_features is None else layer_features
        dims = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for i in range(num_layers):
            setattr(self, f'fc{i}', FullyConnectedLayer(dims[i], dims[i + 1], activation=activation,
                                                        lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer('w_avg', torch.zeros([w_dim]))

class StyleGAN2MappingNetwork998(StyleGAN2MappingNetwork):
    """stylegan3's training/networks_stylegan2.py and StudioGAN's src/models/stylegan2.py MappingNetwork: the same
    layout, w_avg_beta 0.998 by default."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, embed_features=None, layer_features=None,
                 activation='lrelu', lr_multiplier=0.01, w_avg_beta=0.998):
        super().__init__(z_dim, c_dim, w_dim, num_ws, num_layers, embed_features, layer_features, activation,
                         lr_multiplier, w_avg_beta)

class AliasFreeMappingNetwork(torch.nn.Module):
    """stylegan3's networks_stylegan3.MappingNetwork: embed at w_dim (None when c_dim == 0), w_avg always."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=2, lr_multiplier=0.01, w_avg_beta=0.998):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        self.embed = FullyConnectedLayer(c_dim, w_dim) if c_dim > 0 else None
        dims = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(self, f'fc{i}', FullyConnectedLayer(dims[i], dims[i + 1], activation='lrelu',
                                                        lr_multiplier=lr_multiplier))
        self.register_buffer('w_avg', torch.zeros([w_dim]))

def assert_shape(tensor, ref_shape):
    assert tensor.ndim == len(ref_shape), f'Wrong number of dimensions: got {tensor.ndim}, expected {len(ref_shape)}'
    for size, ref in zip(tensor.shape, ref_shape):
        assert ref is None or size == ref, f'Wrong size: got {size}, expected {ref}'

def module(name, **attributes):
    mod = types.ModuleType(name)
    mod.__dict__.update(attributes)
    return mod

TREES = ('stylegan2-ada-pytorch', 'stylegan3', 'studiogan')
STUB_MODULES = {'torch_utils', 'torch_utils.persistence', 'torch_utils.misc', 'training', 'training.networks',
                'training.networks_stylegan2', 'training.networks_stylegan3', 'models', 'models.stylegan2'}
OURS = ('rtm_plugin.integrations.stylegan_mapper', 'rtm_plugin.integrations.studiogan')

def install(monkeypatch, tree):
    """Put `tree`'s stub modules into sys.modules and import our subclass module against them: returns it
    (stylegan_mapper for the NVlabs trees, studiogan for StudioGAN)."""
    persistence = module('torch_utils.persistence', persistent_class=lambda cls: cls)
    misc = module('torch_utils.misc', assert_shape=assert_shape)
    mods = {'torch_utils': module('torch_utils', persistence=persistence, misc=misc),
            'torch_utils.persistence': persistence, 'torch_utils.misc': misc}
    if tree == 'stylegan2-ada-pytorch':
        networks = module('training.networks', MappingNetwork=StyleGAN2MappingNetwork)
        mods.update({'training': module('training', networks=networks), 'training.networks': networks})
    elif tree == 'stylegan3':
        sg2 = module('training.networks_stylegan2', MappingNetwork=StyleGAN2MappingNetwork998)
        sg3 = module('training.networks_stylegan3', MappingNetwork=AliasFreeMappingNetwork)
        mods.update({'training': module('training', networks_stylegan2=sg2, networks_stylegan3=sg3),
                     'training.networks_stylegan2': sg2, 'training.networks_stylegan3': sg3})
    else:
        stylegan2 = module('models.stylegan2', MappingNetwork=StyleGAN2MappingNetwork998)
        mods.update({'models': module('models', stylegan2=stylegan2), 'models.stylegan2': stylegan2})
    for name in STUB_MODULES - mods.keys():        # another tree's stubs: `from training import x` would find them
        monkeypatch.delitem(sys.modules, name, raising=False)
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    import rtm_plugin.integrations as package  # pylint: disable=import-outside-toplevel
    for name in OURS:                               # imported afresh against these stubs, restored afterwards
        monkeypatch.delitem(sys.modules, name, raising=False)
        monkeypatch.setattr(package, name.rsplit('.', 1)[1], None, raising=False)
    return importlib.import_module(OURS[tree == 'studiogan'])

def load_source(monkeypatch, name, path):
    """The module in the file `path`, imported under `name` (e.g. an older version of one of ours, kept as data)."""
    path = str(path)        # kept as .py.txt: data, not code of this repository (no lint, no duplicate counts)
    spec = importlib.util.spec_from_file_location(name, path, loader=importlib.machinery.SourceFileLoader(name, path))
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, mod)
    spec.loader.exec_module(mod)
    return mod

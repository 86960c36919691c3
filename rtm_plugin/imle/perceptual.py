"""The RS-IMLE reconstruction loss: lpips_coef * perceptual + l2_coef * MSE (officially 1.0 LPIPS-VGG + 0.1 MSE).

LPIPS v0.1 (Zhang et al. 2018) with a VGG16 backbone defined here in torchvision's state-dict layout
(`features.<i>.weight`), because PyPI's torchvision does not import beside CPU torch 2.13. Weights are read
from files, never downloaded:
  - VGG16: torchvision's `vgg16-397923af.pth` (ImageNet), `--lpips-vgg` / $RTM_LPIPS_VGG, else
    <torch hub dir>/checkpoints/vgg16-397923af.pth, else ~/.cache/rtm_plugin/lpips/vgg16-397923af.pth;
  - the linear heads: the lpips package's `weights/v0.1/vgg.pth` (`lin<k>.model.1.weight`, [1, C, 1, 1]),
    `--lpips-lin` / $RTM_LPIPS_LIN, else an installed `lpips` package's copy, else the same cache dir.

Without them, `MultiScaleGradientLoss` stands in, announced once in the log: L1 on pixels and on image
gradients at 1x, 1/2 and 1/4 scale. A perceptual distance without learned features should still weigh
structure (edges, at several extents) over flat intensity, which MSE alone does not; L1 keeps the
gradients from vanishing on small errors as a squared loss would.
"""

import importlib.util
import os
import warnings

import torch
import torch.nn.functional as F

VGG_FILE = 'vgg16-397923af.pth'
LIN_FILE = 'vgg.pth'
VGG16_CFG = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512]
LPIPS_TAPS = (3, 8, 15, 22, 29)                    # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
LPIPS_CHANNELS = (64, 128, 256, 512, 512)

def vgg16_features():
    """torchvision's vgg16().features up to relu5_3 (indices 0..29), same module indices, same key names."""
    layers, cin = [], 3
    for v in VGG16_CFG:
        if v == 'M':
            layers.append(torch.nn.MaxPool2d(2, 2))
        else:
            layers += [torch.nn.Conv2d(cin, v, 3, padding=1), torch.nn.ReLU(inplace=False)]
            cin = v
    return torch.nn.Sequential(*layers)

class LinearHead(torch.nn.Module):
    """lpips' NetLinLayer: Dropout then a bias-free 1x1 conv to one channel (key `model.1.weight`)."""

    def __init__(self, channels):
        super().__init__()
        self.model = torch.nn.Sequential(torch.nn.Dropout(), torch.nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x):
        return self.model(x)

class LPIPS(torch.nn.Module):
    """LPIPS v0.1, VGG16: per-sample distance [N] between images in [-1, 1]. Frozen, always in eval mode."""

    def __init__(self):
        super().__init__()
        self.register_buffer('shift', torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1))
        self.register_buffer('scale', torch.tensor([.458, .448, .450]).view(1, 3, 1, 1))
        self.features = vgg16_features()
        self.lins = torch.nn.ModuleList(LinearHead(c) for c in LPIPS_CHANNELS)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode=True):
        return super().train(False)

    def taps(self, x):
        x = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in LPIPS_TAPS:
                out.append(x)
        return out

    def forward(self, x, y):
        if x.shape[1] != 3 or x.shape[-1] < 16:
            raise ValueError(f'LPIPS-VGG needs RGB images of at least 16x16, got {list(x.shape)}')
        d = 0
        for fx, fy, lin in zip(self.taps(x), self.taps(y), self.lins):
            fx = fx / (fx.square().sum(1, keepdim=True).sqrt() + 1e-10)
            fy = fy / (fy.square().sum(1, keepdim=True).sqrt() + 1e-10)
            d = d + lin((fx - fy).square()).mean(dim=(1, 2, 3))
        return d

    def load_weights(self, vgg_path, lin_path):
        vgg = _load_state(vgg_path)
        feats = {k[len('features.'):]: v for k, v in vgg.items() if k.startswith('features.')}
        if not feats:
            raise ValueError(f'{vgg_path}: no "features.*" keys: not a torchvision VGG16 state dict')
        _load_into(self.features, feats, vgg_path)
        lin = _load_state(lin_path)
        lin = {k: v for k, v in lin.items() if k.startswith('lin')}
        heads = {}
        for k, v in lin.items():
            idx, _, rest = k[len('lin'):].partition('.')
            heads[f'{idx}.{rest}'] = v
        _load_into(self.lins, heads, lin_path)
        return self

def _load_state(path):
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise ValueError(f'cannot read LPIPS weights from {path}: {e}') from e
    if not isinstance(state, dict):
        raise ValueError(f'{path}: expected a state dict, got {type(state).__name__}')
    return state

def _load_into(module, state, path):
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise ValueError(f'{path}: missing weights {missing[:4]}{"..." if len(missing) > 4 else ""}')
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ValueError(f'{path}: {k} has shape {list(state[k].shape)}, expected {list(v.shape)}')
    module.load_state_dict({k: state[k] for k in own})

def _first_file(candidates):
    return next((p for p in candidates if p and os.path.isfile(p)), None)

def find_lpips_weights(vgg_path=None, lin_path=None):
    """(vgg, lin) paths: explicit, environment, caches; None for a file that is not found."""
    hub = os.path.join(torch.hub.get_dir(), 'checkpoints')
    cache = os.path.join(os.path.expanduser('~'), '.cache', 'rtm_plugin', 'lpips')
    vgg = _first_file([vgg_path, os.environ.get('RTM_LPIPS_VGG'), os.path.join(hub, VGG_FILE),
                       os.path.join(cache, VGG_FILE)])
    lin_candidates = [lin_path, os.environ.get('RTM_LPIPS_LIN')]
    spec = importlib.util.find_spec('lpips')                   # locate, do not import (it imports torchvision)
    if spec is not None and spec.submodule_search_locations:
        lin_candidates.append(os.path.join(list(spec.submodule_search_locations)[0], 'weights', 'v0.1', LIN_FILE))
    lin = _first_file(lin_candidates + [os.path.join(cache, LIN_FILE)])
    for given, found, name in ((vgg_path, vgg, 'VGG16'), (lin_path, lin, 'LPIPS linear')):
        if given and found != given:
            raise FileNotFoundError(f'{name} weights file not found: {given}')
    return vgg, lin

class MultiScaleGradientLoss(torch.nn.Module):
    """Per-sample mean |x - y| + mean |grad x - grad y| at scales 1, 1/2, 1/4 (average pooling), summed."""

    def __init__(self, scales=3):
        super().__init__()
        self.scales = scales

    def forward(self, x, y):
        d = 0
        for s in range(self.scales):
            if s:
                if x.shape[-1] < 2:
                    break
                x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
            diff = x - y
            d = d + diff.abs().mean(dim=(1, 2, 3))
            d = d + (diff[..., 1:, :] - diff[..., :-1, :]).abs().mean(dim=(1, 2, 3))
            d = d + (diff[..., :, 1:] - diff[..., :, :-1]).abs().mean(dim=(1, 2, 3))
        return d

def build_perceptual(kind='auto', vgg_path=None, lin_path=None, log=None):
    """'lpips' (weights required), 'fallback', or 'auto' (LPIPS when its weights exist). Returns (module, name)."""
    if kind not in ('auto', 'lpips', 'fallback'):
        raise ValueError(f"perceptual loss must be 'auto', 'lpips' or 'fallback', got {kind!r}")
    if kind != 'fallback':
        vgg, lin = find_lpips_weights(vgg_path, lin_path)
        if vgg and lin:
            return LPIPS().load_weights(vgg, lin), f'lpips-vgg (v0.1: {vgg}, {lin})'
        if kind == 'lpips':
            missing = ' and '.join(n for n, p in ((VGG_FILE, vgg), (f'lpips v0.1 {LIN_FILE}', lin)) if not p)
            raise FileNotFoundError(f'LPIPS needs {missing}: pass --lpips-vgg/--lpips-lin or set '
                                    'RTM_LPIPS_VGG/RTM_LPIPS_LIN')
        message = ('LPIPS-VGG weights not found (no vgg16-397923af.pth / lpips v0.1 vgg.pth): using the '
                   'multi-scale pixel+gradient L1 loss instead of LPIPS')
        (log or (lambda m: warnings.warn(m, stacklevel=2)))(message)
    return MultiScaleGradientLoss(), 'multiscale-gradient-l1 (fallback)'

class ReconstructionLoss(torch.nn.Module):
    """lpips_coef * perceptual(x, y) + l2_coef * MSE(x, y), per sample [N]."""

    def __init__(self, perceptual, lpips_coef=1.0, l2_coef=0.1):
        super().__init__()
        self.perceptual, self.lpips_coef, self.l2_coef = perceptual, lpips_coef, l2_coef

    def forward(self, x, y):
        return self.lpips_coef * self.perceptual(x, y) + self.l2_coef * (x - y).square().mean(dim=(1, 2, 3))

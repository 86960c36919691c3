"""Drop-in mapping networks: the interface NVlabs' MappingNetwork offers, around an RTM or an MLP trunk.

Upstream code reads `z_dim, c_dim, w_dim, num_ws, w_avg` and calls
`mapping(z, c, truncation_psi=1, truncation_cutoff=None, skip_w_avg_update=False)` (stylegan2-ada-pytorch)
or `..., update_emas=False)` (stylegan3, StudioGAN). Both spellings are accepted here, as by every mapper class
(one signature: rtm.mapper_forward). The output is a contiguous float32 [N, num_ws, w_dim] (or [N, w_dim] when
num_ws is None): upstream's loss writes into it.

These classes import nothing from upstream; the upstream subclasses live in the integration modules.
"""

import torch

from rtm_plugin.rtm import EqualizedLinear, RecursiveTokenMapper, check_positive_int, mapper_forward

class MapperHead:
    """The forward (rtm.mapper_forward) of every rtm_plugin mapper class, over a torch.nn.Module that has upstream's
    MappingNetwork attributes (z_dim, c_dim, w_dim, num_ws, embed, w_avg_beta, w_avg) and a `trunk`.
    Subclasses say `mapper_kind` ('rtm' or 'mlp') and when w_avg moves by default (`w_avg_follows_training`)."""

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, *, update_emas=None,
                skip_w_avg_update=False, H=None, L=None, halt_tol=None, H_min=1, return_trace=False, use_fused=None):
        """rtm.mapper_forward: ws, or (ws, trace) with return_trace, or (ws, steps per sample) with halt_tol."""
        return mapper_forward(self, z, c, truncation_psi, truncation_cutoff, update_emas, skip_w_avg_update,
                              return_trace, H=H, L=L, halt_tol=halt_tol, H_min=H_min, use_fused=use_fused)

    def extra_repr(self):
        return f'z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}'

class MappingNetworkBase(MapperHead, torch.nn.Module):
    """Embedding of c and the w_avg tracker; subclasses set `self.trunk`."""

    w_avg_follows_training = True       # update_emas not given: w_avg moves in training mode, as stylegan2-ada's

    def __init__(self,
        z_dim,                      # Input latent (Z) dimensionality, 0 = no latent.
        c_dim,                      # Conditioning label (C) dimensionality, 0 = no label.
        w_dim,                      # Intermediate latent (W) dimensionality.
        num_ws,                     # Number of intermediate latents to output, None = do not broadcast.
        embed_features  = None,     # Label embedding dimensionality, None = same as w_dim.
        w_avg_beta      = 0.995,    # Decay of the moving average of W, None = do not track.
    ):
        super().__init__()
        for name, value in [('z_dim', z_dim), ('c_dim', c_dim)]:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f'{name} must be a non-negative integer, got {value!r}')
        if z_dim + c_dim == 0:
            raise ValueError('z_dim and c_dim are both 0: the mapper has no input')
        check_positive_int('w_dim', w_dim)
        if num_ws is not None:
            check_positive_int('num_ws', num_ws)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.w_avg_beta = w_avg_beta
        self.embed_features = 0 if c_dim == 0 else (w_dim if embed_features is None else embed_features)
        if c_dim > 0:
            self.embed = EqualizedLinear(c_dim, self.embed_features)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer('w_avg', torch.zeros([w_dim]))

    @property
    def in_features(self):
        return self.z_dim + self.embed_features

#----------------------------------------------------------------------------

class RTMMappingNetwork(MappingNetworkBase):
    """Recursive Token Mapper behind the MappingNetwork interface. `H`/`L` may be overridden per call."""
    mapper_kind = 'rtm'

    def __init__(self, z_dim, c_dim, w_dim, num_ws, tokens=4, token_dim=128, H=16, L=1, block='mlp',
                 expansion=4.0, heads=4, lr_multiplier=0.01, embed_features=None, w_avg_beta=0.995):
        super().__init__(z_dim, c_dim, w_dim, num_ws, embed_features=embed_features, w_avg_beta=w_avg_beta)
        self.trunk = RecursiveTokenMapper(self.in_features, w_dim, tokens=tokens, token_dim=token_dim, H=H, L=L,
                                          block=block, expansion=expansion, heads=heads, lr_multiplier=lr_multiplier)

class MLPTrunk(torch.nn.Module):
    """StyleGAN's mapping layers: num_layers equalised-lr FC layers with leaky ReLU (gain sqrt 2)."""

    def __init__(self, in_features, w_dim, num_layers=8, layer_features=None, lr_multiplier=0.01):
        super().__init__()
        check_positive_int('num_layers', num_layers)
        layer_features = w_dim if layer_features is None else layer_features
        dims = [in_features] + [layer_features] * (num_layers - 1) + [w_dim]
        self.num_layers = num_layers
        self.layers = torch.nn.ModuleList(
            EqualizedLinear(dims[i], dims[i + 1], lr_multiplier=lr_multiplier) for i in range(num_layers))

    def forward(self, x, return_trace=False, num_layers=None, **rtm_options):
        """With return_trace, also the output after each layer (projected dims must equal w_dim to stack). The
        RTM's options (H, L, halt_tol, H_min, use_fused) have no meaning here: a ValueError, not a silent no-op."""
        if rtm_options:
            raise ValueError(f'{", ".join(sorted(rtm_options))}: options of the RTM mapper; this mapper is an MLP '
                             f'(its depth is num_layers)')
        num_layers = self.num_layers if num_layers is None else check_positive_int('num_layers', num_layers)
        trace = []
        for layer in self.layers[:num_layers]:
            x = torch.nn.functional.leaky_relu(layer(x), 0.2) * (2 ** 0.5)
            trace.append(x.detach())
        return (x, torch.stack(trace)) if return_trace else x

class MLPMappingNetwork(MappingNetworkBase):
    """The StyleGAN baseline at any depth (2, 8, 16, 32 layers: the paper's depth-only ablation)."""
    mapper_kind = 'mlp'

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, layer_features=None, lr_multiplier=0.01,
                 embed_features=None, w_avg_beta=0.995):
        super().__init__(z_dim, c_dim, w_dim, num_ws, embed_features=embed_features, w_avg_beta=w_avg_beta)
        self.trunk = MLPTrunk(self.in_features, w_dim, num_layers=num_layers, layer_features=layer_features,
                              lr_multiplier=lr_multiplier)

#----------------------------------------------------------------------------

def mapper_kind(mapping):
    """'rtm' or 'mlp' for any mapping network: rtm_plugin's classes (and old pickles of them) say which; upstream's
    own MappingNetwork is the MLP."""
    return getattr(mapping, 'mapper_kind', 'mlp')

MAPPERS = {'rtm': RTMMappingNetwork, 'mlp': MLPMappingNetwork}

def build_mapping(map='rtm', **kwargs):
    """build_mapping('rtm' | 'mlp', z_dim=..., c_dim=..., w_dim=..., num_ws=..., **options)."""
    if map not in MAPPERS:
        raise ValueError(f'map must be one of {sorted(MAPPERS)}, got {map!r}')
    return MAPPERS[map](**kwargs)

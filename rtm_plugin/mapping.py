"""Drop-in mapping networks: the interface NVlabs' MappingNetwork offers, around an RTM or an MLP trunk.

Upstream code reads `z_dim, c_dim, w_dim, num_ws, w_avg` and calls
`mapping(z, c, truncation_psi=1, truncation_cutoff=None, skip_w_avg_update=False)` (stylegan2-ada-pytorch)
or `..., update_emas=False)` (stylegan3, StudioGAN). Both spellings are accepted here. The output is a
contiguous float32 [N, num_ws, w_dim] (or [N, w_dim] when num_ws is None): upstream's loss writes into it.

These classes import nothing from upstream; the upstream subclasses live in the integration modules.
"""

import torch

from rtm_plugin.rtm import EqualizedLinear, RecursiveTokenMapper, check_positive_int, pixel_norm, update_w_avg

class MappingNetworkBase(torch.nn.Module):
    """Embedding of c, the w_avg tracker, broadcast and truncation. Subclasses set `self.trunk`."""

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

    def features(self, z, c):
        """Normalised [z, embed(c)], as upstream; a clear ValueError for anything else."""
        parts = []
        if self.z_dim > 0:
            _check_2d('z', z, self.z_dim)
            parts.append(pixel_norm(z.float()))
        if self.c_dim > 0:
            if c is None:
                raise ValueError(f'c is required: this mapper was built with c_dim={self.c_dim}')
            _check_2d('c', c, self.c_dim)
            if parts and c.shape[0] != parts[0].shape[0]:
                raise ValueError(f'z and c disagree on the batch size: {z.shape[0]} vs {c.shape[0]}')
            parts.append(pixel_norm(self.embed(c.float())))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, skip_w_avg_update=False,
                update_emas=None, return_trace=False, **trunk_kwargs):
        """Extra keywords go to the trunk (RTM: H, L, use_fused, halt_tol, H_min; the steps each sample used
        under halt_tol are then in self.trunk.halt_steps). With return_trace=True, returns (ws, trace)
        where trace is [steps, N, num_ws, w_dim] with the same truncation and trace[-1] equal to ws."""
        out = self.trunk(self.features(z, c), return_trace=return_trace, **trunk_kwargs)
        x, trace = out if return_trace else (out, None)

        # stylegan3/StudioGAN: update iff update_emas. stylegan2-ada: iff training and not skipped.
        update = bool(update_emas) if update_emas is not None else (self.training and not skip_w_avg_update)
        if update and self.w_avg_beta is not None and hasattr(self, 'w_avg'):
            update_w_avg(self.w_avg, x, self.w_avg_beta)

        x = self.broadcast_and_truncate(x, truncation_psi, truncation_cutoff)
        if trace is None:
            return x
        frames = [self.broadcast_and_truncate(t, truncation_psi, truncation_cutoff) for t in trace]
        return x, torch.stack(frames)

    def broadcast_and_truncate(self, x, truncation_psi=1, truncation_cutoff=None):
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])      # a real copy: callers write into it
        if truncation_psi != 1:
            if not hasattr(self, 'w_avg'):
                raise ValueError('truncation needs w_avg: this mapper was built with w_avg_beta=None or num_ws=None')
            w_avg = self.w_avg.to(x.dtype)                      # a .half() mapper keeps a half w_avg
            if self.num_ws is None or truncation_cutoff is None:
                x = w_avg.lerp(x, truncation_psi)
            else:
                x[:, :truncation_cutoff] = w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x.contiguous()

    def extra_repr(self):
        return f'z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}'

def _check_2d(name, t, dim):
    if not isinstance(t, torch.Tensor):
        raise ValueError(f'{name} must be a tensor of shape [N, {dim}], got {type(t).__name__}')
    if t.ndim != 2 or t.shape[1] != dim:
        raise ValueError(f'{name} must have shape [N, {dim}], got {list(t.shape)}')

#----------------------------------------------------------------------------

class RTMMappingNetwork(MappingNetworkBase):
    """Recursive Token Mapper behind the MappingNetwork interface. `H`/`L` may be overridden per call."""

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

    def forward(self, x, return_trace=False, num_layers=None):
        """With return_trace, also the output after each layer (projected dims must equal w_dim to stack)."""
        num_layers = self.num_layers if num_layers is None else check_positive_int('num_layers', num_layers)
        trace = []
        for layer in self.layers[:num_layers]:
            x = torch.nn.functional.leaky_relu(layer(x), 0.2) * (2 ** 0.5)
            trace.append(x.detach())
        return (x, torch.stack(trace)) if return_trace else x

class MLPMappingNetwork(MappingNetworkBase):
    """The StyleGAN baseline at any depth (2, 8, 16, 32 layers: the paper's depth-only ablation)."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, layer_features=None, lr_multiplier=0.01,
                 embed_features=None, w_avg_beta=0.995):
        super().__init__(z_dim, c_dim, w_dim, num_ws, embed_features=embed_features, w_avg_beta=w_avg_beta)
        self.trunk = MLPTrunk(self.in_features, w_dim, num_layers=num_layers, layer_features=layer_features,
                              lr_multiplier=lr_multiplier)

#----------------------------------------------------------------------------

MAPPERS = {'rtm': RTMMappingNetwork, 'mlp': MLPMappingNetwork}

def build_mapping(map='rtm', **kwargs):
    """build_mapping('rtm' | 'mlp', z_dim=..., c_dim=..., w_dim=..., num_ws=..., **options)."""
    if map not in MAPPERS:
        raise ValueError(f'map must be one of {sorted(MAPPERS)}, got {map!r}')
    return MAPPERS[map](**kwargs)

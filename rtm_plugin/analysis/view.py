"""One interface over the mappers the tools meet, so every tool works on every generator the loader returns:

    rtm_plugin's mapper classes (mapping.py, the StyleGAN and StudioGAN subclasses: .mapper_kind, .trunk), the
    pickles of older StyleGAN RTM subclasses (.mapper_kind = 'rtm', .trunk) and upstream's MLP MappingNetwork
    (no mapper_kind, .fc0 ... .fcN-1).

The mapper is split into trunk input (normalised z and label embedding), trunk (z -> one w) and broadcast to
num_ws, so the tools can read the trunk step by step: RTM after each outer step, the MLP after each layer.
Truncation is never applied (psi = 1).
"""

import inspect

import torch

from rtm_plugin.mapping import mapper_kind
from rtm_plugin.rtm import mapper_input
from rtm_plugin.sampling import EVAL, seeded, to_uint8

class GeneratorView:
    def __init__(self, G, label=None):
        self.G = G
        self.mapping = G.mapping
        self.kind = mapper_kind(self.mapping)
        self.trunk = getattr(self.mapping, 'trunk', None)               # None: upstream's fc0 ... fcN-1
        if self.kind not in ('rtm', 'mlp') or (self.kind == 'rtm' and self.trunk is None):
            raise ValueError(f'unknown mapping network {type(self.mapping).__name__}: expected an RTM or MLP mapper')
        if self.kind == 'rtm':
            self.depth = self.trunk.H
        else:                                   # rtm_plugin's MLP keeps its layers in a trunk, upstream's as fc{i}
            self.depth = (self.mapping if self.trunk is None else self.trunk).num_layers
        self.label = label or self.describe()
        self.device = next(G.parameters()).device

    def describe(self):
        if self.kind == 'rtm':
            return f'RTM (H={self.trunk.H}, L={self.trunk.L})'
        return f'MLP-{self.depth}'

    def require_rtm(self, what):
        if self.kind != 'rtm':
            raise ValueError(f'{what} needs an RTM mapper; this generator has {self.label}')

    # ------------------------------------------------------------------ inputs
    def latents(self, n, seed):
        """z [n, z_dim] and labels c [n, c_dim] (random one-hot when conditional), from `seed` alone."""
        g = seeded(seed, EVAL)                  # the z of rtm-imle's final metrics for the same seed
        z = torch.randn([n, self.G.z_dim], generator=g)
        c_dim = self.G.c_dim
        c = torch.nn.functional.one_hot(torch.randint(c_dim, [n], generator=g), c_dim).float() if c_dim else None
        return z, c

    def trunk_input(self, z, c=None):
        """Normalised [z, embed(c)], as every mapper's forward (upstream's and older pickles' included) computes it:
        rtm.mapper_input reads only upstream's attributes."""
        return mapper_input(self.mapping, z.to(self.device), None if c is None else c.to(self.device))

    # ------------------------------------------------------------------ the trunk
    def w(self, x, **trunk_kwargs):
        """One w per sample. RTM keywords: H, L, use_fused, halt_tol, H_min; with halt_tol, (w, steps per sample)."""
        if trunk_kwargs.get('halt_tol') is not None:
            self.require_rtm('adaptive halting')
            if 'halt_tol' not in inspect.signature(self.trunk.forward).parameters:
                raise ValueError('this pickle embeds an RTM source without adaptive halting (older than halt_tol)')
            out = self.trunk(x, **trunk_kwargs)
            # The trunk of a pickle from before the shared head returns w alone and keeps the steps in halt_steps.
            return out if isinstance(out, tuple) else (out, self.trunk.halt_steps)
        if self.trunk is not None:
            return self.trunk(x, **trunk_kwargs)
        if trunk_kwargs:
            raise ValueError(f'the upstream MLP mapper takes no trunk options, got {sorted(trunk_kwargs)}')
        return self.mlp_layers(x)[-1]

    def mlp_layers(self, x, num_layers=None):
        """The MLP's output after each of its first num_layers layers: [k, N, features]."""
        if self.trunk is not None:
            return self.trunk(x, return_trace=True, num_layers=num_layers)[1]
        out = []
        for i in range(num_layers or self.depth):
            x = getattr(self.mapping, f'fc{i}')(x)
            out.append(x)
        return torch.stack(out)

    def trace(self, x, trace_len=None):
        """[S, N, w_dim]: RTM's w after each outer step 1..trace_len (default H), or the MLP's output after each
        layer (its intermediate width must equal w_dim to be decoded)."""
        if self.kind == 'rtm':
            return self.trunk(x, H=trace_len, return_trace=True)[1]
        out = self.mlp_layers(x, trace_len)
        if out.shape[-1] != self.G.w_dim:
            raise ValueError(f'the MLP layers are {out.shape[-1]} wide, not w_dim={self.G.w_dim}: cannot decode them')
        return out

    def initial_w(self, x):
        """RTM's read-out of the carry before any step (what adaptive halting compares step 1 against)."""
        self.require_rtm('the initial read-out')
        z0_shape = [len(x), self.trunk.tokens, self.trunk.token_dim]
        return self.trunk.read(self.trunk.H_init.to(x.dtype).expand(z0_shape))

    # ------------------------------------------------------------------ decoding
    def ws(self, w):
        num_ws = self.G.num_ws
        return w.unsqueeze(1).repeat([1, num_ws, 1])

    def decode(self, w):
        """uint8 images [N, C, R, R] for w [N, w_dim]."""
        return to_uint8(self.G.synthesis(self.ws(w), noise_mode='const')).cpu()

    @torch.no_grad()
    def images(self, z, c=None, batch=256, **trunk_kwargs):
        """(uint8 images, steps used per sample or None): the generator's samples for z with these trunk options."""
        out, used = [], []
        for i in range(0, len(z), batch):
            cc = None if c is None else c[i:i + batch]
            w = self.w(self.trunk_input(z[i:i + batch], cc), **trunk_kwargs)
            if trunk_kwargs.get('halt_tol') is not None:
                w, steps = w
                used.append(steps.cpu())
            out.append(self.decode(w))
        return torch.cat(out), (torch.cat(used) if used else None)

"""Recursive Token Mapper (RTM): z -> w by recursive refinement of a few latent tokens.

"One Pass Is Not Enough" (arXiv 2605.15309), Algorithm 1, written after TRM's trm.py:

    Z0  = lift(PixelNorm(x)).view(s, d_h)          x = z, or [z, embed(c)]
    Z_H, Z_L = H_init, L_init                      fixed buffers, not trained
    repeat H times (all but the last under no_grad: the short gradient)
        repeat L times:  Z_L = f(Z_L, Z_H + Z0)
        Z_H = f(Z_H, Z_L)
    w   = readout(flatten(Z_H))

f is one shared MLP-Mixer block (post-norm, as in TRM): the injection is added to the input, then
a SwiGLU over the token axis, add, RMSNorm (over tokens, while transposed, as TRM's mlp_t does), then
a SwiGLU over the channel axis, add, RMSNorm. `block='attention'` swaps the token MLP for multi-head
self-attention (the paper's Table 5 ablation).

With use_fused ('auto' by default), f runs as one C++/CUDA op and the no-grad steps as one op call
(torch_utils_ext/rtm_fused.py); the attention block, and any setting the op cannot run, use the code here.

The mapper head (mapper_forward) is what every mapping network does around its trunk: z/c normalisation,
the w_avg update, broadcast and truncation, as upstream's MappingNetwork.forward.

This file imports only torch and math (and, optionally, the fused op). StyleGAN checkouts pickle a
network together with the source of the module defining each class (torch_utils/persistence.py), and
such a pickle must load where rtm_plugin is not installed. So: classes at top level, no relative
imports, no module-level __file__, plain constructor arguments.
"""

import math

import torch
import torch.nn.functional as F

try:  # Optional fused kernels (built on the first forward). Absent in a process that merely loads a pickle.
    from torch_utils_ext import rtm_fused as _fused
except ImportError:
    _fused = None

BLOCK_TYPES = ('mlp', 'attention')
USE_FUSED = ('auto', True, False)

#----------------------------------------------------------------------------
# Validation shared by every constructor and by the per-call overrides.

def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{name} must be a positive integer, got {value!r}')
    return value

def check_use_fused(value):
    if not any(value is v or (isinstance(value, str) and value == v) for v in USE_FUSED):
        raise ValueError(f'use_fused must be one of {USE_FUSED}, got {value!r}')
    return value

def check_positive_float(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ValueError(f'{name} must be a positive finite number, got {value!r}')
    return float(value)

#----------------------------------------------------------------------------
# Layers.

def pixel_norm(x, eps=1e-8):
    """StyleGAN's normalize_2nd_moment over the feature axis."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()

def rms_norm(x, eps=1e-5):
    """TRM's RMSNorm: no gain, statistics in float32."""
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.square().mean(dim=-1, keepdim=True) + eps)).to(x.dtype)

def swiglu_hidden(dim, expansion):
    """TRM's SwiGLU width, round(expansion * dim * 2/3), without its rounding up to 256 (our dims are tiny)."""
    return max(1, round(expansion * dim * 2 / 3))

class EqualizedLinear(torch.nn.Module):
    """StyleGAN's equalised-learning-rate linear layer: weights stored as N(0, 1/lr_multiplier^2), scaled at run time."""

    def __init__(self, in_features, out_features, bias=True, lr_multiplier=1.0, bias_init=0.0):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def effective_weight(self):
        return self.weight * self.weight_gain

    def effective_bias(self):
        return None if self.bias is None else self.bias * self.bias_gain

    def forward(self, x):
        b = self.effective_bias()
        return F.linear(x, self.effective_weight().to(x.dtype), None if b is None else b.to(x.dtype))

class SwiGLU(torch.nn.Module):
    """down(silu(gate) * up) over the last axis, no biases."""

    def __init__(self, dim, expansion, lr_multiplier):
        super().__init__()
        self.hidden = swiglu_hidden(dim, expansion)
        self.gate_up = EqualizedLinear(dim, 2 * self.hidden, bias=False, lr_multiplier=lr_multiplier)
        self.down = EqualizedLinear(self.hidden, dim, bias=False, lr_multiplier=lr_multiplier)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)

#----------------------------------------------------------------------------
# The shared block f(x, injection). Both variants end with the same channel mix.

class MixerBlock(torch.nn.Module):
    """MLP-Mixer block: token-axis SwiGLU, add, RMSNorm; channel-axis SwiGLU, add, RMSNorm."""

    # The contract with the fused op (torch_utils_ext/rtm_fused.py): a block with fusable = True computes
    # exactly this forward from fused_weights() and eps, and its parameters are all that those depend on.
    fusable = True
    eps = 1e-5                                                  # of both RMSNorms

    def __init__(self, tokens, token_dim, expansion, lr_multiplier):
        super().__init__()
        self.token_mix = SwiGLU(tokens, expansion, lr_multiplier)
        self.channel_mix = SwiGLU(token_dim, expansion, lr_multiplier)

    def fused_weights(self):
        """The effective weights, torch [out, in] layout: token gate_up [2Ht, S], token down [S, Ht], channel
        gate_up [2Hc, D], channel down [D, Hc]; gate rows first, then up rows."""
        return [m.effective_weight() for m in (self.token_mix.gate_up, self.token_mix.down,
                                                self.channel_mix.gate_up, self.channel_mix.down)]

    def forward(self, x, injection):                            # [N, S, D]
        h = (x + injection).transpose(1, 2)                     # [N, D, S]: mix along tokens
        h = rms_norm(h + self.token_mix(h), self.eps).transpose(1, 2)   # normalised over tokens, as TRM's mlp_t
        return rms_norm(h + self.channel_mix(h), self.eps)

class AttentionBlock(torch.nn.Module):
    """The ablation: multi-head self-attention mixes the tokens, then the same channel mix."""

    def __init__(self, tokens, token_dim, expansion, lr_multiplier, heads):
        super().__init__()
        self.heads = heads
        self.qkv = EqualizedLinear(token_dim, 3 * token_dim, bias=False, lr_multiplier=lr_multiplier)
        self.proj = EqualizedLinear(token_dim, token_dim, bias=False, lr_multiplier=lr_multiplier)
        self.channel_mix = SwiGLU(token_dim, expansion, lr_multiplier)

    def forward(self, x, injection):                            # [N, S, D]
        h = x + injection
        n, s, d = h.shape
        q, k, v = self.qkv(h).view(n, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, s, d)
        h = rms_norm(h + self.proj(a))
        return rms_norm(h + self.channel_mix(h))

#----------------------------------------------------------------------------
# The moving average of W that truncation pulls toward (the mapping networks keep it; the trunk only carries it).

@torch.no_grad()
def update_w_avg(w_avg, w, beta):
    """Moves the tracked average w_avg [w_dim] in place toward the batch mean of w [N, w_dim], as StyleGAN's
    w_avg.copy_(w.mean(0).lerp(w_avg, beta)), except that rows holding a NaN or inf are left out of the mean, and a
    batch without a finite row (or with no rows) leaves w_avg as it is: one bad sample must not make w_avg, and
    every truncated sample after it, NaN for good. The arithmetic is in float32 at least (as rms_norm's statistics),
    whatever the dtypes of w and w_avg, so a .half() or .bfloat16() mapper keeps its half w_avg. The skip is a
    torch.where, not a Python branch: no host sync in the training loop. Shared by every mapper class (mapper_forward).
    """
    dtype = torch.promote_types(torch.promote_types(w.dtype, w_avg.dtype), torch.float32)
    w = w.detach().to(dtype)
    finite = w.isfinite().all(dim=1, keepdim=True)                  # [N, 1]
    count = finite.sum()
    mean = torch.where(finite, w, 0).sum(dim=0) / count.clamp_min(1)
    avg = w_avg.to(dtype)
    w_avg.copy_(torch.where(count > 0, mean.lerp(avg, beta), avg))

#----------------------------------------------------------------------------
# The mapper head: what every mapping network (rtm_plugin.mapping's, the StyleGAN and StudioGAN subclasses) does
# around its trunk, as upstream's MappingNetwork.forward. It reads only attributes that upstream's MappingNetwork
# has too: z_dim, c_dim, embed, w_avg_beta, w_avg, num_ws, trunk, training. It lives here, not in mapping.py,
# because a StyleGAN pickle carries this file's source: the subclasses there call it as trunk.mapper_forward.

def mapper_input(mapper, z, c):
    """Normalised [z, embed(c)] [N, z_dim + embed features], as upstream feeds its first layer."""
    parts = []
    if mapper.z_dim > 0:
        parts.append(pixel_norm(_check_2d('z', z, mapper.z_dim).float()))
    if mapper.c_dim > 0:
        if c is None:
            raise ValueError(f'c is required: this mapper was built with c_dim={mapper.c_dim}')
        _check_2d('c', c, mapper.c_dim)
        if parts and c.shape[0] != z.shape[0]:
            raise ValueError(f'z and c disagree on the batch size: {z.shape[0]} vs {c.shape[0]}')
        parts.append(pixel_norm(mapper.embed(c.float())))
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

def broadcast_and_truncate(mapper, w, truncation_psi=1, truncation_cutoff=None):
    """w [N, w_dim] -> a contiguous [N, num_ws, w_dim] (or [N, w_dim] when num_ws is None), pulled toward w_avg
    by truncation_psi in the first truncation_cutoff ws (all when None)."""
    if mapper.num_ws is not None:
        w = w.unsqueeze(1).repeat([1, mapper.num_ws, 1])        # a real copy: upstream's loss writes into it
    if truncation_psi != 1:
        w_avg = getattr(mapper, 'w_avg', None)
        if w_avg is None:
            raise ValueError('truncation needs w_avg: this mapper was built with w_avg_beta=None or num_ws=None')
        w_avg = w_avg.to(w.dtype)                               # a .half() mapper keeps a half w_avg
        if mapper.num_ws is None or truncation_cutoff is None:
            w = w_avg.lerp(w, truncation_psi)
        else:
            w[:, :truncation_cutoff] = w_avg.lerp(w[:, :truncation_cutoff], truncation_psi)
    return w.contiguous()

def mapper_forward(mapper, z, c=None, truncation_psi=1, truncation_cutoff=None, update_emas=None,
                   skip_w_avg_update=False, return_trace=False, **trunk_options):
    """The whole forward of a mapping network. w_avg moves when update_emas is true; when it is None (not given),
    as the mapper's upstream tree has it: in training mode unless skip_w_avg_update where
    mapper.w_avg_follows_training (stylegan2-ada-pytorch), never otherwise (stylegan3, StudioGAN).
    trunk_options (H, L, halt_tol, H_min, use_fused; None = not given) go to the trunk. Returns ws, or
    (ws, trace) with return_trace (trace [H, N, num_ws, w_dim], truncated alike), or (ws, steps) with halt_tol."""
    # Only the options given reach the trunk (H_min=1 is the default, not a choice): the MLP trunk refuses them all.
    trunk_options = {k: v for k, v in trunk_options.items() if v is not None and not (k == 'H_min' and v == 1)}
    if return_trace:
        trunk_options['return_trace'] = True
    out = mapper.trunk(mapper_input(mapper, z, c), **trunk_options)
    w, extra = out if isinstance(out, tuple) else (out, None)      # (w, trace) or (w, steps)
    if update_emas is None:
        update_emas = mapper.w_avg_follows_training and mapper.training and not skip_w_avg_update
    if update_emas and mapper.w_avg_beta is not None and getattr(mapper, 'w_avg', None) is not None:
        update_w_avg(mapper.w_avg, w, mapper.w_avg_beta)
    ws = broadcast_and_truncate(mapper, w, truncation_psi, truncation_cutoff)
    if return_trace:
        extra = torch.stack([broadcast_and_truncate(mapper, t, truncation_psi, truncation_cutoff) for t in extra])
    return ws if extra is None else (ws, extra)

def _check_2d(name, t, dim):
    if not isinstance(t, torch.Tensor):
        raise ValueError(f'{name} must be a tensor of shape [N, {dim}], got {type(t).__name__}')
    if t.ndim != 2 or t.shape[1] != dim:
        raise ValueError(f'{name} must have shape [N, {dim}], got {list(t.shape)}')
    return t

#----------------------------------------------------------------------------

class RecursiveTokenMapper(torch.nn.Module):
    """x [N, in_features] -> w [N, w_dim]. The parameter count does not depend on H or L."""

    mapper_forward = staticmethod(mapper_forward)   # for mappers that must not import rtm_plugin (pickles; see above)

    def __init__(self,
        in_features,                # Input features: z_dim, or z_dim + embed_features when conditional.
        w_dim,                      # Output features.
        tokens          = 4,        # s: number of latent tokens.
        token_dim       = 128,      # d_h: width of each token.
        H               = 16,       # Outer steps (can be overridden per call).
        L               = 1,        # Inner cycles per outer step (can be overridden per call).
        block           = 'mlp',    # 'mlp' (MLP-Mixer) or 'attention' (the ablation).
        expansion       = 4.0,      # SwiGLU expansion factor.
        heads           = 4,        # Attention heads, block='attention' only.
        lr_multiplier   = 0.01,     # Equalised-lr multiplier, as StyleGAN's mapping network.
        use_fused       = 'auto',   # Fused block op: 'auto' (when it builds), True (required), False (reference).
    ):
        super().__init__()
        check_positive_int('in_features', in_features)
        check_positive_int('w_dim', w_dim)
        check_positive_int('tokens', tokens)
        check_positive_int('token_dim', token_dim)
        check_positive_float('expansion', expansion)
        check_positive_float('lr_multiplier', lr_multiplier)
        if block not in BLOCK_TYPES:
            raise ValueError(f'block must be one of {BLOCK_TYPES}, got {block!r}')
        if block == 'attention':
            check_positive_int('heads', heads)
            if token_dim % heads != 0:
                raise ValueError(f'token_dim ({token_dim}) must be divisible by heads ({heads}) for block="attention"')
        if check_use_fused(use_fused) is True and block != 'mlp':
            raise ValueError('use_fused=True needs block="mlp": the attention block has no fused op')
        self.in_features, self.w_dim = in_features, w_dim
        self.tokens, self.token_dim = tokens, token_dim
        self.H, self.L = check_positive_int('H', H), check_positive_int('L', L)
        self.block_type = block
        self.use_fused = use_fused

        self.lift = EqualizedLinear(in_features, tokens * token_dim, lr_multiplier=lr_multiplier)
        if block == 'mlp':
            self.block = MixerBlock(tokens, token_dim, expansion, lr_multiplier)
        else:
            self.block = AttentionBlock(tokens, token_dim, expansion, lr_multiplier, heads)
        self.readout = EqualizedLinear(tokens * token_dim, w_dim, lr_multiplier=lr_multiplier)
        # Fixed start of the carries (TRM: truncated normal, std 1); persistent so pickles keep them.
        self.register_buffer('H_init', torch.nn.init.trunc_normal_(torch.empty(token_dim), std=1, a=-2, b=2))
        self.register_buffer('L_init', torch.nn.init.trunc_normal_(torch.empty(token_dim), std=1, a=-2, b=2))

    def block_fn(self, z0, use_fused=None):
        """The block f for this forward: the fused op (torch_utils_ext) when enabled and able, else self.block."""
        mode = self.use_fused if use_fused is None else check_use_fused(use_fused)
        if mode is True and (_fused is None or self.block_type != 'mlp'):
            raise RuntimeError('use_fused=True, but ' + ('torch_utils_ext is not importable' if _fused is None
                               else 'the attention block has no fused op'))
        if mode is False or _fused is None or self.block_type != 'mlp':
            return self.block
        return _fused.mixer_op(self.block, z0, self.H_init, required=mode is True) or self.block

    def step(self, z_H, z_L, z0, L, f=None):
        """One outer step: L low-level cycles, then one high-level update."""
        f = self.block_fn(z0) if f is None else f
        for _ in range(L):
            z_L = f(z_L, z_H + z0)
        return f(z_H, z_L), z_L

    def read(self, z_H):
        return self.readout(z_H.flatten(1))

    def forward(self, x, H=None, L=None, return_trace=False, use_fused=None, halt_tol=None, H_min=1):
        """Returns w, or (w, trace) where trace[h] is the w read out after outer step h+1 (trace[-1] == w), or with
        halt_tol (inference only) (w, steps): see halt(). use_fused overrides the constructor's choice for this call."""
        H = self.H if H is None else check_positive_int('H', H)
        L = self.L if L is None else check_positive_int('L', L)
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f'expected input of shape [N, {self.in_features}], got {_shape(x)}')

        z0 = self.lift(pixel_norm(x.float())).view(-1, self.tokens, self.token_dim)
        z_H = self.H_init.expand_as(z0)
        z_L = self.L_init.expand_as(z0)
        f = self.block_fn(z0, use_fused)
        if halt_tol is not None:
            if return_trace:
                raise ValueError('return_trace and halt_tol cannot be combined')
            return self.halt(z0, z_H, z_L, f, H, L, halt_tol, H_min)
        trace = []
        with torch.no_grad():                                   # H-1 steps build no graph
            if getattr(f, 'runs_recursion', False) and not return_trace:    # fused: all of them in one op call
                z_H, z_L = f.recursion(z_H, z_L, z0, H - 1, L)
            else:
                for _ in range(H - 1):
                    z_H, z_L = self.step(z_H, z_L, z0, L, f)
                    if return_trace:
                        trace.append(self.read(z_H))
        z_H, z_L = self.step(z_H, z_L, z0, L, f)                # the one step that trains
        w = self.read(z_H)
        if return_trace:
            return w, torch.stack(trace + [w.detach()])
        return w

    @torch.no_grad()
    def halt(self, z0, z_H, z_L, f, H_max, L, tol, H_min):
        """Adaptive halting: each sample stops after the first step h >= H_min whose relative change
        ||w_h - w_{h-1}|| / ||w_h|| is below tol (w_0 = the read-out of H_init), and after H_max at the latest.
        Finished rows are frozen: later steps compute only the active rows. Builds no graph.
        Returns (w, steps): steps [N] (long) is the outer steps each sample used."""
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
            raise ValueError(f'halt_tol must be a non-negative number, got {tol!r}')
        if check_positive_int('H_min', H_min) > H_max:
            raise ValueError(f'H_min ({H_min}) must not exceed H ({H_max})')
        z_H, z_L = z_H.contiguous(), z_L.contiguous()
        w = self.read(z_H)
        steps = torch.zeros(len(z0), dtype=torch.long, device=z0.device)
        active = torch.arange(len(z0), device=z0.device)
        rows = lambda t: t.index_select(0, active)  # index_select/index_copy_: t[idx] is slow on busy threads
        for h in range(1, H_max + 1):
            z_H_a, z_L_a = self.step(rows(z_H), rows(z_L), rows(z0), L, f)
            w_new = self.read(z_H_a)
            change = (w_new - rows(w)).norm(dim=1) / w_new.norm(dim=1).clamp_min(1e-12)
            z_H.index_copy_(0, active, z_H_a.to(z_H.dtype))
            z_L.index_copy_(0, active, z_L_a.to(z_L.dtype))
            w.index_copy_(0, active, w_new)
            steps.index_fill_(0, active, h)
            if h >= H_min:
                active = active.masked_select(change >= tol)
            if len(active) == 0:
                break
        return w, steps

    def extra_repr(self):
        return (f'tokens={self.tokens}, token_dim={self.token_dim}, H={self.H}, L={self.L}, '
                f'block={self.block_type!r}')

def _shape(x):
    return list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__

#----------------------------------------------------------------------------

PERSISTENT_CLASSES = ('EqualizedLinear', 'SwiGLU', 'MixerBlock', 'AttentionBlock', 'RecursiveTokenMapper')

def make_persistent(class_decorator):
    """Rebind this module's classes to source-embedding versions, e.g. StyleGAN's persistence.persistent_class.

    Every class in a pickled module tree must be decorated for the pickle to load without this package,
    and the classes build each other through these module names, so rebinding them here is enough.
    """
    for name in PERSISTENT_CLASSES:
        globals()[name] = class_decorator(globals()[name])

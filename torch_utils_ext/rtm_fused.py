"""The fused RTM mixer block: one op for f(x, inj), and one op for a whole no-grad recursion.

rtm_plugin/rtm.py's MixerBlock is about ten small ops, applied H*(L+1) times per mapper call (32 at (16,1)).
Here the block is one C++/CUDA op (math in rtm_fused.h, shared by the CPU and CUDA kernels), and the H-1
no-grad outer steps are one op call: a single kernel launch on the GPU, one parallel loop on the CPU, with the
carries held on chip. Only the last outer step goes through autograd: its backward recomputes rtm.py's
reference block and differentiates that.

Usage, from rtm.py:

    f = rtm_fused.mixer_op(mapper.block, z0, mapper.H_init)    # None: use the reference block
    z_H, z_L = f.recursion(z_H, z_L, z0, H - 1, L)             # no grad, one op call
    z_L = f(z_L, z_H + z0)                                     # differentiable

The contract with the block: `block.fusable` is True, `block.fused_weights()` returns its effective weights
(token gate_up, token down, channel gate_up, channel down; torch [out, in] layout), `block.eps` is its RMSNorm
eps, and its forward is the formula in rtm_fused.h. Nothing else of the block (submodule names, gains) is read
here. The packed weights are cached per block and rebuilt when a parameter changes (its `_version`, bumped by
every in-place update such as an optimizer step, an EMA update or load_state_dict, or its storage); a
write through `.data` bypasses that counter, so call forget_packed(block) after one.

The plugin builds with ninja the first time a tensor of its device arrives (about 45 s on CPU, then cached in
TORCH_EXTENSIONS_DIR). If the build fails, it warns once and every call falls back to the reference.
"""

import hashlib
import os
import platform
import threading
import traceback
import warnings
import weakref

import torch

from . import custom_ops

_SOURCES = os.path.dirname(os.path.abspath(__file__))

#----------------------------------------------------------------------------
# Building: once per process and device kind, as upstream's bias_act._init().

_plugins = dict()               # 'cpu' / 'cuda' -> module, or None after a failed build
_build_lock = threading.Lock()

def _cpu_tag():
    """-march=native binaries are per CPU kind: name the CPU build after the CPU's feature flags."""
    try:
        with open('/proc/cpuinfo') as f:
            flags = next((line for line in f if line.startswith(('flags', 'Features'))), '')
    except OSError:
        flags = ''
    return hashlib.sha1((platform.machine() + flags).encode()).hexdigest()[:8]

def _init(kind):
    """The plugin for 'cpu' or 'cuda', built on first use; None (after one warning) if the build fails.

    CUDA architectures: TORCH_CUDA_ARCH_LIST when set; else torch's default, the visible GPUs' architectures
    with PTX for the newest (so that a newer GPU can JIT the kernel)."""
    with _build_lock:
        return _init_locked(kind)

def _init_locked(kind):
    if kind not in _plugins:
        _plugins[kind] = None
        cflags = ['-O3', '-fno-math-errno', '-Wno-psabi'] + (['-march=native'] if platform.machine() in ('x86_64', 'AMD64') else [])
        try:
            if kind == 'cuda':
                _plugins[kind] = custom_ops.get_plugin(
                    'rtm_fused_cuda', sources=[os.path.join(_SOURCES, s) for s in ('rtm_fused.cpp', 'rtm_fused_cuda.cu')],
                    with_cuda=True, extra_cflags=cflags + ['-DRTM_WITH_CUDA'], extra_cuda_cflags=['-O3'])
            else:
                _plugins[kind] = custom_ops.get_plugin(
                    f'rtm_fused_cpu_{_cpu_tag()}', sources=[os.path.join(_SOURCES, 'rtm_fused.cpp')],
                    extra_cflags=cflags)
        except Exception:
            warnings.warn(f'Failed to build the fused RTM op ({kind}). Falling back to the slow reference '
                          f'implementation. Details:\n\n' + traceback.format_exc())
    return _plugins[kind]

def plugin_for(device):
    """The plugin for tensors on `device`, or None. CUDA is tried only on a CUDA build of torch."""
    device = torch.device(device)
    if device.type == 'cuda':
        return _init('cuda') if torch.version.cuda else None
    return _init('cpu') if device.type == 'cpu' else None

def build(kind='cpu'):
    """Builds the plugin now (scripts, tests); raises if it cannot be built."""
    plugin = _init(kind)
    if plugin is None:
        raise RuntimeError(f'the fused RTM op ({kind}) failed to build; see the warning above')
    return plugin

#----------------------------------------------------------------------------
# Which calls can run fused.

_warned_configs = set()

def fits_shared_memory(plugin, dims, batch, smem_limit, num_sms):
    """True if a CUDA tile of this block fits in smem_limit bytes; otherwise warns once and returns False."""
    S, D, Ht, Hc = dims
    nb, _, _, need, _, _, _ = plugin.plan_cuda(batch, S, D, Ht, Hc, smem_limit, num_sms)
    if nb > 0:
        return True
    if dims not in _warned_configs:
        _warned_configs.add(dims)
        warnings.warn(f'Fused RTM op: tokens={S}, token_dim={D} (hidden {Ht}/{Hc}) needs {need / 1024:.0f} KB of '
                      f'shared memory per block for one sample; the GPU allows {smem_limit / 1024:.0f} KB. '
                      f'Using the reference implementation for this configuration.')
    return False

def _unsupported(device, dtype):
    if device.type == 'cuda' and not torch.version.cuda:
        return 'CUDA tensors need a CUDA build of torch'
    if device.type not in ('cpu', 'cuda'):
        return f'it runs on CPU and CUDA, not {device.type}'
    allowed = (torch.float32,) if device.type == 'cuda' else (torch.float32, torch.float64)
    if dtype not in allowed:
        return f'it supports {", ".join(str(t) for t in allowed)} on {device.type}, not {dtype}'
    return None

def mixer_op(block, *like, required=False):
    """The fused form of `block` (rtm.py's MixerBlock) for a forward on tensors like `like`, else None.

    The block computes in the promoted dtype of `like` (as the reference does). With required=True, the
    reason it cannot run fused is raised instead of returning None.
    """
    device, dtype = like[0].device, like[0].dtype
    for t in like[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    reason = _unsupported(device, dtype)
    if reason is None and getattr(block, 'fusable', False) is not True:
        reason = f'{type(block).__name__} does not offer the fused contract (fusable, fused_weights(), eps)'
    plugin = None
    if reason is None:
        plugin = plugin_for(device)
        if plugin is None:
            reason = 'its plugin failed to build (see the warning above)'
    mixer = None if reason else FusedMixer(plugin, block, device, dtype)
    if mixer is not None and device.type == 'cuda':
        props = torch.cuda.get_device_properties(device)
        smem = getattr(props, 'shared_memory_per_block_optin', 48 * 1024)
        if not fits_shared_memory(plugin, mixer.dims, like[0].shape[0], smem, props.multi_processor_count):
            mixer, reason = None, 'a tile does not fit in shared memory (see the warning above)'
    if mixer is None and required:
        raise RuntimeError(f'use_fused=True, but the fused RTM op cannot run here: {reason}')
    return mixer

#----------------------------------------------------------------------------

_packed = weakref.WeakKeyDictionary()  # block -> (key, effective weights, packed weights)
_packed_lock = threading.Lock()

def packed_weights(plugin, block, device, dtype):
    """(effective weights, packed weights) of `block` for `device` and `dtype`: cached per block, and rebuilt
    when any of its parameters changes, in place (`_version`) or by a new storage (`data_ptr`)."""
    key = (plugin, device, dtype, tuple((p.data_ptr(), p._version) for p in block.parameters()))
    with _packed_lock:
        hit = _packed.get(block)
    if hit is not None and hit[0] == key:
        return hit[1], hit[2]
    with torch.no_grad():
        weights = [w.to(device, dtype).contiguous() for w in block.fused_weights()]
        S, D = weights[0].shape[1], weights[2].shape[1]
        packed = plugin.pack(weights[0].new_empty(0, S, D), *weights)
    with _packed_lock:
        _packed[block] = (key, weights, packed)
    return weights, packed

def forget_packed(block):
    """Drops `block`'s cached packed weights. Needed only after writing a parameter through `.data` (as
    torch.autograd.gradcheck does), which bypasses the version counter the cache watches."""
    with _packed_lock:
        _packed.pop(block, None)

class FusedMixer:
    """f(x, inj) of one fusable block through the fused op, with its packed weights from the cache."""

    runs_recursion = True       # rtm.py: recursion() runs the no-grad steps in one call

    def __init__(self, plugin, block, device, dtype):
        self.plugin, self.block, self.dtype = plugin, block, dtype
        self.eps = float(block.eps)
        named = list(block.named_parameters())
        self.param_names = [name for name, _ in named]
        self.params = [p for _, p in named]
        self.weights, self.packed = packed_weights(plugin, block, device, dtype)
        tgu, cgu = self.weights[0], self.weights[2]
        self.dims = (tgu.shape[1], cgu.shape[1], tgu.shape[0] // 2, cgu.shape[0] // 2)     # S, D, Ht, Hc

    def _prepare(self, t):
        return t.to(self.dtype).contiguous()

    def __call__(self, x, inj):
        """The block, differentiable (backward through the reference)."""
        x, inj = self._prepare(x), self._prepare(inj)
        if torch.is_grad_enabled() and any(t.requires_grad for t in [x, inj] + self.params):
            return _FusedBlock.apply(x, inj, self, *self.params)
        return self.plugin.block_packed(x, inj, self.packed, self.eps)

    def recursion(self, z_H, z_L, z0, outer_steps, L):
        """(z_H, z_L) after `outer_steps` outer steps of L+1 block calls, in one op call. No autograd."""
        z_H, z_L, z0 = (self._prepare(t.detach()) for t in (z_H, z_L, z0))
        return tuple(self.plugin.recursion_packed(z_H, z_L, z0, self.packed, outer_steps, L, self.eps))

class _FusedBlock(torch.autograd.Function):
    """Forward: the fused op. Backward: recompute rtm.py's reference block from the saved inputs and
    parameters (torch.func.functional_call), and differentiate it. First-order only."""

    @staticmethod
    def forward(ctx, x, inj, mixer, *params):
        ctx.mixer = mixer
        ctx.save_for_backward(x, inj, *params)
        return mixer.plugin.block_packed(x, inj, mixer.packed, mixer.eps)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        saved = ctx.saved_tensors
        needs = ctx.needs_input_grad[:2] + ctx.needs_input_grad[3:]
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(need) for t, need in zip(saved, needs)]
            x, inj, params = leaves[0], leaves[1], leaves[2:]
            out = torch.func.functional_call(ctx.mixer.block, dict(zip(ctx.mixer.param_names, params)), (x, inj))
        wanted = [t for t in leaves if t.requires_grad]
        grads = iter(torch.autograd.grad(out, wanted, grad) if wanted else ())
        result = [next(grads) if t.requires_grad else None for t in leaves]
        return (result[0], result[1], None, *result[2:])

"""The fused RTM op on CPU (torch_utils_ext/rtm_fused*): same block and recursion as rtm.py, gradients,
gradcheck, clear errors on bad input, the shared-memory plan, and the use_fused switch.

The first test to run builds the CPU extension with ninja (about 45 s, then cached in TORCH_EXTENSIONS_DIR).
"""

import copy
import warnings

import pytest
import torch

from rtm_plugin import rtm
from rtm_plugin.rtm import MixerBlock, RecursiveTokenMapper
from torch_utils_ext import rtm_fused

@pytest.fixture(scope='module')
def plugin():
    return rtm_fused.build('cpu')

def float64_rms_norm(x, eps=1e-5):
    """rtm.rms_norm without its float32 statistics, so that a float64 reference is exact to float64."""
    return x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + eps)

def random_block(tokens, token_dim, expansion, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    block = MixerBlock(tokens, token_dim, expansion, lr_multiplier=0.01).to(dtype)
    with torch.no_grad():                   # make the weights different from their init scale
        for p in block.parameters():
            p.mul_(1 + 0.3 * torch.randn_like(p))
    return block

#----------------------------------------------------------------------------
# One block call: forward and gradients, over sizes that exercise the padding and the tiles.

BLOCK_CASES = [  # batch, tokens, token_dim, expansion
    (1, 4, 16, 4.0), (1, 8, 64, 4.0), (3, 3, 13, 2.0), (2, 1, 7, 1.5), (17, 5, 33, 3.0), (40, 4, 128, 4.0),
]

@pytest.mark.parametrize('batch,tokens,token_dim,expansion', BLOCK_CASES)
def test_block_forward_and_gradients_match_reference(plugin, batch, tokens, token_dim, expansion):
    block = random_block(tokens, token_dim, expansion)
    x = torch.randn(batch, tokens, token_dim, requires_grad=True)
    inj = torch.randn(batch, tokens, token_dim, requires_grad=True)
    grad_out = torch.randn(batch, tokens, token_dim)

    ref = block(x, inj)
    ref_grads = torch.autograd.grad(ref, [x, inj, *block.parameters()], grad_out)
    f = rtm_fused.mixer_op(block, x, required=True)
    out = f(x, inj)
    grads = torch.autograd.grad(out, [x, inj, *block.parameters()], grad_out)

    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)

def test_block_float64_is_the_reference_math(plugin, monkeypatch):
    monkeypatch.setattr(rtm, 'rms_norm', float64_rms_norm)
    block = random_block(5, 33, 3.0, torch.float64)
    x, inj = torch.randn(7, 5, 33, dtype=torch.float64), torch.randn(7, 5, 33, dtype=torch.float64)
    torch.testing.assert_close(rtm_fused.mixer_op(block, x)(x, inj), block(x, inj), atol=1e-12, rtol=1e-12)

def test_gradcheck_float64(plugin):
    block = random_block(3, 5, 2.0, torch.float64)
    x = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    inj = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    params = list(block.parameters())       # gradcheck perturbs these in place: take the weights per call

    def f(x, inj, *params):
        rtm_fused.forget_packed(block)      # gradcheck writes through .data, which the cache cannot see
        return rtm_fused.mixer_op(block, x, required=True)(x, inj)

    assert torch.autograd.gradcheck(f, (x, inj, *params))

#----------------------------------------------------------------------------
# The whole mapper: the no-grad recursion in one op call, then the fused grad step.

MAPPER_CASES = [  # batch, tokens, token_dim, expansion, H, L
    (1, 4, 16, 4.0, 1, 1), (1, 8, 64, 4.0, 16, 1), (3, 3, 13, 2.0, 4, 3), (33, 5, 20, 3.0, 8, 2),
    (2, 4, 128, 4.0, 3, 1),
]

def make_mapper(tokens, token_dim, expansion, H, L, dtype=torch.float32, **kwargs):
    torch.manual_seed(1)
    return RecursiveTokenMapper(24, 20, tokens=tokens, token_dim=token_dim, expansion=expansion, H=H, L=L,
                                **kwargs).to(dtype)

def forward_and_grads(m, x, use_fused):
    m.zero_grad()
    w = m(x, use_fused=use_fused)
    w.square().sum().backward()
    return w.detach(), [p.grad.clone() for p in m.parameters()]

@pytest.mark.parametrize('batch,tokens,token_dim,expansion,H,L', MAPPER_CASES)
def test_mapper_float64_equals_reference(plugin, monkeypatch, batch, tokens, token_dim, expansion, H, L):
    monkeypatch.setattr(rtm, 'rms_norm', float64_rms_norm)
    m = make_mapper(tokens, token_dim, expansion, H, L, torch.float64)
    x = torch.randn(batch, 24, dtype=torch.float64)
    w, grads = forward_and_grads(m, x, True)
    w_ref, grads_ref = forward_and_grads(m, x, False)
    torch.testing.assert_close(w, w_ref, atol=1e-9, rtol=1e-9)
    for g, r in zip(grads, grads_ref):
        torch.testing.assert_close(g, r, atol=1e-9, rtol=1e-7)

@pytest.mark.parametrize('batch,tokens,token_dim,expansion,H,L', MAPPER_CASES)
def test_mapper_float32_as_accurate_as_reference(plugin, monkeypatch, batch, tokens, token_dim, expansion, H, L):
    # After 32 block calls float32 rounding is amplified to ~1e-3 in the reference itself; the fused w must
    # be as close to the float64 truth as the reference's w is, and close to it.
    monkeypatch.setattr(rtm, 'rms_norm', float64_rms_norm)
    m = make_mapper(tokens, token_dim, expansion, H, L)
    x = torch.randn(batch, 24)
    with torch.no_grad():
        exact = copy.deepcopy(m).double()(x.double(), use_fused=False)
        fused, ref = m(x, use_fused=True).double(), m(x, use_fused=False).double()
    ref_error = (ref - exact).abs().max().item()
    assert (fused - exact).abs().max().item() <= 3 * ref_error + 1e-5
    torch.testing.assert_close(fused, ref, atol=4 * ref_error + 1e-5, rtol=0)

def test_no_grad_steps_are_one_op_call(plugin, monkeypatch):
    calls = []
    recursion = rtm_fused.FusedMixer.recursion
    monkeypatch.setattr(rtm_fused.FusedMixer, 'recursion', lambda self, *a: calls.append(a[3:]) or recursion(self, *a))
    m = make_mapper(4, 16, 4.0, H=16, L=2)
    m(torch.randn(5, 24))
    assert calls == [(15, 2)]

def test_trace_and_half_parameters_match_reference(plugin):
    m = make_mapper(4, 16, 4.0, H=5, L=1)
    x = torch.randn(6, 24)
    with torch.no_grad():
        (w, trace), (w_ref, trace_ref) = m(x, return_trace=True), m(x, return_trace=True, use_fused=False)
        torch.testing.assert_close(trace, trace_ref, atol=1e-4, rtol=1e-4)
        # fp16 parameters: the block runs in float32 after promotion, in both implementations.
        m.half()
        torch.testing.assert_close(m(x, use_fused=True), m(x, use_fused=False), atol=1e-3, rtol=1e-3)

#----------------------------------------------------------------------------
# Switches and errors.

def test_use_fused_switch():
    for bad in ('yes', 1, 0, None):
        with pytest.raises(ValueError, match='use_fused must be one of'):
            make_mapper(4, 16, 4.0, 2, 1, use_fused=bad)
    with pytest.raises(ValueError, match='attention block has no fused op'):
        make_mapper(4, 16, 4.0, 2, 1, block='attention', use_fused=True)
    m = make_mapper(4, 16, 4.0, 2, 1, block='attention')
    with warnings.catch_warnings():
        warnings.simplefilter('error')      # auto on the attention block: the reference, silently
        assert m.block_fn(torch.zeros(1, 4, 16)) is m.block
    with pytest.raises(RuntimeError, match='attention block has no fused op'):
        m(torch.randn(2, 24), use_fused=True)
    assert make_mapper(4, 16, 4.0, 2, 1, use_fused=False).block_fn(torch.zeros(1, 4, 16)).__class__ is MixerBlock

def test_unsupported_dtype_is_reference_or_clear_error(plugin):
    block = random_block(4, 16, 4.0)
    assert rtm_fused.mixer_op(block, torch.zeros(1, 4, 16, dtype=torch.float16)) is None
    with pytest.raises(RuntimeError, match='supports torch.float32, torch.float64 on cpu, not torch.float16'):
        rtm_fused.mixer_op(block, torch.zeros(1, 4, 16, dtype=torch.float16), required=True)

def test_bad_input_gets_a_clear_message(plugin):
    block = random_block(4, 16, 4.0)
    w = rtm_fused.mixer_op(block, torch.zeros(1)).weights          # tgu [22, 4], td [4, 11], cgu [86, 16], cd [16, 43]
    x, inj = torch.randn(3, 4, 16), torch.randn(3, 4, 16)
    eps = block.eps
    cases = [
        ((x, inj, w[0], w[1], w[2], w[3].t().contiguous().t(), eps), 'channel down weight must be contiguous'),
        ((x, inj, w[0], w[1], w[2][:, :15].contiguous(), w[3], eps), r'channel gate_up weight must be \[86, 16\]'),
        ((x, inj, w[0][:21].contiguous(), w[1], w[2], w[3], eps), 'token gate_up weight must have an even'),
        ((x, inj, w[0], w[1][:, :10].contiguous(), w[2], w[3], eps), r'token down weight must be \[4, 11\]'),
        ((x, inj.double(), *w, eps), 'inj is Double but the carries are Float'),
        ((x, inj, w[0].double(), *w[1:], eps), 'token gate_up weight is Double'),
        ((x.half(), inj.half(), *w, eps), 'CPU tensors must be float32 or float64'),
        ((x, inj, w[0], w[1], w[2].to('meta'), w[3], eps), 'channel gate_up weight is on meta'),
        ((x, inj[:, :3].contiguous(), *w, eps), 'inj has shape'),
        ((x[:, :, :8], inj[:, :, :8], *w, eps), 'must be contiguous'),
        ((x, inj, *w, 0.0), 'eps must be positive'),
    ]
    for args, message in cases:
        with pytest.raises(RuntimeError, match=message):
            plugin.block(*args)
    with pytest.raises(RuntimeError, match='steps must be >= 0'):
        plugin.recursion(x, x, inj, *w, -1, 1, eps)
    with pytest.raises(RuntimeError, match='L must be >= 1'):
        plugin.recursion(x, x, inj, *w, 2, 0, eps)

def test_shared_memory_plan_and_fallback(plugin):
    # H100: 227 KB per block, 132 SMs. 8 tokens x 64 keeps its channel weights in shared memory; the core
    # default 4 x 128 (512 KB of channel weights) streams them.
    nb, rows, in_smem, nbytes, ks_up, ks_down, cluster = plugin.plan_cuda(4096, 8, 64, 21, 171, 232448, 132)
    assert (nb, rows, in_smem, cluster) == (4, 32, True, 1) and nbytes <= 232448
    assert (ks_up, ks_down) == (1, 2)          # 128 down tiles for 256 threads: k in two parts
    nb, rows, in_smem, nbytes, ks_up, ks_down, cluster = plugin.plan_cuda(4096, 4, 128, 11, 341, 232448, 132)
    assert (nb, rows, in_smem, ks_up, ks_down, cluster) == (8, 32, False, 1, 1, 1) and nbytes <= 232448
    # sm_90: the 524 KB of channel weights split over a cluster of 4 CTAs' shared memory, 33 clusters.
    nb, rows, in_smem, nbytes, _, _, cluster = plugin.plan_cuda(4096, 4, 128, 11, 341, 232448, 132, max_cluster=4)
    assert (nb, rows, in_smem, cluster) == (8, 32, True, 4) and nbytes <= 232448
    assert plugin.plan_cuda(1, 4, 128, 11, 341, 232448, 132, 4)[6] == 4
    # Batch 1: a one-sample tile of 4 rows; 88 gate/up and 32 down register tiles, k split 2 and 8 ways so
    # that 176 and 256 of the 256 threads work.
    assert plugin.plan_cuda(1, 4, 128, 11, 341, 232448, 132)[:2] == (1, 4)
    assert plugin.plan_cuda(1, 4, 128, 11, 341, 232448, 132)[4:] == (2, 8, 1)
    # A configuration whose single sample does not fit falls back with one warning.
    with pytest.warns(UserWarning, match='needs .* KB of shared memory'):
        assert not rtm_fused.fits_shared_memory(plugin, (4, 128, 11, 341), 64, 8 * 1024, 132)
    assert rtm_fused.fits_shared_memory(plugin, (4, 128, 11, 341), 64, 232448, 132)

#----------------------------------------------------------------------------
# The contract with rtm.py, and the packed-weight cache.

def test_block_contract_picks_the_fused_path(plugin):
    block = random_block(4, 16, 4.0)
    assert block.fusable is True and block.eps == 1e-5
    names = ('token_mix.gate_up', 'token_mix.down', 'channel_mix.gate_up', 'channel_mix.down')
    for w, name in zip(block.fused_weights(), names):
        torch.testing.assert_close(w, block.get_submodule(name).effective_weight())
    f = rtm_fused.mixer_op(block, torch.zeros(1, 4, 16))
    assert f.runs_recursion and f.eps == block.eps

    class Other(torch.nn.Module):                   # no contract: the reference, or a clear error
        pass
    assert rtm_fused.mixer_op(Other(), torch.zeros(1, 4, 16)) is None
    with pytest.raises(RuntimeError, match='Other does not offer the fused contract'):
        rtm_fused.mixer_op(Other(), torch.zeros(1, 4, 16), required=True)

def test_block_eps_is_the_ops_eps(plugin, monkeypatch):
    block = random_block(3, 10, 2.0, torch.float64)
    monkeypatch.setattr(block, 'eps', 0.5)          # a large eps changes the answer visibly
    x, inj = torch.randn(4, 3, 10, dtype=torch.float64), torch.randn(4, 3, 10, dtype=torch.float64)
    with torch.no_grad():
        fused, ref = rtm_fused.mixer_op(block, x)(x, inj), block(x, inj)
    torch.testing.assert_close(fused, ref, atol=1e-6, rtol=1e-6)    # rtm.rms_norm: float32 statistics

def test_packed_weights_are_cached_until_a_parameter_changes(plugin, monkeypatch):
    block = random_block(4, 16, 4.0)
    x = torch.randn(3, 4, 16)
    packs = []
    pack = plugin.pack
    monkeypatch.setattr(plugin, 'pack', lambda *a: packs.append(1) or pack(*a))
    first = rtm_fused.mixer_op(block, x)
    assert rtm_fused.mixer_op(block, x).packed is first.packed and len(packs) == 1    # no repacking per call
    with torch.no_grad():
        before = first(x, x)
        block.channel_mix.down.weight.mul_(2)      # in place, as an optimizer step: _version changes
    second = rtm_fused.mixer_op(block, x)
    assert len(packs) == 2 and second.packed is not first.packed
    with torch.no_grad():
        torch.testing.assert_close(second(x, x), block(x, x), atol=2e-5, rtol=1e-4)
        assert not torch.allclose(second(x, x), before)
    block.token_mix.gate_up.weight = torch.nn.Parameter(block.token_mix.gate_up.weight.detach() * 3)   # new storage
    third = rtm_fused.mixer_op(block, x)
    assert len(packs) == 3
    with torch.no_grad():
        torch.testing.assert_close(third(x, x), block(x, x), atol=2e-5, rtol=1e-4)
    rtm_fused.mixer_op(block, x.double())              # per dtype
    assert len(packs) == 4

def test_training_steps_see_the_new_weights(plugin):
    m = make_mapper(4, 16, 4.0, H=3, L=1)
    x = torch.randn(8, 24)
    opt = torch.optim.SGD(m.parameters(), lr=10.0)
    for _ in range(3):
        opt.zero_grad()
        m(x).square().sum().backward()
        opt.step()
        with torch.no_grad():
            torch.testing.assert_close(m(x, use_fused=True), m(x, use_fused=False), atol=1e-4, rtol=1e-4)

def test_packed_entry_points_check_their_input(plugin):
    block = random_block(4, 16, 4.0)
    f = rtm_fused.mixer_op(block, torch.zeros(1))
    x, inj = torch.randn(3, 4, 16), torch.randn(3, 4, 16)
    p = f.packed                                     # [22, 4], [4, 11], [16, 96], [43, 16]
    assert [tuple(t.shape) for t in p] == [(22, 4), (4, 11), (16, 96), (43, 16)]
    with pytest.raises(RuntimeError, match='packed weights are 4 tensors'):
        plugin.block_packed(x, inj, p[:3], 1e-5)
    with pytest.raises(RuntimeError, match=r'packed channel gate_up must be \[16, 96\]'):
        plugin.block_packed(x, inj, [p[0], p[1], block.fused_weights()[2].detach(), p[3]], 1e-5)
    with pytest.raises(RuntimeError, match=r'packed token gate_up must be \[22, 5\]'):
        plugin.block_packed(torch.randn(3, 5, 16), torch.randn(3, 5, 16), p, 1e-5)
    torch.testing.assert_close(plugin.block_packed(x, inj, p, 1e-5), plugin.block(x, inj, *f.weights, 1e-5))

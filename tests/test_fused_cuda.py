"""The fused RTM op's CUDA kernel against the reference, forward and gradients. Skipped without a CUDA GPU.

The first test builds the CUDA extension (a few minutes; TORCH_CUDA_ARCH_LIST shortens it)."""

import copy

import pytest
import torch

from rtm_plugin import rtm
from rtm_plugin.rtm import MixerBlock, RecursiveTokenMapper
from torch_utils_ext import rtm_fused

pytestmark = pytest.mark.skipif(not (torch.cuda.is_available() and torch.version.cuda),
                                reason='needs a CUDA GPU and a CUDA build of torch')

@pytest.fixture(scope='module')
def plugin():
    return rtm_fused.build('cuda')

def float64_rms_norm(x, eps=1e-5):
    return x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + eps)

def random_block(tokens, token_dim, expansion, seed=0):
    torch.manual_seed(seed)
    block = MixerBlock(tokens, token_dim, expansion, lr_multiplier=0.01)
    with torch.no_grad():
        for p in block.parameters():
            p.mul_(1 + 0.3 * torch.randn_like(p))
    return block.cuda()

@pytest.mark.parametrize('batch,tokens,token_dim,expansion', [
    (1, 4, 128, 4.0), (1, 8, 64, 4.0), (3, 3, 13, 2.0), (300, 4, 128, 4.0), (257, 8, 64, 4.0), (33, 5, 40, 3.0),
])
def test_block_forward_and_gradients_match_reference(plugin, batch, tokens, token_dim, expansion):
    block = random_block(tokens, token_dim, expansion)
    x = torch.randn(batch, tokens, token_dim, device='cuda', requires_grad=True)
    inj = torch.randn(batch, tokens, token_dim, device='cuda', requires_grad=True)
    grad_out = torch.randn_like(x)
    ref = block(x, inj)
    ref_grads = torch.autograd.grad(ref, [x, inj, *block.parameters()], grad_out)
    out = rtm_fused.mixer_op(block, x, required=True)(x, inj)
    grads = torch.autograd.grad(out, [x, inj, *block.parameters()], grad_out)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)
    # The CPU kernel runs the same math.
    cpu = rtm_fused.mixer_op(block.cpu(), x.cpu(), required=True)(x.detach().cpu(), inj.detach().cpu())
    torch.testing.assert_close(out.detach().cpu(), cpu, atol=1e-5, rtol=1e-5)

@pytest.mark.parametrize('batch,tokens,token_dim,H,L', [
    (1, 4, 128, 16, 1), (1, 8, 64, 16, 1), (5, 8, 64, 8, 2), (1000, 4, 128, 16, 1), (4096, 8, 64, 16, 1),
])
def test_mapper_as_accurate_as_reference(plugin, monkeypatch, batch, tokens, token_dim, H, L):
    monkeypatch.setattr(rtm, 'rms_norm', float64_rms_norm)
    torch.manual_seed(1)
    m = RecursiveTokenMapper(512, 512, tokens=tokens, token_dim=token_dim, H=H, L=L)
    x = torch.randn(batch, 512)
    m.cuda()
    x = x.cuda()
    with torch.no_grad():
        exact = copy.deepcopy(m).double()(x.double(), use_fused=False)     # float64 truth, reference path
        fused = m(x, use_fused=True).double()
        ref = m(x, use_fused=False).double()
    ref_error = (ref - exact).abs().max().item()
    assert (fused - exact).abs().max().item() <= 3 * ref_error + 1e-5
    torch.testing.assert_close(fused, ref, atol=4 * ref_error + 1e-5, rtol=0)

def test_mapper_gradients_match_reference(plugin):
    torch.manual_seed(2)
    m = RecursiveTokenMapper(64, 48, tokens=8, token_dim=64, H=2, L=1).cuda()
    x = torch.randn(32, 64, device='cuda')
    grads = {}
    for use_fused in (True, False):
        m.zero_grad()
        m(x, use_fused=use_fused).square().sum().backward()
        grads[use_fused] = [p.grad.clone() for p in m.parameters()]
    for g, r in zip(grads[True], grads[False]):
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-3)

def test_shared_memory_too_large_falls_back_with_a_warning(plugin):
    torch.manual_seed(3)
    m = RecursiveTokenMapper(32, 32, tokens=16, token_dim=2048, H=2, L=1, expansion=1.0).cuda()
    x = torch.randn(2, 32, device='cuda')
    with pytest.warns(UserWarning, match='shared memory'):
        w = m(x)
    with torch.no_grad():
        torch.testing.assert_close(w, m(x, use_fused=False))
    with pytest.raises(RuntimeError, match='does not fit in shared memory'):
        m(x, use_fused=True)

def test_float64_on_cuda_uses_the_reference(plugin):
    block = random_block(4, 16, 4.0).double()
    x = torch.zeros(1, 4, 16, device='cuda', dtype=torch.float64)
    assert rtm_fused.mixer_op(block, x) is None
    with pytest.raises(RuntimeError, match='not torch.float64'):
        rtm_fused.mixer_op(block, x, required=True)

def test_launch_plan_of_this_gpu_and_its_answer(plugin):
    # sm_90: 4 x 128's channel weights do not fit one SM and are split over a cluster of 4 CTAs; before sm_90
    # they stream from global memory. Either way the recursion matches the CPU op (the same math).
    props = torch.cuda.get_device_properties(0)
    smem = props.shared_memory_per_block_optin
    max_cluster = 4 if props.major >= 9 else 1
    for batch in (1, 37, 600):
        plan = plugin.plan_cuda(batch, 4, 128, 11, 341, smem, props.multi_processor_count, max_cluster)
        assert plan[6] == max_cluster and plan[2] == (max_cluster > 1), plan
        block = random_block(4, 128, 4.0)
        carries = [torch.randn(batch, 4, 128, device='cuda') for _ in range(3)]
        f = rtm_fused.mixer_op(block, carries[0], required=True)
        z_H, z_L = f.recursion(*carries, 3, 2)
        cpu = rtm_fused.mixer_op(block.cpu(), carries[0].cpu(), required=True)
        c_H, c_L = cpu.recursion(*(c.cpu() for c in carries), 3, 2)
        torch.testing.assert_close(z_H.cpu(), c_H, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(z_L.cpu(), c_L, atol=1e-4, rtol=1e-4)

"""The Recursive Token Mapper and the drop-in mapping interface, on CPU."""

import pickle

import pytest
import torch

from rtm_plugin.mapping import MLPMappingNetwork, RTMMappingNetwork, build_mapping
from rtm_plugin.memory import saved_tensors
from rtm_plugin.rtm import RecursiveTokenMapper, update_w_avg

SMALL = dict(z_dim=32, c_dim=0, w_dim=48, num_ws=5, tokens=4, token_dim=16)

def n_params(m):
    return sum(p.numel() for p in m.parameters())

def one_hot(n, c_dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.one_hot(torch.randint(c_dim, [n], generator=g), c_dim).float()

@pytest.fixture(params=['mlp', 'attention'])
def block(request):
    return request.param

#----------------------------------------------------------------------------
# The recursion.

def test_paper_parameter_count_at_stylegan2_dims():
    # The paper: RTM 0.66M vs 0.53M for the 2-layer MLP at z_dim = w_dim = 512. Our defaults reproduce both.
    assert n_params(RTMMappingNetwork(512, 0, 512, 14)) == 656_388
    assert n_params(MLPMappingNetwork(512, 0, 512, 14, num_layers=2)) == 525_312

@pytest.mark.parametrize('H,L', [(1, 1), (2, 3), (16, 1), (8, 2), (64, 4)])
def test_parameter_count_independent_of_H_and_L(block, H, L):
    base = n_params(RTMMappingNetwork(**SMALL, block=block))
    assert n_params(RTMMappingNetwork(**SMALL, block=block, H=H, L=L)) == base

def test_saved_activations_flat_in_H(block):
    torch.manual_seed(0)
    m = RTMMappingNetwork(**SMALL, block=block)
    z = torch.randn(16, SMALL['z_dim'])
    _, n1, b1 = saved_tensors(m, z, H=1)
    for H in (4, 16, 64):
        _, n, b = saved_tensors(m, z, H=H)
        assert n <= 1.1 * n1 and b <= 1.1 * b1, (H, n, n1, b, b1)

def test_short_gradient_equals_one_step_from_detached_carries():
    # Only the last outer step trains: its gradient is that of one step started from the no-grad carries.
    torch.manual_seed(0)
    t = RecursiveTokenMapper(8, 12, tokens=3, token_dim=8, H=5, L=2)
    x = torch.randn(4, 8)
    t(x).square().sum().backward()
    g_full = [p.grad.clone() for p in t.parameters()]
    t.zero_grad()

    from rtm_plugin.rtm import pixel_norm
    z0 = t.lift(pixel_norm(x)).view(-1, 3, 8)
    with torch.no_grad():
        z_H, z_L = t.H_init.expand_as(z0), t.L_init.expand_as(z0)
        for _ in range(4):
            z_H, z_L = t.step(z_H, z_L, z0, 2)
    z_H, _ = t.step(z_H, z_L, z0, 2)
    t.read(z_H).square().sum().backward()
    for a, p in zip(g_full, t.parameters()):
        torch.testing.assert_close(a, p.grad)

def test_every_parameter_gets_a_gradient(block):
    torch.manual_seed(0)
    m = RTMMappingNetwork(**{**SMALL, 'c_dim': 7}, block=block, H=3, L=2)
    m(torch.randn(6, 32), one_hot(6, 7)).square().mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing

def test_H_override_changes_output_smoothly():
    torch.manual_seed(0)
    m = RTMMappingNetwork(**SMALL, H=16).eval()
    z = torch.randn(64, SMALL['z_dim'])
    with torch.no_grad():
        ws = [m(z, H=h)[:, 0] for h in range(1, 65)]
        spread = (ws[15] - m(torch.randn(64, SMALL['z_dim']))[:, 0]).norm(dim=1).mean()
    steps = torch.stack([(ws[h] - ws[h - 1]).norm(dim=1).mean() for h in range(1, 64)])
    assert torch.isfinite(torch.stack(ws)).all()
    assert (steps < spread).all(), (steps.max(), spread)             # one more step never jumps to another sample
    assert (steps[7:] < 0.35 * spread).all(), (steps[7:].max(), spread)  # past H=8 each step is a small move
    assert steps[-16:].mean() < steps[0]                              # that settles rather than grows
    torch.testing.assert_close(m(z)[:, 0], ws[15])                    # the default is H=16

def test_trace_last_frame_is_the_output(block):
    torch.manual_seed(0)
    m = RTMMappingNetwork(**SMALL, block=block, H=6).eval()
    z = torch.randn(5, SMALL['z_dim'])
    w, trace = m(z, truncation_psi=0.7, return_trace=True)
    assert trace.shape == (6, 5, SMALL['num_ws'], SMALL['w_dim'])
    torch.testing.assert_close(trace[-1], w)
    torch.testing.assert_close(trace[2], m(z, truncation_psi=0.7, H=3))

#----------------------------------------------------------------------------
# The drop-in interface.

def test_output_is_contiguous_float32_broadcast():
    m = RTMMappingNetwork(**SMALL)
    w = m(torch.randn(3, 32), None)
    assert w.shape == (3, SMALL['num_ws'], SMALL['w_dim']) and w.dtype == torch.float32 and w.is_contiguous()
    w[:, 2:] = 0  # upstream's style mixing writes in place
    assert RTMMappingNetwork(**{**SMALL, 'num_ws': None})(torch.randn(3, 32)).shape == (3, SMALL['w_dim'])

def test_half_precision_input_gives_float32():
    w = RTMMappingNetwork(**SMALL)(torch.randn(3, 32).half())
    assert w.dtype == torch.float32

def test_truncation_psi_zero_returns_w_avg():
    torch.manual_seed(0)
    m = RTMMappingNetwork(**SMALL).train()
    m(torch.randn(16, 32))                      # moves w_avg away from zero
    assert m.w_avg.abs().sum() > 0
    w = m.eval()(torch.randn(4, 32), truncation_psi=0)
    torch.testing.assert_close(w, m.w_avg.expand_as(w))
    w_cut = m(torch.randn(4, 32), truncation_psi=0, truncation_cutoff=2)
    torch.testing.assert_close(w_cut[:, :2], m.w_avg.expand(4, 2, -1))
    assert not torch.allclose(w_cut[:, 2:], m.w_avg.expand(4, SMALL['num_ws'] - 2, -1))

def test_w_avg_updates_only_when_it_should():
    torch.manual_seed(0)
    m = RTMMappingNetwork(**SMALL, w_avg_beta=0.9)
    z = torch.randn(8, 32)

    def moved(**kw):
        before = m.w_avg.clone()
        m(z, **kw)
        return not torch.equal(before, m.w_avg)

    m.train()
    assert moved()                                   # stylegan2-ada: training
    assert not moved(skip_w_avg_update=True)         # stylegan2-ada: skipped
    assert not moved(update_emas=False)              # stylegan3/StudioGAN: only when asked
    assert moved(update_emas=True)
    m.eval()
    assert not moved()
    assert moved(update_emas=True)
    expected = m(z, update_emas=False)[:, 0].mean(0).lerp(m.w_avg, 0.9)
    m(z, update_emas=True)
    torch.testing.assert_close(m.w_avg, expected)

def test_conditional_path(block):
    torch.manual_seed(0)
    m = RTMMappingNetwork(**{**SMALL, 'c_dim': 10}, block=block).eval()
    z = torch.randn(1, 32).repeat(4, 1)
    w = m(z, one_hot(4, 10, seed=3))
    c = torch.eye(10)[:4]
    w = m(z, c)
    assert not torch.allclose(w[0], w[1])            # same z, different labels
    # Batch 1 against batch 4: CPU attention and GEMM kernels block by batch size, so allow float32 noise.
    torch.testing.assert_close(m(z[:1], c[:1]), w[:1], rtol=1e-4, atol=1e-5)
    label_only = RTMMappingNetwork(0, 10, 48, 5, tokens=4, token_dim=16)
    assert label_only(None, c).shape == (4, 5, 48)   # z_dim=0, as the Discriminator's mapper

def test_deterministic_under_seed(block):
    def run():
        torch.manual_seed(123)
        m = RTMMappingNetwork(**SMALL, block=block)
        return m(torch.randn(4, 32))
    torch.testing.assert_close(run(), run(), rtol=0, atol=0)

def test_pickles_and_state_dict_round_trip():
    torch.manual_seed(0)
    m = RTMMappingNetwork(**SMALL, H=4).eval()
    z = torch.randn(3, 32)
    m2 = pickle.loads(pickle.dumps(m))
    torch.testing.assert_close(m2(z), m(z), rtol=0, atol=0)
    m3 = RTMMappingNetwork(**SMALL, H=4)
    m3.load_state_dict(m.state_dict())
    torch.testing.assert_close(m3.eval()(z), m(z), rtol=0, atol=0)
    assert {'trunk.H_init', 'trunk.L_init', 'w_avg'} <= set(m.state_dict())

#----------------------------------------------------------------------------
# w_avg: a bad row or an empty batch must not poison it for good; fp16/bf16 mappers train.

def mapper(kind, **kwargs):
    if kind == 'rtm':
        return RTMMappingNetwork(**SMALL, **kwargs)
    return MLPMappingNetwork(32, 0, SMALL['w_dim'], SMALL['num_ws'], num_layers=2, **kwargs)

@pytest.mark.parametrize('kind', ['rtm', 'mlp'])
def test_w_avg_skips_non_finite_rows(kind):
    torch.manual_seed(0)
    m = mapper(kind, w_avg_beta=0.9).train()
    m(torch.randn(8, 32))                                   # w_avg away from zero
    z = torch.randn(8, 32)
    z[0, 3], z[5] = float('nan'), float('inf')              # one NaN entry, one inf row
    good = [1, 2, 3, 4, 6, 7]
    before = m.w_avg.clone()
    expected = m(z[good], update_emas=False)[:, 0].mean(0).lerp(before, 0.9)
    m(z)
    assert torch.isfinite(m.w_avg).all()
    torch.testing.assert_close(m.w_avg, expected, rtol=1e-4, atol=1e-4)   # batch 6 vs 8: float32 kernel noise
    assert torch.isfinite(m.eval()(torch.randn(4, 32), truncation_psi=0.5)).all()

@pytest.mark.parametrize('kind', ['rtm', 'mlp'])
def test_w_avg_unchanged_by_empty_or_all_bad_batches(kind):
    torch.manual_seed(0)
    m = mapper(kind).train()
    m(torch.randn(8, 32))
    before = m.w_avg.clone()
    assert m(torch.randn(0, 32)).shape == (0, SMALL['num_ws'], SMALL['w_dim'])
    m(torch.full([3, 32], float('nan')))
    assert torch.equal(m.w_avg, before)

def test_update_w_avg_helper_dtypes():
    w_avg = torch.zeros(4, dtype=torch.bfloat16)
    w = torch.tensor([[1.0, 2, 3, 4], [float('nan'), 0, 0, 0], [3.0, 2, 1, 0]], dtype=torch.float16)
    update_w_avg(w_avg, w, 0.5)
    assert w_avg.dtype == torch.bfloat16
    torch.testing.assert_close(w_avg.float(), torch.tensor([1.0, 1, 1, 1]))
    w_avg64 = torch.ones(2, dtype=torch.float64)
    update_w_avg(w_avg64, torch.tensor([[1 + 1e-12, 1.0]], dtype=torch.float64), 0.0)     # no float32 rounding
    assert w_avg64[0].item() == 1 + 1e-12

@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('kind', ['rtm', 'mlp'])
def test_half_and_bfloat16_mappers_train(kind, dtype):
    torch.manual_seed(0)
    m = mapper(kind).to(dtype).train()
    opt = torch.optim.SGD(m.parameters(), lr=1e-3)
    for _ in range(2):
        w = m(torch.randn(8, 32, dtype=dtype))
        w.square().mean().backward()
        opt.step()
        opt.zero_grad()
    assert m.w_avg.dtype == dtype and torch.isfinite(m.w_avg).all() and m.w_avg.abs().sum() > 0
    assert all(torch.isfinite(p).all() for p in m.parameters())
    w = m.eval()(torch.randn(4, 32, dtype=dtype), truncation_psi=0.5, truncation_cutoff=2)
    assert w.dtype == torch.float32 and torch.isfinite(w).all()

#----------------------------------------------------------------------------
# Baselines.

@pytest.mark.parametrize('depth', [2, 8, 16, 32])
def test_mlp_baseline_any_depth(depth):
    torch.manual_seed(0)
    m = MLPMappingNetwork(32, 0, 48, 5, num_layers=depth)
    assert n_params(m) == 32 * 48 + 48 + (depth - 1) * (48 * 48 + 48)
    w, trace = m(torch.randn(3, 32), return_trace=True)
    assert w.shape == (3, 5, 48) and trace.shape == (depth, 3, 5, 48)
    torch.testing.assert_close(trace[-1], w)
    w.sum().backward()
    assert all(p.grad is not None for p in m.parameters())

def test_build_mapping():
    assert isinstance(build_mapping('rtm', **SMALL), RTMMappingNetwork)
    assert isinstance(build_mapping('mlp', z_dim=8, c_dim=0, w_dim=8, num_ws=2, num_layers=2), MLPMappingNetwork)
    with pytest.raises(ValueError, match='map must be one of'):
        build_mapping('resnet', **SMALL)

#----------------------------------------------------------------------------
# Bad input: a ValueError that names the problem.

@pytest.mark.parametrize('kwargs,match', [
    (dict(H=0), 'H must be a positive integer'),
    (dict(L=0), 'L must be a positive integer'),
    (dict(H=2.5), 'H must be a positive integer'),
    (dict(tokens=0), 'tokens must be a positive integer'),
    (dict(token_dim=-3), 'token_dim must be a positive integer'),
    (dict(block='conv'), 'block must be one of'),
    (dict(block='attention', token_dim=15, heads=4), 'divisible by heads'),
    (dict(expansion=0), 'expansion must be a positive'),
    (dict(z_dim=0), 'no input'),
])
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RTMMappingNetwork(**{**SMALL, **kwargs})

def test_bad_calls():
    m = RTMMappingNetwork(**{**SMALL, 'c_dim': 4})
    z, c = torch.randn(2, 32), one_hot(2, 4)
    with pytest.raises(ValueError, match=r'z must have shape \[N, 32\], got \[2, 31\]'):
        m(torch.randn(2, 31), c)
    with pytest.raises(ValueError, match=r'z must have shape'):
        m(torch.randn(32), c)
    with pytest.raises(ValueError, match='c is required'):
        m(z, None)
    with pytest.raises(ValueError, match='batch size'):
        m(z, one_hot(3, 4))
    with pytest.raises(ValueError, match='H must be a positive integer'):
        m(z, c, H=0)
    with pytest.raises(ValueError, match='L must be a positive integer'):
        m(z, c, L=-1)
    with pytest.raises(ValueError, match='z must be a tensor'):
        m([[0.0] * 32], c)

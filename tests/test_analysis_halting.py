"""Adaptive halting in the mapper (RecursiveTokenMapper.forward(halt_tol=..., H_min=...))."""

import pytest
import torch

from rtm_plugin.mapping import RTMMappingNetwork
from rtm_plugin.rtm import RecursiveTokenMapper

FUSED_MODES = [False, 'auto']

def tiny_mapper(seed=0):
    torch.manual_seed(seed)
    return RecursiveTokenMapper(16, 16, tokens=2, token_dim=8, H=8, L=2)

@pytest.mark.parametrize('use_fused', FUSED_MODES)
def test_zero_tol_runs_every_step_and_equals_fixed_H_max(use_fused):
    m, x = tiny_mapper(), torch.randn(32, 16)
    with torch.no_grad():
        fixed = m(x, H=12, use_fused=use_fused)
        halted, steps = m(x, H=12, halt_tol=0, use_fused=use_fused)
    assert torch.equal(steps, torch.full([32], 12))
    assert torch.allclose(halted, fixed, atol=1e-6, rtol=0)

@pytest.mark.parametrize('use_fused', FUSED_MODES)
def test_huge_tol_stops_at_H_min(use_fused):
    m, x = tiny_mapper(), torch.randn(32, 16)
    with torch.no_grad():
        for h_min in (1, 3):
            halted, steps = m(x, H=12, halt_tol=1e9, H_min=h_min, use_fused=use_fused)
            assert torch.equal(steps, torch.full([32], h_min))
            assert torch.allclose(halted, m(x, H=h_min, use_fused=use_fused), atol=1e-6, rtol=0)

@pytest.mark.parametrize('use_fused', FUSED_MODES)
def test_each_sample_equals_fixed_H_at_its_own_step_count(use_fused):
    m, x = tiny_mapper(), torch.randn(48, 16)
    with torch.no_grad():
        halted, steps = m(x, H=24, halt_tol=1e-2, use_fused=use_fused)
        assert 1 < len(steps.unique()), 'the test needs samples that stop at different steps'
        for h in steps.unique().tolist():
            rows = steps == h
            assert torch.allclose(halted[rows], m(x, H=h, use_fused=use_fused)[rows], atol=1e-5, rtol=1e-5)

def test_stops_where_the_relative_change_first_drops_below_tol():
    m, x, tol = tiny_mapper(), torch.randn(16, 16), 3e-2
    with torch.no_grad():
        _, steps = m(x, H=20, halt_tol=tol, H_min=2, use_fused=False)
        w0 = m.read(m.H_init.expand(16, 2, 8))
        _, trace = m(x, H=20, return_trace=True, use_fused=False)
    trace = torch.cat([w0[None], trace])
    change = (trace[1:] - trace[:-1]).norm(dim=2) / trace[1:].norm(dim=2)           # [20, N], step h at h-1
    for i, used in enumerate(steps.tolist()):
        below = [h for h in range(2, 21) if change[h - 1, i] < tol]
        assert used == (below[0] if below else 20)

def test_finished_rows_are_not_recomputed():
    m, x, rows_seen = tiny_mapper(), torch.randn(32, 16), []
    hook = m.block.register_forward_hook(lambda mod, args, out: rows_seen.append(len(out)))
    with torch.no_grad():
        m(x, H=12, halt_tol=1e9, H_min=2, use_fused=False)
    hook.remove()
    assert rows_seen == [32] * 2 * (m.L + 1)                    # two outer steps of L+1 block calls, then stop

def test_default_and_training_path_unchanged():
    m, x = tiny_mapper(), torch.randn(8, 16)
    w = m(x, use_fused=False)
    assert w.requires_grad and not hasattr(m, 'halt_steps')
    with torch.no_grad():
        halted, steps = m(x, halt_tol=0.0, use_fused=False)
    assert not halted.requires_grad and torch.equal(steps, torch.full([8], m.H)) and torch.allclose(halted, w.detach(), atol=1e-6, rtol=0)

def test_bad_halting_arguments():
    m, x = tiny_mapper(), torch.randn(4, 16)
    for bad in (-1, float('nan'), 'x', True):
        with pytest.raises(ValueError, match='halt_tol'):
            m(x, halt_tol=bad)
    with pytest.raises(ValueError, match='H_min'):
        m(x, H=4, halt_tol=0.1, H_min=5)
    with pytest.raises(ValueError, match='return_trace'):
        m(x, halt_tol=0.1, return_trace=True)

def test_mapping_network_passes_halting_to_the_trunk():
    torch.manual_seed(0)
    G_mapping = RTMMappingNetwork(16, 0, 16, num_ws=3, tokens=2, token_dim=8, H=4).eval()
    z = torch.randn(8, 16)
    with torch.no_grad():
        ws, steps = G_mapping(z, None, H=6, halt_tol=0)
        assert torch.allclose(ws, G_mapping(z, None, H=6), atol=1e-6, rtol=0) and ws.shape == (8, 3, 16)
    assert torch.equal(steps, torch.full([8], 6)) and not hasattr(G_mapping.trunk, 'halt_steps')

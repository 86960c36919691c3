"""One mapper head (rtm.mapper_forward) for every mapper class: rtm_plugin.mapping's, the persisted StyleGAN
subclasses (stylegan_mapper.py, both trees) and StudioGAN's, here against stub upstream base classes
(upstream_stubs.py); the real checkouts are in integration/. Also analysis.view on each, and on the mapper of a
StyleGAN pickle written by the layout before this head (tests/data/legacy_676eb91: our own earlier source)."""

import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import upstream_stubs
from rtm_plugin.analysis.view import GeneratorView
from rtm_plugin.mapping import MLPMappingNetwork, RTMMappingNetwork

DIMS = dict(z_dim=8, c_dim=3, w_dim=16, num_ws=4)
TRUNK = dict(tokens=2, token_dim=8, H=3)
LEGACY = Path(__file__).with_name('data') / 'legacy_676eb91'

def subclasses(monkeypatch):
    """{name: mapper class} for every upstream subclass, each imported against its tree's stubs."""
    out = {}
    for tree in upstream_stubs.TREES:
        mod = upstream_stubs.install(monkeypatch, tree)
        out[f'{tree}:RTMMappingNetwork'] = mod.RTMMappingNetwork
        if tree == 'stylegan3':
            out['stylegan3:RTMMappingNetworkSG3'] = mod.RTMMappingNetworkSG3
    return out

@pytest.fixture
def classes(monkeypatch):
    return subclasses(monkeypatch)

def reference(**kwargs):
    torch.manual_seed(0)
    m = RTMMappingNetwork(**DIMS, **TRUNK, **kwargs)
    with torch.no_grad():
        m.w_avg.normal_()
    return m

def twin(cls, ref):
    """`cls` built with ref's dimensions, holding ref's weights and w_avg."""
    torch.manual_seed(1)
    m = cls(**DIMS, **TRUNK)
    m.load_state_dict(ref.state_dict())
    return m

def inputs(n=5):
    g = torch.Generator().manual_seed(2)
    return torch.randn([n, DIMS['z_dim']], generator=g), torch.eye(DIMS['c_dim'])[torch.arange(n) % DIMS['c_dim']]

def test_every_mapper_class_has_one_forward_signature(classes):
    ours = inspect.signature(RTMMappingNetwork.forward)
    assert list(ours.parameters)[:3] == ['self', 'z', 'c']
    for name, cls in {**classes, 'MLPMappingNetwork': MLPMappingNetwork}.items():
        assert inspect.signature(cls.forward) == ours, name
    for option in ('update_emas', 'skip_w_avg_update', 'H', 'L', 'halt_tol', 'H_min', 'return_trace'):
        assert option in ours.parameters

def test_subclasses_compute_what_the_reference_computes(classes):
    ref = reference().eval()
    z, c = inputs()
    for name, cls in classes.items():
        m = twin(cls, ref).eval()
        with torch.no_grad():
            for kwargs in (dict(), dict(truncation_psi=0.7), dict(truncation_psi=0.5, truncation_cutoff=2),
                           dict(H=5, L=2)):
                assert torch.equal(m(z, c, **kwargs), ref(z, c, **kwargs)), (name, kwargs)
            ws, trace = m(z, c, truncation_psi=0.7, return_trace=True)
            ref_ws, ref_trace = ref(z, c, truncation_psi=0.7, return_trace=True)
            assert torch.equal(ws, ref_ws) and torch.equal(trace, ref_trace) and trace.shape == (3, 5, 4, 16), name

def test_truncation_and_cutoff():
    ref = reference().eval()
    z, c = inputs()
    with torch.no_grad():
        free = ref(z, c)
        cut = ref(z, c, truncation_psi=0.5, truncation_cutoff=2)
    assert free.is_contiguous() and cut.is_contiguous() and free.shape == (5, 4, 16)
    torch.testing.assert_close(cut[:, :2], ref.w_avg.lerp(free[:, :2], 0.5))
    assert torch.equal(cut[:, 2:], free[:, 2:])
    torch.testing.assert_close(ref(z, c, truncation_psi=0), ref.w_avg.expand(5, 4, 16))
    no_avg = RTMMappingNetwork(**DIMS, **TRUNK, w_avg_beta=None)
    with pytest.raises(ValueError, match='^truncation needs w_avg: [^\n]*$'):
        no_avg(z, c, truncation_psi=0.7)

# When w_avg moves, per tree: (training mode, keywords) -> moves. stylegan2-ada-pytorch (and rtm_plugin.mapping,
# which upstream-free callers use as it) moves in training mode unless skip_w_avg_update; stylegan3 and StudioGAN
# only when update_emas. An explicit update_emas decides in every class.
SG2ADA_RULE = {(True, ()): True, (True, ('skip_w_avg_update',)): False, (False, ()): False,
               (False, ('update_emas',)): True, (True, ('update_emas=False',)): False}
EMAS_RULE = {(True, ()): False, (True, ('skip_w_avg_update',)): False, (False, ()): False,
             (False, ('update_emas',)): True, (True, ('update_emas=False',)): False}
RULES = {'rtm_plugin.mapping': SG2ADA_RULE, 'stylegan2-ada-pytorch:RTMMappingNetwork': SG2ADA_RULE,
         'stylegan3:RTMMappingNetwork': EMAS_RULE, 'stylegan3:RTMMappingNetworkSG3': EMAS_RULE,
         'studiogan:RTMMappingNetwork': EMAS_RULE}

def test_when_w_avg_moves_follows_each_tree(classes):
    ref = reference()
    z, c = inputs()
    keywords = {'skip_w_avg_update': dict(skip_w_avg_update=True), 'update_emas': dict(update_emas=True),
                'update_emas=False': dict(update_emas=False)}
    for name, rule in RULES.items():
        for (training, given), moves in rule.items():
            m = ref if name == 'rtm_plugin.mapping' else twin(classes[name], ref)
            m.train(training)
            before = m.w_avg.clone()
            with torch.no_grad():
                m(z, c, **{k: v for g in given for k, v in keywords[g].items()})
            assert (not torch.equal(m.w_avg, before)) == moves, (name, training, given)
            m.w_avg.copy_(before)

def test_halting_returns_the_steps_of_each_sample(classes):
    ref = reference().eval()
    z, c = inputs(6)
    for name, m in {'ref': ref, **{n: twin(cls, ref).eval() for n, cls in classes.items()}}.items():
        with torch.no_grad():
            ws, steps = m(z, c, H=4, halt_tol=0)                 # tol 0: every sample runs all H steps
            assert torch.equal(steps, torch.full([6], 4)) and torch.allclose(ws, m(z, c, H=4), atol=1e-6), name
            ws, steps = m(z, c, H=4, halt_tol=1e9, H_min=2)      # huge tol: every sample stops at H_min
            assert torch.equal(steps, torch.full([6], 2)) and torch.allclose(ws, m(z, c, H=2), atol=1e-6), name
        assert not hasattr(m.trunk, 'halt_steps'), name

def test_the_mlp_mapper_refuses_rtm_options():
    m = MLPMappingNetwork(**DIMS, num_layers=2)
    z, c = inputs()
    assert m(z, c).shape == (5, 4, 16)
    for kwargs, names in [(dict(H=4), 'H'), (dict(halt_tol=0.1), 'halt_tol'), (dict(L=2, H_min=2), 'H_min, L'),
                          (dict(use_fused=False), 'use_fused')]:
        with pytest.raises(ValueError, match=f'^{names}: options of the RTM mapper; this mapper is an MLP[^\n]*$'):
            m(z, c, **kwargs)

@pytest.mark.parametrize('z, c, message', [
    (torch.zeros(5, 7), torch.zeros(5, 3), r'z must have shape \[N, 8\], got \[5, 7\]'),
    (torch.zeros(5, 8, 1), torch.zeros(5, 3), r'z must have shape \[N, 8\], got \[5, 8, 1\]'),
    ([0.0] * 8, torch.zeros(1, 3), r'z must be a tensor of shape \[N, 8\], got list'),
    (torch.zeros(5, 8), None, r'c is required: this mapper was built with c_dim=3'),
    (torch.zeros(5, 8), torch.zeros(5, 2), r'c must have shape \[N, 3\], got \[5, 2\]'),
    (torch.zeros(5, 8), torch.zeros(4, 3), r'z and c disagree on the batch size: 5 vs 4'),
])
def test_bad_inputs_are_one_line_value_errors(classes, z, c, message):
    ref = reference()
    for name, m in {'ref': ref, **{n: twin(cls, ref) for n, cls in classes.items()}}.items():
        with pytest.raises(ValueError, match=f'^{message}$'):
            m(z, c)

def test_building_an_rtm_subclass_without_rtm_plugin_says_what_is_missing(monkeypatch):
    mod = upstream_stubs.install(monkeypatch, 'stylegan2-ada-pytorch')
    monkeypatch.setattr(mod, 'rtm', None)
    with pytest.raises(ImportError, match='needs the rtm_plugin package'):
        mod.RTMMappingNetwork(**DIMS)

#----------------------------------------------------------------------------
# analysis.view decides by mapper_kind, on every layout.

class Generator(torch.nn.Module):
    def __init__(self, mapping):
        super().__init__()
        self.mapping = mapping
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = (DIMS[k] for k in ('z_dim', 'c_dim', 'w_dim', 'num_ws'))

def test_view_reads_every_mapper_class_by_its_kind(classes):
    ref = reference().eval()
    z, c = inputs()
    mlp = MLPMappingNetwork(**DIMS, num_layers=3)
    upstream = upstream_stubs.StyleGAN2MappingNetwork(**DIMS, num_layers=5)
    for name, m, kind, depth in [('ref', ref, 'rtm', 3), ('mlp', mlp, 'mlp', 3), ('upstream', upstream, 'mlp', 5),
                                 *[(n, twin(cls, ref).eval(), 'rtm', 3) for n, cls in classes.items()]]:
        view = GeneratorView(Generator(m))
        assert (view.kind, view.depth) == (kind, depth), name
        with torch.no_grad():
            w = view.w(view.trunk_input(z, c))
            if kind == 'rtm':
                assert torch.equal(view.ws(w), m(z, c)), name
                w_halt, steps = view.w(view.trunk_input(z, c), H=4, halt_tol=1e9, H_min=2)
                assert torch.equal(steps, torch.full([5], 2)), name
    with pytest.raises(ValueError, match='unknown mapping network'):
        GeneratorView(Generator(SimpleNamespace(mapper_kind='gru', trunk=None)))

def legacy_mapper(monkeypatch, tree='stylegan2-ada-pytorch', name='RTMMappingNetwork'):
    """An RTM mapper of `tree` in the layout before the shared head (commit 676eb91): its module and rtm.py from
    tests/data, as a pickle of that time embeds them, over the stub upstream."""
    upstream_stubs.install(monkeypatch, tree)
    legacy_rtm = upstream_stubs.load_source(monkeypatch, 'legacy_rtm_676eb91', LEGACY / 'rtm.py.txt')
    legacy = upstream_stubs.load_source(monkeypatch, 'legacy_stylegan_mapper_676eb91',
                                        LEGACY / 'stylegan_mapper.py.txt')
    legacy.rtm = legacy_rtm                                 # what `from rtm_plugin import rtm` gave it then
    torch.manual_seed(0)
    return getattr(legacy, name)(**DIMS, **TRUNK).eval()

def test_view_works_on_the_mapper_of_an_older_pickle(monkeypatch):
    old = legacy_mapper(monkeypatch)
    assert not hasattr(old.trunk, 'mapper_forward')         # really the old layout: no shared head
    z, c = inputs()
    view = GeneratorView(Generator(old))
    assert (view.kind, view.depth) == ('rtm', 3)
    with torch.no_grad():
        x = view.trunk_input(z, c)
        assert torch.equal(x, old.trunk_input(z, c))
        assert torch.equal(view.ws(view.w(x)), old(z, c))
        w, steps = view.w(x, H=4, halt_tol=1e9, H_min=2)     # the old trunk keeps its steps in halt_steps
        assert torch.equal(steps, torch.full([5], 2)) and torch.allclose(w, old.trunk(x, H=2), atol=1e-6)

def test_old_layout_weights_load_into_the_new_classes(monkeypatch, classes):
    """--resume and load_state_dict by name: the tensors of an old-layout mapper fit the new class, same outputs."""
    old = legacy_mapper(monkeypatch)
    with torch.no_grad():
        old.w_avg.normal_()
    new = twin(classes['stylegan2-ada-pytorch:RTMMappingNetwork'], old).eval()
    z, c = inputs()
    with torch.no_grad():
        assert torch.equal(new(z, c, truncation_psi=0.7), old(z, c, truncation_psi=0.7))

# The calls upstream's own code makes (loss.py, networks.py, metrics, generation scripts), per tree: training mode
# and keywords. Old and new layout must agree on them: outputs, and where w_avg ends up.
UPSTREAM_CALLS = {
    'stylegan2-ada-pytorch': [(True, {}), (True, dict(skip_w_avg_update=True)), (False, {}),
                              (False, dict(truncation_psi=0.7, truncation_cutoff=2))],
    'stylegan3': [(True, dict(update_emas=True)), (True, dict(update_emas=False)), (False, dict(update_emas=False)),
                  (False, dict(truncation_psi=0.7, truncation_cutoff=2))],
}

@pytest.mark.parametrize('tree, name', [('stylegan2-ada-pytorch', 'RTMMappingNetwork'),
                                        ('stylegan3', 'RTMMappingNetwork'), ('stylegan3', 'RTMMappingNetworkSG3')])
def test_new_layout_matches_the_old_on_upstreams_calls(monkeypatch, classes, tree, name):
    """The redesign changed no number: for every call upstream makes, the new class gives the old class's ws and
    moves w_avg as it did (training mode included), in each tree's own rule."""
    old = legacy_mapper(monkeypatch, tree, name)
    with torch.no_grad():
        old.w_avg.normal_()
    new = twin(classes[f'{tree}:{name}'], old)
    assert new.w_avg_beta == old.w_avg_beta == (0.995 if tree == 'stylegan2-ada-pytorch' else 0.998)
    z, c = inputs()
    for training, kwargs in UPSTREAM_CALLS[tree]:
        old.train(training)
        new.train(training)
        with torch.no_grad():
            assert torch.equal(new(z, c, **kwargs), old(z, c, **kwargs)), (training, kwargs)
        assert torch.equal(new.w_avg, old.w_avg), (training, kwargs)

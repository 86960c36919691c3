"""The glue the patched stylegan2-ada-pytorch and stylegan3 scripts call, without upstream (the checkout tests are in
integration/)."""

import inspect

import click
import pytest
import torch

from rtm_plugin.integrations import stylegan_options as opts
from rtm_plugin.integrations.trunk_options import DEFAULTS, STUDIOGAN_KEYS, STYLEGAN_KEYS
from rtm_plugin.rtm import RecursiveTokenMapper

def test_map_rtm_fills_mapping_kwargs_with_core_defaults():
    mapping_kwargs = {'num_layers': 8}
    suffix = opts.configure_mapping(mapping_kwargs, map='rtm', rtm_h=None, rtm_l=2, rtm_tokens=None, rtm_dim=None,
                                    rtm_block=None)
    assert mapping_kwargs == dict(map='rtm', H=16, L=2, tokens=4, token_dim=128, block='mlp')
    assert suffix == '-rtm-h16l2-t4x128'
    assert opts.describe_mapping(mapping_kwargs) == 'rtm (H=16, L=2, tokens=4, token_dim=128, block=mlp)'
    mapping_kwargs = {}
    assert opts.configure_mapping(mapping_kwargs, map='rtm', rtm_block='attention', rtm_dim=64).endswith('x64-attention')

def test_map_mlp_leaves_upstream_untouched():
    mapping_kwargs = {'num_layers': 2}
    assert opts.configure_mapping(mapping_kwargs, map=None) == ''
    assert opts.configure_mapping(mapping_kwargs, map='mlp', rtm_h=None) == ''
    assert mapping_kwargs == {'num_layers': 2}
    assert opts.describe_mapping(mapping_kwargs) == 'mlp (2 layers)'

@pytest.mark.parametrize('kwargs, message', [
    (dict(map='mlp', rtm_h=4, rtm_dim=8), '--rtm-h, --rtm-dim: RTM options, but the mapper is mlp'),
    (dict(map=None, rtm_tokens=2), '--rtm-tokens: RTM options'),
    (dict(map='rtm', rtm_h=0), '--rtm-h must be a positive integer, got 0'),
    (dict(map='rtm', rtm_block='conv'), '--rtm-block must be one of mlp, attention'),
    (dict(map='rtm', rtm_dim=6, rtm_block='attention'), 'divisible by heads'),
    (dict(map='gru'), '--map must be mlp or rtm'),
    (dict(map='rtm', map_depth=4), '--map-depth is the depth of the MLP mapper'),      # stylegan3's option
])
def test_bad_options_are_clear_errors(kwargs, message):
    mapping_kwargs = {'num_layers': 8}
    with pytest.raises(ValueError, match=message):
        opts.configure_mapping(mapping_kwargs, **kwargs)
    assert mapping_kwargs == {'num_layers': 8}

def test_trial_build_does_not_move_the_seeded_rng():
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    opts.configure_mapping({}, map='rtm', rtm_h=4)
    assert torch.equal(torch.rand(4), expected)

def test_both_upstreams_map_their_keys_to_the_trunk_arguments():
    assert set(STYLEGAN_KEYS.values()) == set(STUDIOGAN_KEYS.values()) == set(DEFAULTS)
    assert set(DEFAULTS) <= set(inspect.signature(RecursiveTokenMapper).parameters)

def test_stylegan3_train_options_pass_map_depth_on():
    train_opts = dict(map='mlp', map_depth=3, rtm_h=None, rtm_l=None, rtm_tokens=None, rtm_dim=None, rtm_block=None,
                      cfg='stylegan3-t', gamma=8.2)
    assert opts.train_options(train_opts) == {k: v for k, v in train_opts.items() if k not in ('cfg', 'gamma')}
    mapping_kwargs = {'num_layers': 3}
    assert opts.configure_mapping(mapping_kwargs, **opts.train_options(train_opts)) == ''
    assert mapping_kwargs == {'num_layers': 3}                  # --map-depth with the MLP: upstream's

class Mapper(torch.nn.Module):
    def __init__(self, kind, width):
        super().__init__()
        if kind == 'rtm':
            self.mapper_kind = 'rtm'
            self.trunk = RecursiveTokenMapper(width, width, tokens=2, token_dim=8, H=3)
        else:
            self.fc0 = torch.nn.Linear(width, width)
        self.embed = torch.nn.Linear(2, width)
        self.register_buffer('w_avg', torch.zeros(width))

class Generator(torch.nn.Module):
    def __init__(self, kind, width=8):
        super().__init__()
        self.mapping = Mapper(kind, width)
        self.synthesis = torch.nn.Linear(width, 3)

def test_resume_drops_the_mapper_of_another_kind_or_shape():
    log = []
    G = Generator('rtm')
    for src in (Generator('mlp'), Generator('rtm', width=16)):
        data = {'G': src, 'G_ema': src, 'D': torch.nn.Linear(1, 1)}
        assert opts.keep_compatible_mapper(data, G, log=log.append)
        for name in ('G', 'G_ema'):
            names = {n for n, _ in data[name].named_parameters()}
            assert names == {'synthesis.weight', 'synthesis.bias'}
        assert isinstance(data['D'], torch.nn.Linear)
    assert len(log) == 2 and 'start fresh' in log[0]
    same = {'G': Generator('rtm'), 'G_ema': Generator('rtm')}
    assert not opts.keep_compatible_mapper(same, G, log=log.append) and len(log) == 2
    assert isinstance(same['G'], Generator)

def test_rtm_steps():
    G = Generator('rtm')
    opts.set_rtm_steps(G, None)
    assert G.mapping.trunk.H == 3
    opts.set_rtm_steps(G, 32)
    assert G.mapping.trunk.H == 32
    with pytest.raises(click.BadParameter, match='H must be a positive integer'):
        opts.set_rtm_steps(G, 0)
    with pytest.raises(click.BadParameter, match='needs an RTM mapper'):
        opts.set_rtm_steps(Generator('mlp'), 4)

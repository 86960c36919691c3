"""The StudioGAN patch set without a checkout: YAML composition, ComposeYAML in the engine, the spec's consistency,
the config checks and the checkpoint mapper check (tests/integration/test_studiogan.py runs the real thing)."""

import os
import re
import stat
from types import SimpleNamespace

import pytest
import torch
import yaml

from rtm_plugin.integrations import studiogan_options as options
from rtm_plugin.integrations.trunk_options import DEFAULTS
from rtm_plugin.integrations.studiogan_checkpoints import MapperMismatchError, check_mapper, describe_mapper
from rtm_plugin.mapping import RTMMappingNetwork
from rtm_plugin.patching import engine, yaml_overlay
from rtm_plugin.patching.spec import ComposeYAML, FilePatch, Insert, SpecError, Target
from rtm_plugin.patching.targets import load_target

BASE = '''\
DATA:
  name: "CIFAR10"
MODEL:
  backbone: "stylegan2"
  g_cond_mtd: "cAdaIN"   # class-conditional
OPTIMIZATION:
  # a comment inside a section
  total_steps: 200000

STYLEGAN:
  mapping_network: 2
'''
RTM = '# The RTM.\nSTYLEGAN:\n  mapping_type: "rtm"\n  rtm_h: 16\n'
UNCOND = '# Unconditional.\nMODEL:\n  g_cond_mtd: "W/O"\nAUG:\n  apply_ada: True\n'

#----------------------------------------------------------------------------
# yaml_overlay

def test_compose_replaces_in_place_appends_to_section_and_adds_sections():
    out = yaml_overlay.compose(BASE, [('uncond', UNCOND), ('rtm', RTM)], header=['made by a test'])
    assert out.splitlines() == [
        '# made by a test', 'DATA:', '  name: "CIFAR10"', 'MODEL:', '  backbone: "stylegan2"', '  g_cond_mtd: "W/O"',
        'OPTIMIZATION:', '  # a comment inside a section', '  total_steps: 200000', '', 'STYLEGAN:',
        '  mapping_network: 2', '  mapping_type: "rtm"', '  rtm_h: 16', 'AUG:', '  apply_ada: True']
    assert yaml.safe_load(out)['STYLEGAN'] == dict(mapping_network=2, mapping_type='rtm', rtm_h=16)

def test_compose_keeps_the_base_indentation_and_appends_after_the_last_setting():
    base = 'MODEL:\n    backbone: "stylegan2"\n    # trailing comment\n\nSTYLEGAN:\n    mapping_network: 8\n'
    out = yaml_overlay.compose(base, [('o', 'MODEL:\n  z_dim: 64\n')])
    assert out == 'MODEL:\n    backbone: "stylegan2"\n    z_dim: 64\n    # trailing comment\n\nSTYLEGAN:\n' \
                  '    mapping_network: 8\n'

@pytest.mark.parametrize('overlay, message', [
    ('STYLEGAN: {a: 1}\n', 'expected "SECTION:"'),
    ('  orphan: 1\n', 'expected "SECTION:"'),
    ('- a\n- b\n', 'expected "SECTION:"'),
])
def test_overlay_must_be_two_level_settings(overlay, message):
    with pytest.raises(ValueError, match=message):
        yaml_overlay.compose(BASE, [('bad.yaml', overlay)])

def test_base_the_text_edit_cannot_reproduce_is_refused():
    base = 'STYLEGAN: {mapping_network: 2}\n'          # flow style: the key cannot be set line by line
    with pytest.raises(ValueError, match='did not give the expected settings'):
        yaml_overlay.compose(base, [('rtm', RTM)])
    with pytest.raises(ValueError, match='two-level'):
        yaml_overlay.compose('just text\n', [('rtm', RTM)])

#----------------------------------------------------------------------------
# ComposeYAML in the engine

@pytest.fixture
def composed(tmp_path):
    root, spec = tmp_path / 'checkout', tmp_path / 'spec'
    (root / 'configs').mkdir(parents=True)
    (root / 'configs' / 'base.yaml').write_bytes(BASE.replace('\n', '\r\n').encode())     # CRLF, kept
    os.chmod(root / 'configs' / 'base.yaml', 0o640)
    (root / 'main.py').write_text('x = 1\n')
    spec.mkdir()
    (spec / 'rtm.yaml').write_text(RTM)
    target = Target(name='toy', identify=['main.py'], home=spec, changes=[
        FilePatch('main.py', [Insert(r'^x = 1$', 'y = 2 # rtm-plugin', after=True)]),
        ComposeYAML('configs/new/base-RTM.yaml', 'configs/base.yaml', ['rtm.yaml'], why='the RTM twin')])
    return root, spec, target

def test_compose_yaml_apply_check_revert(composed):
    root, _, target = composed
    before = sorted(p.name for p in root.rglob('*'))
    outcome = engine.apply(root, target)
    assert outcome.changed and '1 files edited, 1 added' in outcome.message
    new = root / 'configs' / 'new' / 'base-RTM.yaml'
    data = new.read_bytes()
    assert data.count(b'\r\n') == data.count(b'\n')
    assert data.startswith(b'# rtm-plugin: written by rtm-patch: this checkout\'s configs/base.yaml,\r\n'
                           b'# with the keys of patches/toy/rtm.yaml set:\r\n# - The RTM.\r\n')
    assert yaml.safe_load(data)['STYLEGAN']['mapping_type'] == 'rtm'
    assert stat.S_IMODE(new.stat().st_mode) == 0o640
    assert [f.status for f in engine.check(root, target).files] == ['patched', 'added']
    engine.revert(root)
    assert sorted(p.name for p in root.rglob('*')) == before        # the file and the folder it needed are gone

def test_compose_yaml_missing_base_or_changed_overlay(composed):
    root, spec, target = composed
    (root / 'configs' / 'base.yaml').rename(root / 'configs' / 'other.yaml')
    report = engine.check(root, target)
    assert report.state == 'unknown-version'
    assert (report.files[1].status, report.files[1].detail) == ('missing', 'its base configs/base.yaml is not in '
                                                                           'the checkout')
    (root / 'configs' / 'other.yaml').rename(root / 'configs' / 'base.yaml')
    engine.apply(root, target)
    (spec / 'rtm.yaml').write_text(RTM + '  rtm_l: 2\n')               # a new overlay: another spec version
    assert engine.check(root, target).state == 'outdated'

def test_compose_yaml_validation():
    with pytest.raises(SpecError, match='at least one overlay'):
        ComposeYAML('a.yaml', 'b.yaml', [])
    with pytest.raises(SpecError, match='normalised relative path'):
        ComposeYAML('a.yaml', '../b.yaml', ['o.yaml'])

#----------------------------------------------------------------------------
# The shipped spec

def test_studiogan_spec_overlays_and_config_defaults_agree():
    target = load_target('studiogan')
    composed = [c for c in target.changes if isinstance(c, ComposeYAML)]
    assert all(c.path.startswith('src/configs/') and c.base.startswith('src/configs/') for c in composed)
    overlays = {name: yaml.safe_load(target.spec_file(c.path, name).read_text())
                for c in composed for name in c.overlays}
    assert overlays['configs/rtm.yaml'] == {'STYLEGAN': dict(mapping_type='rtm', rtm_h=16, rtm_l=1, rtm_tokens=4,
                                                             rtm_token_dim=128, rtm_block='mlp')}
    assert overlays['configs/uncond.yaml'] == {'MODEL': dict(g_cond_mtd='W/O', d_cond_mtd='W/O')}
    rtm_configs = [c for c in composed if c.path.endswith('-RTM.yaml')]
    assert len(rtm_configs) == 6 and all(c.overlays[-1] == 'configs/rtm.yaml' for c in rtm_configs)

    # config.py must get a default for every key the overlay and the glue use (unknown keys are errors there).
    config = next(c for c in target.changes if c.path == 'src/config.py')
    defaults = re.findall(r'self\.STYLEGAN\.(\w+) = (.+)', ''.join(e.text for e in config.edits))
    assert dict(defaults) == {'mapping_type': '"mlp"', **{key: '"N/A"' for key in options.STUDIOGAN_KEYS}}
    assert set(overlays['configs/rtm.yaml']['STYLEGAN']) == {'mapping_type', *options.STUDIOGAN_KEYS}

#----------------------------------------------------------------------------
# Config checks (studiogan_options)

def stylegan(**keys):
    base = dict(mapping_type='mlp', mapping_network=2, **{key: 'N/A' for key in options.STUDIOGAN_KEYS})
    return SimpleNamespace(**{**base, **keys})

def test_config_checks_and_defaults():
    model = SimpleNamespace(backbone='stylegan2')
    options.check_config(model, stylegan())
    options.check_config(model, stylegan(mapping_type='rtm', rtm_h=4))
    assert options.trunk_kwargs(stylegan(mapping_type='rtm', rtm_h=4)) == dict(DEFAULTS, H=4)
    assert options.describe(stylegan()) == 'mlp (2 layers)'
    assert options.describe(stylegan(mapping_type='rtm', rtm_block='attention')).startswith(
        f'rtm (rtm_h={DEFAULTS["H"]}, ')
    for keys, message in [(dict(mapping_type='MLP'), 'must be "mlp"'),
                          (dict(rtm_l=2), 'STYLEGAN.rtm_l: RTM settings, but'),
                          (dict(mapping_type='rtm', rtm_block='conv'), 'rtm_block must be one of mlp, attention'),
                          (dict(mapping_type='rtm', rtm_h=1.5), 'STYLEGAN.rtm_h must be a positive integer')]:
        with pytest.raises(ValueError, match=re.escape(message)):
            options.check_config(model, stylegan(**keys))
    with pytest.raises(ValueError, match='needs MODEL.backbone "stylegan2"'):
        options.check_config(SimpleNamespace(backbone='big_resnet'), stylegan(mapping_type='rtm'))

def test_config_check_does_not_move_the_seeded_rng():
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    options.trunk_kwargs(stylegan(mapping_type='rtm'))
    assert torch.equal(torch.rand(4), expected)

#----------------------------------------------------------------------------
# Checkpoint check (studiogan_checkpoints)

class Holder(torch.nn.Module):
    def __init__(self, mapping):
        super().__init__()
        self.mapping = mapping

def mlp_state(layers):
    return {f'mapping.fc{i}.{name}': torch.zeros(4) for i in range(layers) for name in ('weight', 'bias')}

def rtm_model(**kwargs):
    return Holder(RTMMappingNetwork(z_dim=8, c_dim=3, w_dim=16, num_ws=4, **kwargs))

def test_describe_mapper():
    assert describe_mapper(rtm_model(tokens=2, token_dim=8).state_dict()) == \
        ('rtm', 'an RTM mapping network (tokens=2, token_dim=8, block=mlp)')
    assert describe_mapper(rtm_model(block='attention', token_dim=8, heads=2).state_dict())[1].endswith(
        'block=attention)')
    assert describe_mapper(mlp_state(8)) == ('mlp', 'an MLP mapping network (8 layers)')
    assert describe_mapper({'b0.conv.weight': torch.zeros(1)}) is None

def test_check_mapper_names_both_sides():
    rtm = rtm_model(tokens=2, token_dim=8)
    check_mapper(rtm, rtm.state_dict(), 'same.pth')
    check_mapper(torch.nn.DataParallel(rtm), rtm.state_dict(), 'wrapped.pth')
    check_mapper(Holder(torch.nn.Linear(1, 1)), {'b0.weight': torch.zeros(1)}, 'no-mapper.pth')  # left to torch
    with pytest.raises(MapperMismatchError, match=r'^G\.pth holds an MLP mapping network \(2 layers\), but this YAML '
                                                  r'builds an RTM mapping network \(tokens=2, token_dim=8'):
        check_mapper(rtm, mlp_state(2), 'G.pth')
    with pytest.raises(MapperMismatchError, match='holds an RTM mapping network .* but this YAML builds an MLP '
                                                  r'mapping network \(8 layers\)\. Load it with the YAML it was '
                                                  r'trained with, which sets STYLEGAN\.mapping_type: "rtm"'):
        check_mapper(SimpleNamespace(state_dict=lambda: mlp_state(8)), rtm.state_dict(), 'G.pth')
    with pytest.raises(MapperMismatchError, match='Set STYLEGAN.rtm_tokens, rtm_token_dim and rtm_block'):
        check_mapper(rtm_model(tokens=4, token_dim=8), rtm.state_dict(), 'G.pth')
    with pytest.raises(MapperMismatchError, match='Set STYLEGAN.mapping_network'):
        check_mapper(SimpleNamespace(state_dict=lambda: mlp_state(2)), mlp_state(8), 'G.pth')

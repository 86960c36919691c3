"""The paper's RS-IMLE setups: preset files, the App. C decoders read from the built models, the optimiser,
--dry-run, noise injection, the EMA warning, and pickles written before these changes."""

import copy
import json
import math
import os
import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from click.testing import CliRunner

import rtm_plugin.imle.decoders as decoders
from rtm_plugin.imle.cli import main
from rtm_plugin.imle.config import DEFAULT_RUN, FEWSHOT, OFFICIAL_SOURCES, as_dict, config_from_dict
from rtm_plugin.imle.decoders import (AdaIN, ConvNeXtBlock, ConvNeXtDecoder, DecoderBase, FewShotDecoder,
                                      NoiseInjection, StyleConvNeXtBlock, _conv, block_noise)
from rtm_plugin.imle.ema import ema_warning, initial_share
from rtm_plugin.imle.generator import IMLEGenerator, rebuild
from rtm_plugin.imle.presets import PRESETS, load_preset, preset_path, resolve
from rtm_plugin.imle.protocols import EVAL_PROTOCOLS, fid_samples, num_samples, protocol_metrics
from rtm_plugin.imle.generator import build_generator
from rtm_plugin.imle.train import RunOptions, Trainer

from imle_tiny import one_thread  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures('one_thread')

def preset_config(name, **changes):
    return replace(FEWSHOT, **{**load_preset(name).values, **changes})

# What App. C states, per preset: decoder kind, [(stage resolution, blocks)], width.
APP_C = {
    'cifar10': ('convnext', [(1, 1), (4, 3), (8, 6), (16, 6), (32, 6)], 768),
    'celebahq': ('convnext', [(1, 1), (4, 3), (8, 5), (16, 6), (32, 6), (64, 6), (128, 5), (256, 2)], 768),
    'fewshot': ('fewshot', [(1, 4), (4, 5), (8, 5), (16, 4), (32, 3), (64, 3), (128, 3), (256, 1)], 384),
}
PAPER_HL = {'cifar10': (16, 1), 'celebahq': (16, 2), 'fewshot': (8, 2)}

# ---------------------------------------------------------------- preset files

@pytest.mark.parametrize('name', PRESETS)
def test_preset_file_names_a_source_for_every_setting(name):
    doc = yaml.safe_load(open(preset_path(name), encoding='utf-8'))
    assert set(doc['settings']) == set(as_dict(FEWSHOT))                 # complete: every IMLEConfig field
    for key, entry in doc['settings'].items():
        assert set(entry) == {'value', 'source'} and entry['source'].strip(), key
    p = load_preset(name)
    assert p.eval_protocol in EVAL_PROTOCOLS and p.eval_source.strip()

def test_fewshot_official_is_the_official_config():
    p = load_preset('fewshot-official')
    assert replace(FEWSHOT, **p.values) == FEWSHOT
    for key, (value, source) in OFFICIAL_SOURCES.items():
        if key != 'map':                                                # the project's mapper is RTM
            assert p.values[key] == value and p.sources[key].startswith(source), key

@pytest.mark.parametrize('name', ['cifar10', 'celebahq', 'fewshot'])
def test_paper_presets_follow_app_c_and_f(name):
    p = load_preset(name)
    v = p.values
    assert (v['optimizer'], v['beta1'], v['beta2'], v['weight_decay']) == ('adam', 0.5, 0.999, 0.0)
    assert p.sources['optimizer'].startswith('App. F')
    assert (v['rtm_h'], v['rtm_l']) == PAPER_HL[name] and v['map'] == 'rtm'
    assert v['noise'] is True and v['decoder'] == APP_C[name][0] and v['width'] == APP_C[name][2]

def test_bad_preset_files_are_named(tmp_path, monkeypatch):
    import rtm_plugin.imle.presets as presets
    doc = yaml.safe_load(open(preset_path('fewshot'), encoding='utf-8'))
    del doc['settings']['eps']
    doc['settings']['lr']['source'] = ' '
    monkeypatch.setattr(presets, 'HERE', str(tmp_path))
    (tmp_path / 'fewshot.yaml').write_text(yaml.safe_dump(doc))
    with pytest.raises(ValueError, match=r"missing settings \['eps'\]"):
        load_preset('fewshot')
    doc['settings']['eps'] = {'value': 0.1, 'source': 'x'}
    (tmp_path / 'fewshot.yaml').write_text(yaml.safe_dump(doc))
    with pytest.raises(ValueError, match='lr must be'):
        load_preset('fewshot')
    with pytest.raises(ValueError, match='preset must be one of'):
        load_preset('imagenet')

# ---------------------------------------------------------------- App. C, read from the built models

@pytest.mark.parametrize('name', ['cifar10', 'celebahq', 'fewshot'])
def test_preset_builds_at_full_size_as_app_c_states(name):
    """Full-size models on the meta device (the full structure, no memory); stages, block counts, widths,
    noise and the output conv are read from the modules."""
    kind, stages, width = APP_C[name]
    cfg = preset_config(name)
    with torch.device('meta'):
        G = build_generator(cfg)
    dec = G.synthesis
    assert G.img_resolution == cfg.resolution == stages[-1][0]
    assert dec.stages() == stages
    assert dec.const.shape == (1, width, 1, 1)                          # a 1x1 constant
    block_type = StyleConvNeXtBlock if kind == 'convnext' else decoders.FewShotBlock
    for block in dec.blocks:
        assert type(block) is block_type
        assert isinstance(block.adain, AdaIN) and block.adain.style.in_features == cfg.w_dim     # AdaIN(w)
        assert block.adain.style.out_features == 2 * width
        assert isinstance(block_noise(block), NoiseInjection) and block.noise.strength.shape == (1, width, 1, 1)
        if kind == 'convnext':
            assert block.dwconv.groups == width and block.dwconv.kernel_size == (7, 7)
            assert (block.pw1.in_channels, block.pw1.out_channels, block.pw2.out_channels) == (width, 4 * width, width)
        else:
            assert (block.c1.in_channels, block.c4.out_channels, block.c1.out_channels) == (width, width, width // 4)
    firsts = {}                                                         # the first block of each stage upsamples
    for block in dec.blocks:
        firsts.setdefault(block.res, block)
    previous = {res: prev for (prev, _), (res, _) in zip(stages, stages[1:])}
    assert [(b.res, b.src) for b in dec.blocks if b.src is not None] == \
        [(res, previous[res]) for res, b in firsts.items() if res in previous]
    assert all(firsts[res].src == previous[res] for res in previous)
    conv = dec.to_image.conv
    assert (conv.kernel_size, conv.in_channels, conv.out_channels) == ((1, 1), width, 3)          # final 1x1 conv
    assert G.num_ws == sum(n for _, n in stages) == G.mapping.num_ws
    trunk = G.mapping.trunk
    assert (trunk.H, trunk.L) == PAPER_HL[name]

def test_parameter_counts_of_meta_and_real_builds_agree():
    from rtm_plugin.imle.cli import parameter_counts
    cfg = preset_config('cifar10')
    G = build_generator(cfg)
    counts = parameter_counts(cfg)
    assert counts['mapping'] == sum(p.numel() for p in G.mapping.parameters())
    assert counts['synthesis'] == sum(p.numel() for p in G.synthesis.parameters())
    assert counts['total'] == sum(p.numel() for p in G.parameters())

def test_convnext_needs_a_layout_outside_app_c():
    with pytest.raises(ValueError, match=r'App. C gives ConvNeXt layouts for \[32, 256\] px only'):
        ConvNeXtDecoder(16, 64, width=8)
    dec = ConvNeXtDecoder(16, 64, width=8, blocks='1x1,4m1,16m4,64m16')
    assert dec.stages() == [(1, 1), (4, 1), (16, 1), (64, 1)]
    with pytest.raises(ValueError, match='end at 16 px'):
        ConvNeXtDecoder(16, 32, width=8, blocks='1x1,4m1,16m4')

# ---------------------------------------------------------------- noise injection

def tiny_noisy(decoder='convnext', resolution=32):
    return IMLEGenerator(16, 16, resolution, 3, map='mlp', mapping_kwargs=dict(num_layers=2), decoder=decoder,
                         decoder_kwargs=dict(width=8, noise=True))

@pytest.mark.parametrize('decoder', ['convnext', 'fewshot'])
def test_noise_starts_at_zero_strength_and_then_acts_per_pixel(decoder):
    G = tiny_noisy(decoder)
    z = torch.randn(3, 16)
    assert all(torch.count_nonzero(b.noise.strength) == 0 for b in G.synthesis.blocks)
    assert torch.equal(G(z), G(z, noise_mode='none'))                   # zero strength: the noise-free function
    with torch.no_grad():
        for b in G.synthesis.blocks:
            b.noise.strength.fill_(0.5)
    assert not torch.allclose(G(z), G(z))                               # 'random': fresh noise each call
    assert torch.equal(G(z, noise_mode='const'), G(z, noise_mode='const'))
    seeds = torch.tensor([5, 6, 7])
    whole = G(z, noise_seeds=seeds)
    assert torch.equal(whole, G(z, noise_seeds=seeds))
    parts = torch.cat([G(z[:1], noise_seeds=seeds[:1]), G(z[1:], noise_seeds=seeds[1:])])
    assert torch.allclose(whole, parts, atol=1e-5)                      # a sample's noise ignores its batch
    noise = G.synthesis.make_noise(3, noise_seeds=seeds)
    assert {n.shape[-1] for n in noise.values()} == {b.res for b in G.synthesis.blocks}
    assert all(n.shape[1] == 1 for n in noise.values())                 # one value per pixel, all channels
    with pytest.raises(ValueError, match='noise_mode must be one of'):
        G(z, noise_mode='fixed')

def test_noise_only_at_or_below_256_px():
    dec = FewShotDecoder(16, 512, width=8, blocks='1x1,256m1,512m256', noise=True)
    assert [block_noise(b) is not None for b in dec.blocks] == [True, True, False]

def test_noisy_training_is_the_same_in_shards_and_after_resume(tmp_path):
    """With noise, a pool rendered in two shards with the per-sample seeds equals the pool rendered at once, and
    training from a snapshot reproduces the uninterrupted run bit for bit."""
    from imle_tiny import TINY, assert_same_state, state_of, tiny_images
    from rtm_plugin.sampling import POOL_NOISE, generate, noise_seeds
    cfg = replace(TINY, noise=True, decoder='convnext', dec_blocks='1x1,4m1,8m4,16m8', kimg=0.064)   # 8 steps
    images = tiny_images()
    opts = lambda d: RunOptions(outdir=str(tmp_path / d), snap_kimg=1000, grid_kimg=1000, perceptual='fallback',
                                progress=False)
    a = Trainer(cfg, images, opts('a'), log=lambda m: None)
    a.run()
    assert any(torch.count_nonzero(b.noise.strength) for b in a.G.synthesis.blocks)      # the noise is trained
    z = torch.randn(10, cfg.z_dim)
    seeds = noise_seeds(cfg.seed, POOL_NOISE, 0, 10)
    assert torch.allclose(generate(a.G, z, seeds=seeds), torch.cat([generate(a.G, z[:4], seeds=seeds[:4]),
                          generate(a.G, z[4:], seeds=seeds[4:])]), atol=1e-5)
    b = Trainer(replace(cfg, kimg=0.04), images, opts('b'), log=lambda m: None)          # 5 steps: mid-epoch
    _, path = b.run()
    c = Trainer(cfg, images, opts('b'), resume=path, log=lambda m: None)
    c.run()
    assert_same_state(state_of(a), state_of(c))

# ---------------------------------------------------------------- optimiser and one step per preset

def cheap(name):
    """The preset with its layout, optimiser, noise and loss, at width 16 and 64-d latents: one CPU step each."""
    return preset_config(name, width=16, z_dim=64, w_dim=64, rtm_dim=16, batch=2, kimg=0.002, proj_dim=32)

def random_images(n, resolution):
    return np.random.default_rng(0).integers(0, 256, [n, 3, resolution, resolution], dtype=np.uint8)

@pytest.mark.parametrize('name', PRESETS)
def test_one_training_step_at_batch_2(name, tmp_path):
    cfg = cheap(name)
    t = Trainer(cfg, random_images(2, cfg.resolution), RunOptions(outdir=str(tmp_path), perceptual='fallback',
                progress=False), log=lambda m: None)
    before = {k: v.clone() for k, v in t.G.state_dict().items()}
    loss, lr = t.train_step()
    assert math.isfinite(loss) and t.step == 1
    assert t.G.synthesis.stages() == (APP_C[name][1] if name in APP_C else APP_C['fewshot'][1])
    group = t.opt.param_groups[0]                                        # what torch was given
    expect = {'adam': torch.optim.Adam, 'adamw': torch.optim.AdamW}[cfg.optimizer]
    assert type(t.opt) is expect
    assert group['betas'] == (cfg.beta1, cfg.beta2) and group['weight_decay'] == cfg.weight_decay
    if name != 'fewshot-official':
        assert group['betas'] == (0.5, 0.999) and type(t.opt) is torch.optim.Adam
    changed = [k for k, v in t.G.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith('mapping.') for k in changed) and any(k.startswith('synthesis.') for k in changed)

FULL_STEP = os.environ.get('RTM_IMLE_FULL_STEP', '')                  # '1' = every preset, or a list: cifar10,fewshot

@pytest.mark.skipif(not FULL_STEP, reason='set RTM_IMLE_FULL_STEP=1 (or =cifar10,fewshot): a full-size training step '
                    'takes about 2 minutes per preset on 2 CPU cores, CelebA-HQ (256 px, width 768) far longer')
@pytest.mark.parametrize('name', PRESETS if FULL_STEP in ('', '1') else FULL_STEP.split(','))
def test_one_full_size_training_step_at_batch_2(name, tmp_path):
    cfg = preset_config(name, batch=2, kimg=0.002)
    t = Trainer(cfg, random_images(2, cfg.resolution), RunOptions(outdir=str(tmp_path), perceptual='fallback',
                progress=False), log=lambda m: None)
    loss, _ = t.train_step()
    assert math.isfinite(loss)
    assert t.opt.param_groups[0]['betas'] == (cfg.beta1, cfg.beta2)

def test_adamw_and_adam_differ_as_torch_defines_them():
    from rtm_plugin.imle.optim import build_optimizer
    p = torch.nn.Parameter(torch.ones(3))
    opt = build_optimizer(replace(FEWSHOT, optimizer='adam', beta1=0.5, beta2=0.999, weight_decay=0.0), [p])
    assert type(opt) is torch.optim.Adam and opt.param_groups[0]['betas'] == (0.5, 0.999)
    with pytest.raises(ValueError, match='optimizer must be one of'):
        build_optimizer(replace(FEWSHOT, optimizer='sgd'), [p])

# ---------------------------------------------------------------- --dry-run and flags

def dry_run(*args):
    result = CliRunner().invoke(main, ['--dry-run', *args])            # click >= 8.2: stdout and stderr apart
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result

@pytest.mark.parametrize('name', PRESETS)
def test_dry_run_prints_what_the_preset_file_says(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out, _ = dry_run('--preset', name)
    p = load_preset(name)
    assert out['config'] == {**as_dict(FEWSHOT), **p.values}
    assert out['sources'] == p.sources and out['preset'] == name
    assert out['eval_protocol'] == p.eval_protocol and out['metrics'] == EVAL_PROTOCOLS[p.eval_protocol]
    assert set(out['parameters']) == {'mapping', 'synthesis', 'total'}
    assert out['parameters']['total'] == out['parameters']['mapping'] + out['parameters']['synthesis']
    assert not os.listdir(tmp_path)                                     # no run folder

def test_flags_override_the_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out, _ = dry_run('--preset', 'cifar10', '--rtm-h', '4', '--beta1', '0.7', '--optimizer', 'adamw',
                     '--no-noise', '--eval-protocol', 'fewshot', '--z-dim', '512')
    cfg = out['config']
    assert (cfg['rtm_h'], cfg['rtm_l'], cfg['beta1'], cfg['beta2'], cfg['optimizer'], cfg['noise']) == \
        (4, 1, 0.7, 0.999, 'adamw', False)
    assert cfg['z_dim'] == 512 and cfg['rtm_dim'] == 128                 # tokens x rtm_dim = z_dim
    assert out['sources']['rtm_h'] == 'command line' and out['sources']['rtm_l'] == load_preset('cifar10').sources['rtm_l']
    assert out['metrics'] == ['fid5k_full', 'pr1k3_full']

def test_without_preset_the_defaults_are_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out, _ = dry_run()
    assert out['config'] == as_dict(DEFAULT_RUN) and out['eval_protocol'] is None and out['metrics'] == []
    assert resolve(None, {}, data='x').config == FEWSHOT

def test_a_preset_run_through_the_cli_records_its_protocol(tmp_path):
    from PIL import Image
    from imle_tiny import tiny_images
    (tmp_path / 'data').mkdir()
    for i, img in enumerate(tiny_images(8)):
        Image.fromarray(img.transpose(1, 2, 0)).save(tmp_path / 'data' / f'{i}.png')
    result = CliRunner().invoke(main, ['--preset', 'fewshot-official', '--data', str(tmp_path / 'data'),
                                       '--outdir', str(tmp_path / 'runs'), '--resolution', '16', '--width', '8',
                                       '--z-dim', '16', '--w-dim', '16', '--kimg', '0.008', '--pool-multiple', '1',
                                       '--force-factor', '2', '--eval-samples', '0', '--perceptual', 'fallback',
                                       '--no-progress', '--ema-rampup'])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / 'runs' / os.listdir(tmp_path / 'runs')[0]
    lines = [json.loads(l) for l in open(run_dir / 'metrics.jsonl')]
    assert lines[-1]['eval_protocol'] == 'fewshot' and lines[-1]['protocol_metrics'] == ['fid5k_full', 'pr1k3_full']
    state = pickle.load(open(sorted(run_dir.glob('network-snapshot-*.pkl'))[-1], 'rb'))['rs_imle']
    assert state['config']['optimizer'] == 'adamw' and state['config']['ema_rampup'] is True

def test_the_protocol_is_computed_through_metric_main_on_g_ema(tmp_path, monkeypatch):
    """--preset fewshot --data X ends with fid5k_full and pr1k3_full of G_ema (metric_main, their own detectors),
    in metric-<name>.jsonl and the final eval line, not with FID/P-R of another protocol on Inception features."""
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    from imle_tiny import tiny_images, write_png_folder
    from test_metrics_detectors import write_detector
    from rtm_plugin.metrics.detectors import DETECTOR_URLS, url_cache_path
    from rtm_plugin.metrics import metric_main
    cache = tmp_path / 'cache'
    for url in DETECTOR_URLS.values():         # stand-ins with upstream's interface where the weights are looked up
        url_cache_path(url, cache).parent.mkdir(parents=True, exist_ok=True)
        write_detector(url_cache_path(url, cache))
    monkeypatch.setenv('RTM_CACHE_DIR', str(cache))
    seen = []
    real_calc = metric_main.calc_metric
    def calc(metric, **kw):
        seen.append((metric, kw['G']))
        return real_calc(metric, **kw)
    monkeypatch.setattr(metric_main, 'calc_metric', calc)
    monkeypatch.setattr('rtm_plugin.imle.snapshot_metrics.calc_metric', calc)
    write_png_folder(tmp_path / 'data', tiny_images(8))
    result = CliRunner().invoke(main, ['--preset', 'fewshot', '--data', str(tmp_path / 'data'),
                                       '--outdir', str(tmp_path / 'runs'), '--resolution', '16', '--width', '8',
                                       '--dec-blocks', '1x1,4m1,8m4,16m8', '--z-dim', '16', '--w-dim', '16',
                                       '--kimg', '0.008', '--pool-multiple', '1', '--force-factor', '2',
                                       '--perceptual', 'fallback', '--no-progress', '--ema-rampup'])
    assert result.exit_code == 0, result.output
    assert [m for m, _ in seen] == ['fid5k_full', 'pr1k3_full']
    run_dir = tmp_path / 'runs' / os.listdir(tmp_path / 'runs')[0]
    for _, G in seen:
        assert G.training is False and all(p.requires_grad is False for p in G.parameters())    # G_ema
    eval_line = [json.loads(l) for l in open(run_dir / 'metrics.jsonl')][-1]
    assert {'fid5k_full', 'pr1k3_full_precision', 'pr1k3_full_recall'} <= set(eval_line)
    assert 'fid' not in eval_line and 'is' not in eval_line      # no built-in evaluation on other terms
    for name in ('fid5k_full', 'pr1k3_full'):
        (line,) = [json.loads(l) for l in open(run_dir / f'metric-{name}.jsonl')]
        assert line['snapshot_pkl'] == eval_line['snapshot']

def test_a_preset_needs_data():
    result = CliRunner().invoke(main, ['--preset', 'fewshot'])
    assert result.exit_code == 2 and 'pass --data' in result.output

def test_every_setting_has_a_flag():
    names = {p.name for p in main.params}
    missing = [k for k in as_dict(FEWSHOT) if k not in names and not (k == 'map' and 'map_' in names)]
    assert not missing

# ---------------------------------------------------------------- evaluation protocols

def test_eval_protocols_are_metric_names():
    assert protocol_metrics('cifar10') == ['fid50k_full', 'pr50k3_full']
    assert protocol_metrics('celebahq') == ['fid30k_full', 'pr30k3_full']
    assert protocol_metrics('fewshot') == ['fid5k_full', 'pr1k3_full']
    assert [num_samples(m) for m in protocol_metrics('fewshot')] == [5000, 1000]
    assert fid_samples('cifar10') == 50000 and protocol_metrics(None) == []
    with pytest.raises(ValueError, match='eval protocol must be one of'):
        protocol_metrics('ffhq')

# ---------------------------------------------------------------- EMA

def test_short_runs_warn_that_g_ema_stays_random():
    cfg = replace(FEWSHOT, ema=0.9999)
    assert initial_share(cfg, 1250) == pytest.approx(0.8825, abs=1e-3)
    warning = ema_warning(cfg, 1250)
    assert '10,000 steps' in warning and '1,250 steps' in warning and '88%' in warning
    assert ema_warning(cfg, 100_000) is None
    assert ema_warning(replace(cfg, ema_rampup=True), 1250) is None        # the ramp-up forgets the start
    assert ema_warning(DEFAULT_RUN, 1563) is None

def test_trainer_and_dry_run_print_the_warning(tmp_path, monkeypatch):
    from imle_tiny import TINY, tiny_images
    logged = []
    Trainer(replace(TINY, ema=0.9999), tiny_images(), RunOptions(outdir=str(tmp_path / 'r'), perceptual='fallback',
            progress=False), log=logged.append)
    assert any('G_ema' in m and '10,000 steps' in m for m in logged)
    monkeypatch.chdir(tmp_path)
    _, result = dry_run('--preset', 'fewshot', '--kimg', '5')
    assert 'warning: EMA 0.9999' in result.stderr

# ---------------------------------------------------------------- pickles written before these changes

class OldFewShotBlock(torch.nn.Module):
    """rtm_plugin.imle.decoders.FewShotBlock as it was before noise injection (verbatim)."""

    def __init__(self, res, src, width, w_dim, bottleneck, num_blocks):
        super().__init__()
        self.res, self.src = res, src
        mid = int(width * bottleneck)
        k = 3 if res > 2 else 1
        self.adain = AdaIN(width, w_dim)
        self.c1, self.c2, self.c3, self.c4 = _conv(width, mid, 1), _conv(mid, mid, k), _conv(mid, mid, k), _conv(mid, width, 1)
        with torch.no_grad():
            self.c4.weight.mul_(math.sqrt(1 / num_blocks))

    def forward(self, x, w):
        if self.src is not None:
            x = F.interpolate(x, scale_factor=self.res // self.src, mode='nearest')
        x = self.adain(x, w)
        h = self.c1(F.gelu(x))
        h = self.c2(F.gelu(h))
        h = self.c3(F.gelu(h))
        return x + self.c4(F.gelu(h))

class OldFewShotDecoder(DecoderBase):
    def __init__(self, w_dim, img_resolution, img_channels=3, width=384, bottleneck=0.25, blocks=None):
        spec = decoders.fewshot_blocks(img_resolution) if blocks is None else blocks
        layout = decoders.parse_blocks(spec)
        super().__init__(w_dim, img_resolution, img_channels, width, layout[0][0])
        self.spec = spec
        self.blocks = torch.nn.ModuleList(
            OldFewShotBlock(res, src, width, w_dim, bottleneck, len(layout)) for res, src in layout)

class OldConvNeXtDecoder(DecoderBase):
    def __init__(self, w_dim, img_resolution, img_channels=3, width=256, depth=2, expansion=4):
        super().__init__(w_dim, img_resolution, img_channels, width, 4)
        stages = int(math.log2(img_resolution)) - 1
        num_blocks = stages * depth
        self.blocks = torch.nn.ModuleList(
            ConvNeXtBlock(s > 0 and i == 0, width, w_dim, expansion, num_blocks)
            for s in range(stages) for i in range(depth))

OldFewShotBlock.__qualname__ = OldFewShotBlock.__name__ = 'FewShotBlock'
OldFewShotDecoder.__qualname__ = OldFewShotDecoder.__name__ = 'FewShotDecoder'
OldConvNeXtDecoder.__qualname__ = OldConvNeXtDecoder.__name__ = 'ConvNeXtDecoder'
for cls in (OldFewShotBlock, OldFewShotDecoder, OldConvNeXtDecoder):
    cls.__module__ = 'rtm_plugin.imle.decoders'

def old_pickle(monkeypatch, decoder, decoder_kwargs):
    """A generator pickle as the previous code wrote it: the old classes stand under the module's names while
    the generator is built and pickled (pickles name classes by module and name), and are gone when it loads."""
    with monkeypatch.context() as m:
        m.setattr(decoders, 'FewShotBlock', OldFewShotBlock)
        m.setattr(decoders, 'FewShotDecoder', OldFewShotDecoder)
        m.setattr(decoders, 'ConvNeXtDecoder', OldConvNeXtDecoder)
        torch.manual_seed(0)
        G = IMLEGenerator(16, 16, 16, 3, map='rtm', mapping_kwargs=dict(H=2, L=1, tokens=2, token_dim=8),
                          decoder=decoder, decoder_kwargs=decoder_kwargs)
        with torch.no_grad():
            for p in G.synthesis.parameters():                          # trained-looking weights
                p.add_(torch.randn_like(p) * 0.1)
        z = torch.randn(3, 16)
        return pickle.dumps(dict(G_ema=G)), z, G(z)

@pytest.mark.parametrize('decoder,kwargs', [('fewshot', dict(width=8)), ('convnext', dict(width=8))])
def test_generators_pickled_by_the_old_code_load_and_run(monkeypatch, decoder, kwargs):
    data, z, x = old_pickle(monkeypatch, decoder, kwargs)
    G = pickle.loads(data)['G_ema']
    assert type(G.synthesis) is {'fewshot': FewShotDecoder, 'convnext': ConvNeXtDecoder}[decoder]
    assert torch.equal(G(z), x)
    twin = rebuild(G)                                                   # its init_kwargs still build its layout
    twin.load_state_dict(G.state_dict())
    assert torch.equal(twin(z), x) and torch.equal(copy.deepcopy(G)(z), x)

def test_old_state_dicts_load_into_decoders_with_noise(monkeypatch):
    data, z, x = old_pickle(monkeypatch, 'fewshot', dict(width=8))
    old = pickle.loads(data)['G_ema']
    new = IMLEGenerator(**{**old.init_kwargs, 'decoder_kwargs': dict(width=8, noise=True)})
    assert any(k.endswith('noise.strength') for k in new.state_dict())
    new.load_state_dict(old.state_dict())                              # strict: missing strengths become 0
    assert torch.equal(new(z), x)

def test_old_convnext_training_state_is_refused_clearly():
    old = {k: v for k, v in as_dict(replace(FEWSHOT, decoder='convnext')).items() if k not in ('noise', 'optimizer')}
    with pytest.raises(ValueError, match='before App. C'):
        config_from_dict(old)
    fewshot_old = {k: v for k, v in as_dict(FEWSHOT).items() if k not in ('noise', 'optimizer')}
    assert config_from_dict(fewshot_old) == FEWSHOT                     # old few-shot runs resume as before

"""Generator (mapper + decoders), the perceptual loss, and pickles."""

import copy
import math
import os

import pytest
import torch
import torch.nn.functional as F

from rtm_plugin.imle.decoders import ConvNeXtDecoder, FewShotBlock, FewShotDecoder, fewshot_blocks, parse_blocks
from rtm_plugin.imle.generator import IMLEGenerator, NoDiscriminator
from rtm_plugin.imle.perceptual import (LPIPS, LPIPS_CHANNELS, MultiScaleGradientLoss, ReconstructionLoss,
                                        build_perceptual, find_lpips_weights)
from rtm_plugin.rtm import EqualizedLinear

def small_generator(map='rtm', resolution=16, decoder='fewshot', **decoder_kwargs):
    mk = dict(H=2, L=1, tokens=2, token_dim=8) if map == 'rtm' else dict(num_layers=8)
    dk = dict(width=8, **decoder_kwargs) if decoder != 'stylegan2' else decoder_kwargs
    return IMLEGenerator(16, 16, resolution, 3, map=map, mapping_kwargs=mk, decoder=decoder, decoder_kwargs=dk)

# ---------------------------------------------------------------- few-shot decoder

def test_official_block_string_is_cut_per_resolution():
    assert fewshot_blocks(16) == '1x4,4m1,4x4,8m4,8x4,16m8,16x3'
    assert fewshot_blocks(256).endswith('128x2,256m128')
    assert len(parse_blocks(fewshot_blocks(256))) == 28
    assert parse_blocks('1x2,4m1') == [(1, None), (1, None), (4, 1)]
    with pytest.raises(ValueError, match='resolutions 16, 32'):
        fewshot_blocks(48)
    with pytest.raises(ValueError, match="bad decoder block '4q1'"):
        parse_blocks('1x2,4q1')
    for decoder in (FewShotDecoder, ConvNeXtDecoder):      # blocks that stop short of the image are refused
        with pytest.raises(ValueError, match=r"decoder blocks '1x1,4m1' end at 4 px, not at img_resolution=8"):
            decoder(w_dim=8, img_resolution=8, width=8, blocks='1x1,4m1')

@pytest.mark.parametrize('resolution', [16, 32, 64])
@pytest.mark.parametrize('map', ['rtm', 'mlp'])
def test_generator_shapes_and_stylegan_attributes(resolution, map):
    G = small_generator(map, resolution)
    assert (G.z_dim, G.c_dim, G.w_dim, G.img_resolution, G.img_channels) == (16, 0, 16, resolution, 3)
    assert G.num_ws == len(parse_blocks(fewshot_blocks(resolution))) == G.mapping.num_ws
    x = G(torch.randn(2, 16), None, truncation_psi=1, noise_mode='const')
    assert x.shape == (2, 3, resolution, resolution)
    ws = G.mapping(torch.randn(2, 16), None)
    assert torch.equal(G.synthesis(ws), G.synthesis(ws))            # a deterministic function of w

def test_fewshot_block_details():
    torch.manual_seed(0)
    block1 = FewShotBlock(4, 1, 8, 16, 0.25, num_blocks=1)
    torch.manual_seed(0)
    block4 = FewShotBlock(4, 1, 8, 16, 0.25, num_blocks=4)
    assert torch.allclose(block4.c4.weight, block1.c4.weight * math.sqrt(1 / 4))   # last conv scaled
    assert block1.c2.kernel_size == (3, 3) and FewShotBlock(2, None, 8, 16, 0.25, 1).c2.kernel_size == (1, 1)
    assert block1.c1.out_channels == 2                                              # bottleneck 0.25 * 8
    assert all(torch.count_nonzero(c.bias) == 0 for c in (block1.c1, block1.c2, block1.c3, block1.c4))
    style = block1.adain.style
    assert torch.equal(style.bias, torch.cat([torch.ones(8), torch.zeros(8)]))      # gamma 1, beta 0
    assert style.in_features == 16 and style.out_features == 16

def test_adain_normalises_except_at_1x1():
    dec = FewShotDecoder(16, 16, 3, width=8)
    adain = dec.blocks[0].adain
    with torch.no_grad():
        adain.style.weight.zero_()                                  # gamma = 1, beta = 0 for every w
    x1 = torch.randn(2, 8, 1, 1) * 5 + 3
    assert torch.equal(adain(x1, torch.randn(2, 16)), x1)           # 1x1: no instance norm
    x4 = torch.randn(2, 8, 4, 4) * 5 + 3
    y = adain(x4, torch.randn(2, 16))
    assert torch.allclose(y, F.instance_norm(x4, eps=1e-2))

def test_output_has_gain_and_bias_and_no_tanh():
    G = small_generator('mlp')
    to_image = G.synthesis.to_image
    assert torch.equal(to_image.gain, torch.ones(1, 3, 1, 1)) and torch.equal(to_image.bias, torch.zeros(1, 3, 1, 1))
    with torch.no_grad():
        to_image.bias.fill_(5.0)
    assert G(torch.randn(2, 16)).min() > 1.5                        # unbounded output

def test_convnext_decoder():
    G = small_generator('rtm', 32, 'convnext')
    assert G.num_ws == 1 + 3 + 6 + 6 + 6                            # App. C, CIFAR-10: 1, 4, 8, 16, 32 px
    assert G(torch.randn(2, 16)).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match='App. C gives ConvNeXt layouts'):
        ConvNeXtDecoder(16, 24)

def test_bad_ws_shape_is_named():
    G = small_generator('mlp')
    with pytest.raises(ValueError, match=r'expected ws of shape \[N, 18, 16\]'):
        G.synthesis(torch.zeros(2, 3, 16))

# ---------------------------------------------------------------- the mapper's parameterisation

def test_plain_mapping_is_the_official_mlp_in_effect():
    """PixelNorm + 8 x (Linear, LReLU 0.2) with torch-Linear init and unit gains; Adam moves each weight by ~lr."""
    G = small_generator('mlp')
    layers = [m for m in G.mapping.modules() if isinstance(m, EqualizedLinear)]
    assert len(layers) == 8
    for m in layers:
        assert m.weight_gain == 1.0 and m.bias_gain == 1.0 and torch.count_nonzero(m.bias) == 0
        assert m.weight.abs().max() <= 1 / math.sqrt(m.in_features)
    z = torch.randn(4, 16)
    x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
    for m in layers:
        x = F.leaky_relu(F.linear(x, m.weight, m.bias), 0.2) * math.sqrt(2)
    assert torch.allclose(G.mapping(z)[:, 0], x, atol=1e-6)
    before = [m.weight.detach().clone() for m in layers]
    opt = torch.optim.AdamW(G.parameters(), lr=1e-3, weight_decay=0)
    G(z).square().mean().backward()
    opt.step()
    for m, w0 in zip(layers, before):
        step = (m.weight.detach() - w0).abs().max().item()
        assert 0.5e-3 < step < 1.5e-3

def test_rtm_mapper_options_reach_the_trunk():
    G = IMLEGenerator(16, 16, 16, 3, map='rtm', mapping_kwargs=dict(H=3, L=2, tokens=2, token_dim=8, block='attention',
                      heads=2), decoder_kwargs=dict(width=8))
    trunk = G.mapping.trunk
    assert (trunk.H, trunk.L, trunk.tokens, trunk.token_dim, trunk.block_type) == (3, 2, 2, 8, 'attention')

# ---------------------------------------------------------------- perceptual loss

VGG_CONV_SHAPES = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256),
                   14: (256, 256), 17: (512, 256), 19: (512, 512), 21: (512, 512), 24: (512, 512),
                   26: (512, 512), 28: (512, 512)}

def test_lpips_architecture_matches_torchvision_and_lpips_shapes():
    net = LPIPS()
    state = net.features.state_dict()
    assert set(state) == {f'{i}.{p}' for i in VGG_CONV_SHAPES for p in ('weight', 'bias')}
    for i, (cout, cin) in VGG_CONV_SHAPES.items():
        assert tuple(state[f'{i}.weight'].shape) == (cout, cin, 3, 3)
    assert sum(p.numel() for p in net.features.parameters()) == 14_714_688     # torchvision vgg16().features
    lins = net.lins.state_dict()
    assert {k: tuple(v.shape) for k, v in lins.items()} == {
        f'{k}.model.1.weight': (1, c, 1, 1) for k, c in enumerate(LPIPS_CHANNELS)}

def write_fake_weights(folder):
    """Random weights in the real files' formats: torchvision's VGG16 (with classifier keys) and lpips' v0.1."""
    g = torch.Generator().manual_seed(0)
    vgg = {}
    for i, (cout, cin) in VGG_CONV_SHAPES.items():
        vgg[f'features.{i}.weight'] = torch.randn([cout, cin, 3, 3], generator=g) * math.sqrt(2 / (9 * cin))
        vgg[f'features.{i}.bias'] = torch.randn([cout], generator=g) * 0.01
    vgg['classifier.0.weight'] = torch.zeros([8, 8])                # ignored
    lin = {f'lin{k}.model.1.weight': torch.rand([1, c, 1, 1], generator=g) for k, c in enumerate(LPIPS_CHANNELS)}
    vgg_path, lin_path = os.path.join(folder, 'vgg16-397923af.pth'), os.path.join(folder, 'vgg.pth')
    torch.save(vgg, vgg_path)
    torch.save(lin, lin_path)
    return vgg_path, lin_path, vgg, lin

def reference_lpips(x, y, vgg, lin):
    """LPIPS v0.1 written out from the paper's definition, independently of the module."""
    shift = torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1)
    scale = torch.tensor([.458, .448, .450]).view(1, 3, 1, 1)
    pools_after = {2, 7, 14, 21}                                    # conv index followed by ReLU then max-pool
    taps_after = {2: 0, 7: 1, 14: 2, 21: 3, 28: 4}
    def feats(h):
        h, out = (h - shift) / scale, {}
        for i in sorted(VGG_CONV_SHAPES):
            h = F.relu(F.conv2d(h, vgg[f'features.{i}.weight'], vgg[f'features.{i}.bias'], padding=1))
            if i in taps_after:
                out[taps_after[i]] = h
            if i in pools_after:
                h = F.max_pool2d(h, 2)
        return out
    fx, fy, d = feats(x), feats(y), 0
    for k in range(5):
        nx = fx[k] / (fx[k].norm(dim=1, keepdim=True) + 1e-10)
        ny = fy[k] / (fy[k].norm(dim=1, keepdim=True) + 1e-10)
        d = d + ((nx - ny) ** 2 * lin[f'lin{k}.model.1.weight']).sum(1).mean((1, 2))
    return d

def test_lpips_loads_weight_files_and_computes_lpips(tmp_path, monkeypatch):
    vgg_path, lin_path, vgg, lin = write_fake_weights(str(tmp_path))
    net, name = build_perceptual('lpips', vgg_path, lin_path)
    assert isinstance(net, LPIPS) and name.startswith('lpips-vgg')
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        d = net(x, y)
        assert torch.allclose(d, reference_lpips(x, y, vgg, lin), rtol=1e-4)
        assert torch.allclose(net(x, x), torch.zeros(2))
    assert not any(p.requires_grad for p in net.parameters())
    monkeypatch.setenv('RTM_LPIPS_VGG', vgg_path)                   # discovery through the environment
    monkeypatch.setenv('RTM_LPIPS_LIN', lin_path)
    assert find_lpips_weights() == (vgg_path, lin_path)
    assert isinstance(build_perceptual('auto')[0], LPIPS)
    loss = ReconstructionLoss(net, 1.0, 0.1)
    xg = x.clone().requires_grad_(True)
    loss(xg, y).sum().backward()
    assert xg.grad.abs().sum() > 0

def test_lpips_bad_files_are_named(tmp_path):
    vgg_path, lin_path, vgg, lin = write_fake_weights(str(tmp_path))
    del lin['lin3.model.1.weight']
    torch.save(lin, tmp_path / 'short.pth')
    with pytest.raises(ValueError, match=r"short\.pth: missing weights \['3\.model\.1\.weight'\]"):
        build_perceptual('lpips', vgg_path, str(tmp_path / 'short.pth'))
    vgg['features.5.weight'] = torch.zeros(128, 64, 1, 1)
    torch.save(vgg, tmp_path / 'wrong.pth')
    with pytest.raises(ValueError, match=r'wrong\.pth: 5\.weight has shape'):
        build_perceptual('lpips', str(tmp_path / 'wrong.pth'), lin_path)
    (tmp_path / 'junk.pth').write_bytes(b'junk')
    with pytest.raises(ValueError, match='cannot read LPIPS weights from .*junk.pth'):
        build_perceptual('lpips', str(tmp_path / 'junk.pth'), lin_path)

def test_fallback_is_announced_once_and_lpips_required_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.delenv('RTM_LPIPS_VGG', raising=False)
    monkeypatch.delenv('RTM_LPIPS_LIN', raising=False)
    if find_lpips_weights() != (None, None):
        pytest.skip('LPIPS weights are installed on this machine')
    said = []
    net, name = build_perceptual('auto', log=said.append)
    assert isinstance(net, MultiScaleGradientLoss) and 'fallback' in name
    assert len(said) == 1 and 'using the multi-scale' in said[0]
    with pytest.raises(FileNotFoundError, match='LPIPS needs vgg16-397923af.pth'):
        build_perceptual('lpips')

def test_fallback_loss_properties():
    loss = MultiScaleGradientLoss()
    x = torch.rand(3, 3, 16, 16)
    assert torch.equal(loss(x, x), torch.zeros(3))
    shifted = x + 0.1                                               # a flat offset: no gradient error
    stripes = torch.tensor([0.1, 0.1, -0.1, -0.1]).repeat(4).view(1, 1, 16, 1)
    assert torch.allclose((x + stripes - x).abs().mean(), (shifted - x).abs().mean())   # same pixel L1
    assert (loss(x, x + stripes) > loss(x, shifted) + 0.1).all()    # structure weighs more

# ---------------------------------------------------------------- pickles

def test_snapshot_pickle_round_trip(tmp_path):
    from rtm_plugin.imle.checkpoint import save_snapshot
    from rtm_plugin.snapshots import latest_snapshot, load_snapshot
    G = small_generator('rtm')
    data = dict(G=G, G_ema=copy.deepcopy(G).eval(), D=NoDiscriminator(), augment_pipe=None, training_set_kwargs=None)
    save_snapshot(str(tmp_path / 'network-snapshot-000010.pkl'), data)
    save_snapshot(str(tmp_path / 'network-snapshot-000002.pkl'), data)
    assert latest_snapshot(str(tmp_path)).endswith('000010.pkl')
    assert not [p for p in os.listdir(tmp_path) if p.startswith('.tmp')]
    loaded = load_snapshot(str(tmp_path / 'network-snapshot-000010.pkl'))
    z = torch.randn(3, 16)
    assert torch.equal(loaded['G_ema'](z), data['G_ema'](z))
    assert loaded['G_ema'].init_kwargs == G.init_kwargs
    with pytest.raises(RuntimeError, match='no discriminator'):
        loaded['D'](z)

def test_stylegan2_decoder_and_legacy_loader(tmp_path):
    sg2 = os.environ.get('RTM_SG2ADA_DIR')
    if not sg2:
        pytest.skip('RTM_SG2ADA_DIR is not set: the stylegan2 decoder needs a stylegan2-ada-pytorch checkout')
    from rtm_plugin.imle.checkpoint import save_snapshot
    G = small_generator('rtm', 16, 'stylegan2', channel_base=256, channel_max=16).eval()
    assert G.num_ws == G.synthesis.net.num_ws == G.mapping.num_ws
    z = torch.randn(2, 16)
    x = G(z)
    assert x.shape == (2, 3, 16, 16) and torch.equal(x, G(z))        # const noise: deterministic
    path = str(tmp_path / 'network-snapshot-000000.pkl')
    save_snapshot(path, dict(G=G, G_ema=G, D=NoDiscriminator(), augment_pipe=None, training_set_kwargs=None))
    import legacy                                                    # upstream, from RTM_SG2ADA_DIR
    with open(path, 'rb') as f:
        loaded = legacy.load_network_pkl(f)
    assert torch.equal(loaded['G_ema'](z, None, noise_mode='const'), x)

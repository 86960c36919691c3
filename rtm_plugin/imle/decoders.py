"""Decoders w -> image for the RS-IMLE generator. Each takes ws [N, num_ws, w_dim] (one w per block, so
style mixing works as in StyleGAN; the mapper broadcasts one w to all) and returns [N, C, R, R], no tanh.

- FewShotDecoder: the official RS-IMLE few-shot decoder (SerChirag/rs-imle models.py, hps 'fewshot'), with
  optional spatial noise injection (the paper's App. C; the official NoiseInjection is a no-op).
- ConvNeXtDecoder: the paper's App. C ConvNeXt decoder (CIFAR-10 and CelebA-HQ layouts in CONVNEXT_BLOCKS);
  the ConvNeXt details App. C leaves open, and our choices, are in StyleConvNeXtBlock's docstring and the README.

Both decoders use one block-string grammar ('RxK' = K blocks at R px, 'RmS' = one block that upsamples S -> R,
nearest), start from a learned constant at the first block's resolution, and end in a 1x1 conv to RGB.
"""

import math

import torch
import torch.nn.functional as F

# hps.py 'fewshot' dec_blocks (256 px): 'RxK' = K blocks at R, 'RmS' = one block that upsamples S -> R (nearest).
FEWSHOT_BLOCKS = '1x4,4m1,4x4,8m4,8x4,16m8,16x3,32m16,32x2,64m32,64x2,128m64,128x2,256m128'
# App. C ConvNeXt layouts: CIFAR-10 1/4/8/16/32 px with 1/3/6/6/6 blocks (22); CelebA-HQ 1/4/.../256 px with
# 1/3/5/6/6/6/5/2 blocks (34). The first block of each stage after the 1x1 one upsamples.
CONVNEXT_BLOCKS = {
    32: '1x1,4m1,4x2,8m4,8x5,16m8,16x5,32m16,32x5',
    256: '1x1,4m1,4x2,8m4,8x4,16m8,16x5,32m16,32x5,64m32,64x5,128m64,128x4,256m128,256x1',
}
NOISE_MAX_RES = 256         # App. C: spatial noise at resolutions <= 256
NOISE_MODES = ('random', 'const', 'none')

def parse_blocks(spec, end=None):
    """'1x2,4m1,4x2' -> [(1, None), (1, None), (4, 1), (4, None), (4, None)]: (resolution, upsampled-from).
    end: the image resolution the blocks must end at."""
    blocks = []
    for token in spec.split(','):
        token = token.strip()
        try:
            if 'x' in token:
                res, count = (int(a) for a in token.split('x'))
                blocks += [(res, None)] * count
            elif 'm' in token:
                res, src = (int(a) for a in token.split('m'))
                if res % src:
                    raise ValueError
                blocks.append((res, src))
            else:
                blocks.append((int(token), None))
        except ValueError:
            raise ValueError(f'bad decoder block {token!r} in {spec!r}: expected RxK or RmS, e.g. 8x4 or 16m8') from None
    if not blocks:
        raise ValueError(f'empty decoder block string {spec!r}')
    if end is not None and blocks[-1][0] != end:
        raise ValueError(f'decoder blocks {spec!r} end at {blocks[-1][0]} px, not at img_resolution={end}')
    return blocks

def fewshot_blocks(resolution):
    """The official 256-px block string cut at `resolution` (16, 32, 64, 128 or 256)."""
    if resolution not in (16, 32, 64, 128, 256):
        raise ValueError(f'the few-shot decoder supports resolutions 16, 32, 64, 128 and 256, got {resolution!r}')
    return ','.join(t for t in FEWSHOT_BLOCKS.split(',') if int(t.replace('m', 'x').split('x')[0]) <= resolution)

def _conv(cin, cout, k, groups=1):
    """torch's default conv init with a zero bias, as the official get_1x1 / get_3x3."""
    c = torch.nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups)
    torch.nn.init.zeros_(c.bias)
    return c

class AdaIN(torch.nn.Module):
    """InstanceNorm (eps 1e-2, skipped at 1x1), then gamma * x + beta from Linear(w); gamma = 1, beta = 0 at init."""

    def __init__(self, channels, w_dim):
        super().__init__()
        self.style = torch.nn.Linear(w_dim, 2 * channels)
        with torch.no_grad():
            self.style.bias[:channels] = 1
            self.style.bias[channels:] = 0

    def forward(self, x, w):
        gamma, beta = self.style(w)[:, :, None, None].chunk(2, dim=1)
        if x.shape[-1] > 1:
            x = F.instance_norm(x, eps=1e-2)
        return gamma * x + beta

class NoiseInjection(torch.nn.Module):
    """x + strength * noise: per-pixel noise [N, 1, R, R] times a learned per-channel strength, zero at init
    (StyleGAN's ApplyNoise). A state dict written before this module existed loads with strength 0, which is
    exactly the old, noise-free function."""

    def __init__(self, channels):
        super().__init__()
        self.strength = torch.nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x, noise):
        return x + self.strength * noise

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + 'strength' not in state_dict:
            state_dict[prefix + 'strength'] = torch.zeros_like(self.strength)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

def block_noise(block):
    """A block's NoiseInjection, or None (blocks pickled before noise existed have no such attribute)."""
    return block._modules.get('noise')

class FewShotBlock(torch.nn.Module):
    """[nearest upsample] -> [+ noise] -> AdaIN -> x + c4(gelu(c3(gelu(c2(gelu(c1(gelu(x)))))))), 3x3 convs only
    above 2 px. Noise sits where the official DecBlock applies its (no-op) NoiseInjection."""

    def __init__(self, res, src, width, w_dim, bottleneck, num_blocks, noise=False):
        super().__init__()
        self.res, self.src = res, src
        mid = int(width * bottleneck)
        k = 3 if res > 2 else 1
        if noise and res <= NOISE_MAX_RES:
            self.noise = NoiseInjection(width)
        self.adain = AdaIN(width, w_dim)
        self.c1, self.c2, self.c3, self.c4 = _conv(width, mid, 1), _conv(mid, mid, k), _conv(mid, mid, k), _conv(mid, width, 1)
        with torch.no_grad():
            self.c4.weight.mul_(math.sqrt(1 / num_blocks))

    def forward(self, x, w, noise=None):
        if self.src is not None:
            x = F.interpolate(x, scale_factor=self.res // self.src, mode='nearest')
        if noise is not None:
            x = self.noise(x, noise)
        x = self.adain(x, w)
        h = self.c1(F.gelu(x))
        h = self.c2(F.gelu(h))
        h = self.c3(F.gelu(h))
        return x + self.c4(F.gelu(h))

class ToImage(torch.nn.Module):
    """1x1 conv to image channels with a learned per-channel gain (1) and bias (0); no tanh."""

    def __init__(self, width, img_channels):
        super().__init__()
        self.conv = _conv(width, img_channels, 1)
        self.gain = torch.nn.Parameter(torch.ones(1, img_channels, 1, 1))
        self.bias = torch.nn.Parameter(torch.zeros(1, img_channels, 1, 1))

    def forward(self, x):
        return self.gain * self.conv(x) + self.bias

class DecoderBase(torch.nn.Module):
    """A learned constant, a list of w-conditioned blocks, ToImage. Subclasses fill `self.blocks`."""

    def __init__(self, w_dim, img_resolution, img_channels, width, first_res):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels, self.width = w_dim, img_resolution, img_channels, width
        self.const = torch.nn.Parameter(torch.randn(1, width, first_res, first_res))
        self.to_image = ToImage(width, img_channels)

    @property
    def num_ws(self):
        return len(self.blocks)

    def make_noise(self, n, noise_mode='random', noise_seeds=None, device=None):
        """{block index: [n, 1, R, R] noise} for the blocks that inject noise.
        'random': fresh N(0, 1) from the global RNG, or, with noise_seeds (one int per sample), from a generator
        seeded per sample, so a sample's noise does not depend on the batch it is rendered in (DDP shards and
        resumed runs draw what one uninterrupted process draws). 'const': one fixed noise image per layer (seed 0)
        for every sample. 'none': no noise (as if the strengths were zero)."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f'noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}')
        layers = [(i, block.res) for i, block in enumerate(self.blocks) if block_noise(block) is not None]
        if not layers or noise_mode == 'none':
            return {}
        device = torch.device(device or self.const.device)
        sizes = [r * r for _, r in layers]

        def draw(seed):
            return torch.randn(sum(sizes), generator=torch.Generator(device).manual_seed(int(seed)), device=device)
        if noise_mode == 'const':
            flat = draw(0).expand(n, -1)
        elif noise_seeds is None:
            flat = torch.randn([n, sum(sizes)], device=device)
        else:
            if len(noise_seeds) != n:
                raise ValueError(f'noise_seeds has {len(noise_seeds)} entries for a batch of {n}')
            flat = torch.stack([draw(s) for s in noise_seeds.tolist()]) if n else torch.zeros([0, sum(sizes)], device=device)
        return {i: part.reshape(n, 1, r, r) for (i, r), part in zip(layers, flat.split(sizes, dim=1))}

    def forward(self, ws, noise_mode='random', noise_seeds=None, **unused):
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f'expected ws of shape [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}')
        noise = self.make_noise(ws.shape[0], noise_mode, noise_seeds, ws.device)
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        for i, block in enumerate(self.blocks):
            x = block(x, ws[:, i]) if i not in noise else block(x, ws[:, i], noise[i])
        return self.to_image(x)

    def stages(self):
        """[(resolution, number of blocks)] read from the built blocks, in order."""
        out = []
        for block in self.blocks:
            if out and out[-1][0] == block.res:
                out[-1] = (block.res, out[-1][1] + 1)
            else:
                out.append((block.res, 1))
        return out

class FewShotDecoder(DecoderBase):
    """The official RS-IMLE few-shot decoder (width 384, bottleneck 0.25 officially)."""

    def __init__(self, w_dim, img_resolution, img_channels=3, width=384, bottleneck=0.25, blocks=None, noise=False):
        spec = fewshot_blocks(img_resolution) if blocks is None else blocks
        layout = parse_blocks(spec, end=img_resolution)
        super().__init__(w_dim, img_resolution, img_channels, width, layout[0][0])
        self.spec = spec
        self.blocks = torch.nn.ModuleList(
            FewShotBlock(res, src, width, w_dim, bottleneck, len(layout), noise) for res, src in layout)

class ConvNeXtBlock(torch.nn.Module):
    """The pre-App. C guess, kept unchanged so that generators pickled before the App. C decoder still load and run.
    [nearest upsample] -> depthwise 7x7 -> LayerNorm over channels -> gamma(w) * x + beta(w) -> 1x1 to
    expansion * C -> GELU -> 1x1 back (scaled by sqrt(1/num_blocks) at init) -> residual."""

    def __init__(self, upsample, width, w_dim, expansion, num_blocks):
        super().__init__()
        self.upsample = upsample
        self.dwconv = torch.nn.Conv2d(width, width, 7, padding=3, groups=width)
        self.modulation = AdaIN(width, w_dim)
        self.pw1 = _conv(width, expansion * width, 1)
        self.pw2 = _conv(expansion * width, width, 1)
        with torch.no_grad():
            self.pw2.weight.mul_(math.sqrt(1 / num_blocks))

    def forward(self, x, w):
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode='nearest')
        h = self.dwconv(x)
        h = F.layer_norm(h.permute(0, 2, 3, 1), h.shape[1:2]).permute(0, 3, 1, 2)
        gamma, beta = self.modulation.style(w)[:, :, None, None].chunk(2, dim=1)
        h = gamma * h + beta
        return x + self.pw2(F.gelu(self.pw1(h)))

class StyleConvNeXtBlock(torch.nn.Module):
    """The App. C ConvNeXt block: [nearest upsample] -> depthwise 7x7 conv -> [+ noise] -> AdaIN(w) -> 1x1 conv to
    4C -> GELU -> 1x1 conv back to C -> + input.

    App. C fixes ConvNeXt blocks, AdaIN(w) in every block, noise at <= 256 px and the widths/stages. It leaves open,
    and we chose: ConvNeXt's 7x7 depthwise kernel and 4x MLP expansion; AdaIN (InstanceNorm, eps 1e-2, skipped at
    1x1, gamma = 1 and beta = 0 at init, the same AdaIN as the few-shot decoder) in place of ConvNeXt's LayerNorm;
    noise after the spatial (depthwise) conv and before AdaIN, StyleGAN's order; no layer scale and no stochastic
    depth: instead the last 1x1 conv is scaled by sqrt(1/num_blocks) at init, as in the few-shot decoder; zero
    conv biases; nearest upsampling at the first block of a stage."""

    def __init__(self, res, src, width, w_dim, num_blocks, expansion=4, noise=False):
        super().__init__()
        self.res, self.src = res, src
        self.dwconv = _conv(width, width, 7, groups=width)
        if noise and res <= NOISE_MAX_RES:
            self.noise = NoiseInjection(width)
        self.adain = AdaIN(width, w_dim)
        self.pw1 = _conv(width, expansion * width, 1)
        self.pw2 = _conv(expansion * width, width, 1)
        with torch.no_grad():
            self.pw2.weight.mul_(math.sqrt(1 / num_blocks))

    def forward(self, x, w, noise=None):
        if self.src is not None:
            x = F.interpolate(x, scale_factor=self.res // self.src, mode='nearest')
        h = self.dwconv(x)
        if noise is not None:
            h = self.noise(h, noise)
        h = self.adain(h, w)
        return x + self.pw2(F.gelu(self.pw1(h)))

class ConvNeXtDecoder(DecoderBase):
    """The paper's App. C ConvNeXt decoder: a learned constant at the first block's resolution (1x1), then
    StyleConvNeXtBlocks laid out by a block string (CONVNEXT_BLOCKS for 32 and 256 px by default), constant width
    (768 in App. C), and a 1x1 conv to RGB.

    legacy_depth: the pre-App. C guess (4x4 constant, legacy_depth ConvNeXtBlocks per resolution); only for
    generators pickled before the App. C decoder (IMLEGenerator.__setstate__ sets it)."""

    def __init__(self, w_dim, img_resolution, img_channels=3, width=768, blocks=None, expansion=4, noise=False,
                 legacy_depth=None):
        if legacy_depth is not None:
            self._init_legacy(w_dim, img_resolution, img_channels, width, legacy_depth, expansion)
            return
        if blocks is None:
            if img_resolution not in CONVNEXT_BLOCKS:
                raise ValueError(f'App. C gives ConvNeXt layouts for {sorted(CONVNEXT_BLOCKS)} px only, got '
                                 f'{img_resolution!r}; pass a block string (--dec-blocks), e.g. {CONVNEXT_BLOCKS[32]}')
            blocks = CONVNEXT_BLOCKS[img_resolution]
        layout = parse_blocks(blocks, end=img_resolution)
        super().__init__(w_dim, img_resolution, img_channels, width, layout[0][0])
        self.spec = blocks
        self.blocks = torch.nn.ModuleList(
            StyleConvNeXtBlock(res, src, width, w_dim, len(layout), expansion, noise) for res, src in layout)

    def _init_legacy(self, w_dim, img_resolution, img_channels, width, depth, expansion):
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f'the ConvNeXt decoder needs a power-of-two resolution >= 4, got {img_resolution!r}')
        super().__init__(w_dim, img_resolution, img_channels, width, 4)
        stages = int(math.log2(img_resolution)) - 1                     # 4, 8, ..., img_resolution
        num_blocks = stages * depth
        self.blocks = torch.nn.ModuleList(
            ConvNeXtBlock(s > 0 and i == 0, width, w_dim, expansion, num_blocks)
            for s in range(stages) for i in range(depth))

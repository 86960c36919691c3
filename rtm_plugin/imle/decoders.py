"""Decoders w -> image for the RS-IMLE generator. Each takes ws [N, num_ws, w_dim] (one w per block, so
style mixing works as in StyleGAN; the mapper broadcasts one w to all) and returns [N, C, R, R], no tanh.

- FewShotDecoder: the official RS-IMLE few-shot decoder (SerChirag/rs-imle models.py, hps 'fewshot').
- ConvNeXtDecoder: the paper's ConvNeXt-style decoder for CIFAR-like data; Appendix C is not available
  offline, so its details are our assumptions, listed in the class docstring and the README.
"""

import math

import torch
import torch.nn.functional as F

# hps.py 'fewshot' dec_blocks (256 px): 'RxK' = K blocks at R, 'RmS' = one block that upsamples S -> R (nearest).
FEWSHOT_BLOCKS = '1x4,4m1,4x4,8m4,8x4,16m8,16x3,32m16,32x2,64m32,64x2,128m64,128x2,256m128'

def parse_blocks(spec):
    """'1x2,4m1,4x2' -> [(1, None), (1, None), (4, 1), (4, None), (4, None)]: (resolution, upsampled-from)."""
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
    return blocks

def fewshot_blocks(resolution):
    """The official 256-px block string cut at `resolution` (16, 32, 64, 128 or 256)."""
    if resolution not in (16, 32, 64, 128, 256):
        raise ValueError(f'the few-shot decoder supports resolutions 16, 32, 64, 128 and 256, got {resolution!r}')
    return ','.join(t for t in FEWSHOT_BLOCKS.split(',') if int(t.replace('m', 'x').split('x')[0]) <= resolution)

def _conv(cin, cout, k):
    """torch's default conv init with a zero bias, as the official get_1x1 / get_3x3."""
    c = torch.nn.Conv2d(cin, cout, k, padding=k // 2)
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

class FewShotBlock(torch.nn.Module):
    """[nearest upsample] -> AdaIN -> x + c4(gelu(c3(gelu(c2(gelu(c1(gelu(x)))))))), 3x3 convs only above 2 px."""

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

    def forward(self, ws, **unused):
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f'expected ws of shape [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}')
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        for i, block in enumerate(self.blocks):
            x = block(x, ws[:, i])
        return self.to_image(x)

class FewShotDecoder(DecoderBase):
    """The official RS-IMLE few-shot decoder (width 384, bottleneck 0.25 officially)."""

    def __init__(self, w_dim, img_resolution, img_channels=3, width=384, bottleneck=0.25, blocks=None):
        spec = fewshot_blocks(img_resolution) if blocks is None else blocks
        layout = parse_blocks(spec)
        if layout[-1][0] != img_resolution:
            raise ValueError(f'decoder blocks {spec!r} end at {layout[-1][0]} px, not at img_resolution={img_resolution}')
        super().__init__(w_dim, img_resolution, img_channels, width, layout[0][0])
        self.spec = spec
        self.blocks = torch.nn.ModuleList(
            FewShotBlock(res, src, width, w_dim, bottleneck, len(layout)) for res, src in layout)

class ConvNeXtBlock(torch.nn.Module):
    """[nearest upsample] -> depthwise 7x7 -> LayerNorm over channels -> gamma(w) * x + beta(w) -> 1x1 to
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

class ConvNeXtDecoder(DecoderBase):
    """ConvNeXt-style decoder for CIFAR-like data (assumed; see the README): a learned 4x4 constant, then
    `depth` ConvNeXt blocks at every resolution 4, 8, ..., img_resolution, the first of each doubling with
    nearest upsampling; constant width; w enters every block as an AdaIN-like modulation after the LayerNorm."""

    def __init__(self, w_dim, img_resolution, img_channels=3, width=256, depth=2, expansion=4):
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f'the ConvNeXt decoder needs a power-of-two resolution >= 4, got {img_resolution!r}')
        super().__init__(w_dim, img_resolution, img_channels, width, 4)
        stages = int(math.log2(img_resolution)) - 1                     # 4, 8, ..., img_resolution
        num_blocks = stages * depth
        self.blocks = torch.nn.ModuleList(
            ConvNeXtBlock(s > 0 and i == 0, width, w_dim, expansion, num_blocks)
            for s in range(stages) for i in range(depth))

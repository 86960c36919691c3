"""The RS-IMLE generator: a mapper (RTM or the MLP baseline, from rtm_plugin.mapping) and a decoder, behind
StyleGAN's Generator interface (z_dim, c_dim, w_dim, num_ws, img_resolution, img_channels, .mapping,
.synthesis, G(z, c, truncation_psi=..)), so tools written for StyleGAN pickles work on it unchanged.

Pickles hold these classes by reference: loading one needs rtm_plugin importable (and, for the stylegan2
decoder, the upstream checkout on sys.path, whose classes carry their own source)."""

import copy
import math

import torch

from rtm_plugin.mapping import build_mapping
from rtm_plugin.rtm import EqualizedLinear

DECODERS = ('fewshot', 'convnext', 'stylegan2')

def build_decoder(kind, w_dim, img_resolution, img_channels, **kwargs):
    if kind == 'fewshot':
        from rtm_plugin.imle.decoders import FewShotDecoder
        return FewShotDecoder(w_dim, img_resolution, img_channels, **kwargs)
    if kind == 'convnext':
        from rtm_plugin.imle.decoders import ConvNeXtDecoder
        return ConvNeXtDecoder(w_dim, img_resolution, img_channels, **kwargs)
    if kind == 'stylegan2':
        from rtm_plugin.imle.stylegan2 import StyleGAN2Decoder
        return StyleGAN2Decoder(w_dim, img_resolution, img_channels, **kwargs)
    raise ValueError(f'decoder must be one of {DECODERS}, got {kind!r}')

def build_generator(cfg):
    """The IMLEGenerator an IMLEConfig describes (rtm_plugin.imle.config)."""
    if cfg.map == 'rtm':
        mapping_kwargs = dict(H=cfg.rtm_h, L=cfg.rtm_l, tokens=cfg.rtm_tokens, token_dim=cfg.rtm_dim, block=cfg.rtm_block)
    else:
        mapping_kwargs = dict(num_layers=cfg.mlp_layers)
    decoder_kwargs = {'fewshot': dict(width=cfg.width, bottleneck=cfg.bottleneck, blocks=cfg.dec_blocks, noise=cfg.noise),
                      'convnext': dict(width=cfg.width, blocks=cfg.dec_blocks, noise=cfg.noise)}.get(cfg.decoder, {})
    if cfg.noise and cfg.decoder not in ('fewshot', 'convnext'):
        raise ValueError(f'--noise applies to the fewshot and convnext decoders; {cfg.decoder} has its own noise inputs')
    return IMLEGenerator(z_dim=cfg.z_dim, w_dim=cfg.w_dim, img_resolution=cfg.resolution, img_channels=3,
                         map=cfg.map, mapping_kwargs=mapping_kwargs, decoder=cfg.decoder, decoder_kwargs=decoder_kwargs)

def plain_linear_(module):
    """Turn every equalised-lr layer into a plain torch Linear in effect: unit gains and torch's default
    init (weights U(+-1/sqrt(fan_in)), zero biases), so Adam steps every weight and bias by ~lr as the
    official RS-IMLE mapping (nn.Linear, no equalised lr) does. No single lr_multiplier can: it scales a
    layer's weight step by lr_multiplier/sqrt(fan_in) but its bias step by lr_multiplier."""
    for m in module.modules():
        if isinstance(m, EqualizedLinear):
            with torch.no_grad():
                bound = 1 / math.sqrt(m.in_features)
                m.weight.uniform_(-bound, bound)
                if m.bias is not None:
                    m.bias.zero_()
            m.weight_gain = 1.0
            m.bias_gain = 1.0
    return module

class NoDiscriminator(torch.nn.Module):
    """Stands in the pickle's 'D' slot, which stylegan2-ada's legacy.load_network_pkl requires. IMLE has none."""

    def forward(self, *args, **kwargs):
        raise RuntimeError('an RS-IMLE pickle has no discriminator')

class IMLEGenerator(torch.nn.Module):
    """G(z) = synthesis(mapping(z)); unconditional (c_dim = 0)."""

    def __init__(self,
        z_dim           = 1024,     # Latent size (official: 1024).
        w_dim           = 1024,     # Style size (official: 1024).
        img_resolution  = 256,
        img_channels    = 3,
        map             = 'rtm',    # 'rtm' or 'mlp'.
        mapping_kwargs  = None,     # rtm: H, L, tokens, token_dim, block, ...; mlp: num_layers (8), ...
        decoder         = 'fewshot',
        decoder_kwargs  = None,
        plain_mapping   = True,     # Plain Linear parameterisation, as the official code (see plain_linear_).
    ):
        super().__init__()
        self.init_kwargs = copy.deepcopy(dict(z_dim=z_dim, w_dim=w_dim, img_resolution=img_resolution,
            img_channels=img_channels, map=map, mapping_kwargs=mapping_kwargs, decoder=decoder,
            decoder_kwargs=decoder_kwargs, plain_mapping=plain_mapping))
        self.z_dim, self.c_dim, self.w_dim = z_dim, 0, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = build_decoder(decoder, w_dim, img_resolution, img_channels, **(decoder_kwargs or {}))
        self.num_ws = self.synthesis.num_ws
        self.mapping = build_mapping(map, z_dim=z_dim, c_dim=0, w_dim=w_dim, num_ws=self.num_ws,
                                     **(mapping_kwargs or {}))
        if plain_mapping:
            plain_linear_(self.mapping)

    def __setstate__(self, state):
        super().__setstate__(state)
        self._migrate_legacy_convnext()

    def _migrate_legacy_convnext(self):
        """A generator pickled before the App. C ConvNeXt decoder holds the old blocks; make its init_kwargs
        rebuild that same layout (rebuild(), DDP replicas, EMA copies), not the App. C one."""
        from rtm_plugin.imle.decoders import ConvNeXtBlock
        kw = self.init_kwargs
        if kw.get('decoder') == 'convnext' and isinstance(self.synthesis.blocks[0], ConvNeXtBlock):
            dk = dict(kw.get('decoder_kwargs') or {})
            if 'legacy_depth' not in dk:
                dk = dict(width=dk.get('width', 256), expansion=dk.get('expansion', 4), legacy_depth=dk.get('depth', 2))
                kw['decoder_kwargs'] = dk

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, mapping_kwargs=None, **synthesis_kwargs):
        with torch.autocast(z.device.type, enabled=False):     # the mapper stays fp32 under --amp (precision.py)
            ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                              **(mapping_kwargs or {}))
        return self.synthesis(ws, **synthesis_kwargs)

def rebuild(G):
    """A fresh generator with the same constructor arguments (e.g. a DDP replica or an EMA copy)."""
    return IMLEGenerator(**copy.deepcopy(G.init_kwargs))

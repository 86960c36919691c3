"""StyleGAN2's synthesis network as the RS-IMLE decoder, imported from an upstream stylegan2-ada-pytorch
checkout (RTM_SG2ADA_DIR, or already on sys.path). Nothing of upstream is copied here.

Upstream's custom ops fall back to their reference implementations on CPU. Noise inputs are fixed
(noise_mode='const'): IMLE matches a latent to an image, so the image must be a function of the latent
(the official RS-IMLE code zeroes its spatial noise for the same reason)."""

import importlib
import os
import sys

import torch

def import_stylegan2_networks(sg2_dir=None):
    """upstream `training.networks`, from sg2_dir, $RTM_SG2ADA_DIR or sys.path; a clear ImportError if absent."""
    sg2_dir = sg2_dir or os.environ.get('RTM_SG2ADA_DIR')
    if sg2_dir:
        if not os.path.isfile(os.path.join(sg2_dir, 'training', 'networks.py')):
            raise ImportError(f'{sg2_dir} is not a stylegan2-ada-pytorch checkout (no training/networks.py)')
        if sg2_dir not in sys.path:
            sys.path.insert(0, sg2_dir)
    try:
        return importlib.import_module('training.networks')
    except ImportError as e:
        raise ImportError('the stylegan2 decoder needs a stylegan2-ada-pytorch checkout: set RTM_SG2ADA_DIR '
                          f'or put it on sys.path ({e})') from e

class StyleGAN2Decoder(torch.nn.Module):
    """Upstream SynthesisNetwork(w_dim, img_resolution, img_channels, channel_base, channel_max) in fp32."""

    def __init__(self, w_dim, img_resolution, img_channels=3, channel_base=16384, channel_max=512, sg2_dir=None):
        super().__init__()
        networks = import_stylegan2_networks(sg2_dir)
        self.net = networks.SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                             channel_base=channel_base, channel_max=channel_max, num_fp16_res=0)
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_ws = self.net.num_ws

    def forward(self, ws, noise_mode='const', **synthesis_kwargs):
        return self.net(ws, noise_mode=noise_mode, force_fp32=True, **synthesis_kwargs)

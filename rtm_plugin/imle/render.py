"""Matching features on the training device: the pool rendered by G, and the data, each projected batch by batch.

Both run under no_grad in batches of `batch` images (--pool-batch), on the device that trains, so the one copy
that crosses to the GPU is a batch of latents or uint8 images, and what comes back is the [n, proj_dim] features.
The decoder runs under --amp's autocast; the projection always in fp32, so eps is measured at full precision.
"""

import torch

from rtm_plugin.imle.precision import autocast
from rtm_plugin.sampling import to_signed

@torch.no_grad()
def render_features(G, z, projection, device, batch=256, amp='off', seeds=None):
    """Features [len(z), dim] (fp32, on `device`) of G's images for latents z, G in eval mode. seeds: one noise
    seed per latent for decoders with noise injection, so the pool does not depend on `batch`."""
    was_training = G.training
    G.eval()
    out = []
    try:
        for i, zz in enumerate(z.split(batch)):
            kw = {} if seeds is None else dict(noise_seeds=seeds[i * batch:(i + 1) * batch])
            with autocast(device, amp):
                images = G(zz.to(device, non_blocking=True), **kw)
            out.append(projection(images.float()))
    finally:
        G.train(was_training)
    return torch.cat(out) if out else torch.zeros([0, projection.dim], device=device)

@torch.no_grad()
def project_images(images_u8, projection, device, batch=256):
    """Features [N, dim] (on `device`) of uint8 images [N, 3, R, R]; reads `batch` images at a time, so a
    memory-mapped dataset is never copied whole."""
    out = [projection(to_signed(images_u8[i:i + batch].to(device, non_blocking=True)))
           for i in range(0, len(images_u8), batch)]
    return torch.cat(out) if out else torch.zeros([0, projection.dim], device=device)

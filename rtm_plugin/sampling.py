"""Seeded sampling, shared by the trainer, the metrics and the analysis tools.

Everything random is drawn from a generator seeded by (seed, purpose, counter), never from a global stream: a
resumed run draws exactly what the uninterrupted run draws, K processes draw what one draws, and rtm-eval,
rtm-analyze and the trainer's final metrics draw the same z for the same seed. The purposes' values are part of
every run's numbers (resume is bit-exact): never renumber them.
"""

import numpy as np
import torch

# Purposes of the seeded random streams.
ORDER, POOL, PERTURB, INIT, GRID, PROJECTION, EVAL = range(1, 8)
NOISE, POOL_NOISE, EVAL_NOISE = 8, 9, 10   # per-sample seeds of the decoder's spatial noise (batches, pools, metrics)

def seeded(seed, purpose, counter=0):
    """A torch.Generator for the stream (seed, purpose, counter)."""
    state = np.random.SeedSequence([int(seed), purpose, int(counter)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

def noise_seeds(seed, purpose, counter, n):
    """n per-sample noise seeds (see DecoderBase.make_noise) for the stream (seed, purpose, counter)."""
    return torch.randint(1 << 62, [n], generator=seeded(seed, purpose, counter))

@torch.no_grad()
def generate(G, z, batch=256, seeds=None):
    """Images (float, raw decoder output) for latents z, in eval mode, without tracking w_avg. seeds: one noise
    seed per latent (decoders with noise injection), else their noise comes from the global RNG."""
    was_training = G.training
    G.eval()
    device = next(G.parameters()).device
    kw = lambda i: {} if seeds is None else dict(noise_seeds=seeds[i * batch:(i + 1) * batch])
    out = torch.cat([G(zz.to(device), **kw(i)).cpu() for i, zz in enumerate(z.split(batch))]) if len(z) else torch.zeros(0)
    G.train(was_training)
    return out

def to_signed(images_u8):
    """uint8 [0, 255] -> float [-1, 1], as the official RS-IMLE preprocess."""
    return images_u8.float() / 127.5 - 1

def to_uint8(images):
    """Generator output in [-1, 1] (no tanh) -> uint8, clamped, as the trainer saves its samples."""
    return ((images.detach().float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)

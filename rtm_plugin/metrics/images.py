"""Checking image batches handed to the metrics, and running a detector over them in batches."""

import numpy as np
import torch

def as_uint8_images(images, name='images'):
    """numpy or torch [N, C, H, W] with C in {1, 3} and values 0..255 -> torch.uint8 on the CPU (no copy if possible).

    uint8 passes as is; other integer dtypes pass when every value lies in 0..255. Floats are refused, because
    their scale ([-1, 1] generator output or [0, 1]) is ambiguous: the message says how to convert.
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f'{name}: expected a numpy array or torch tensor, got {type(images).__name__}')
    if images.ndim != 4:
        raise ValueError(f'{name}: expected [N, C, H, W] images, got shape {list(images.shape)}')
    if images.shape[1] not in (1, 3):
        hint = ' (it looks like NHWC: use images.transpose(0, 3, 1, 2))' if images.shape[-1] in (1, 3) else ''
        raise ValueError(f'{name}: expected 1 or 3 channels in dim 1, got shape {list(images.shape)}{hint}')
    if len(images) == 0:
        raise ValueError(f'{name}: no images (shape {list(images.shape)})')
    if images.dtype == torch.uint8:
        return images.cpu()
    if images.is_floating_point() or images.is_complex() or images.dtype == torch.bool:
        lo, hi = (images.min().item(), images.max().item()) if not images.is_complex() else ('?', '?')
        raise TypeError(f'{name}: expected uint8 images in 0..255, got {images.dtype} with values in [{lo}, {hi}]; '
                        'convert generator output in [-1, 1] with (x * 127.5 + 128).clamp(0, 255).to(torch.uint8)')
    lo, hi = images.min().item(), images.max().item()
    if lo < 0 or hi > 255:
        raise ValueError(f'{name}: values must lie in 0..255, got {images.dtype} with values in [{lo}, {hi}]')
    return images.cpu().to(torch.uint8)

def check_pair(real, fake):
    """Validate real and fake batches together: both images, with the same channel count."""
    real, fake = as_uint8_images(real, 'real images'), as_uint8_images(fake, 'fake images')
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f'real images have {real.shape[1]} channel(s) but fake images have {fake.shape[1]}; '
                         'evaluate like with like')
    return real, fake

@torch.no_grad()
def run_batched(fn, images, batch_size, device):
    """Concatenate fn(batch on device) over batches of `images`, as float32 on the CPU."""
    if batch_size < 1:
        raise ValueError(f'batch_size must be positive, got {batch_size}')
    return torch.cat([fn(images[i:i + batch_size].to(device)).float().cpu()
                      for i in range(0, len(images), batch_size)])

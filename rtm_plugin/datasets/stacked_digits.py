"""Stacked Digits: the classic 1000-mode mode-collapse benchmark, rebuilt from scikit-learn's bundled digits.

Three 8x8 digits become the R, G and B channels of one image, so the label (r, g, b) names one of 1000 modes.
scikit-learn's 1797 digits are split once, by a fixed seed, into two disjoint halves: one half builds the images,
the other trains the digit classifier that counts modes (rtm_plugin.metrics), so the classifier never sees
the digit instances it is asked to recognise.
"""

import numpy as np
import torch
import torch.nn.functional as F

NUM_MODES = 1000
SPLIT_SEED = 20260501

def load_digits_uint8():
    """scikit-learn's digits as uint8 [1797, 8, 8] in 0..255, with their labels."""
    from sklearn.datasets import load_digits
    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    return images, d.target.astype(np.int64)

def digit_split():
    """Disjoint (stacking, classifier) index arrays into load_digits_uint8(), stratified by class."""
    _, labels = load_digits_uint8()
    rng = np.random.default_rng(SPLIT_SEED)
    stack, classify = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        stack.append(idx[: len(idx) // 2])
        classify.append(idx[len(idx) // 2:])
    return np.sort(np.concatenate(stack)), np.sort(np.concatenate(classify))

def upsample(images_u8, resolution):
    """[N, C, 8, 8] uint8 -> [N, C, R, R] uint8, bilinear."""
    x = torch.from_numpy(images_u8).float()
    if resolution != x.shape[-1]:
        x = F.interpolate(x, size=(resolution, resolution), mode='bilinear', align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).numpy()

def make_stacked_digits(num_images=1000, resolution=32, seed=0):
    """Images uint8 [N, 3, R, R] and mode labels int64 [N] = 100 r + 10 g + b.

    Modes are balanced: every mode appears floor(N/1000) or ceil(N/1000) times, in random order, and each
    channel draws a random instance of its digit from the stacking half of the split.
    """
    if not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f'num_images must be a positive integer, got {num_images!r}')
    if not isinstance(resolution, int) or not 8 <= resolution <= 256:
        raise ValueError(f'resolution must be an integer in [8, 256], got {resolution!r}')
    digits, digit_labels = load_digits_uint8()
    stack_idx, _ = digit_split()
    by_class = [stack_idx[digit_labels[stack_idx] == d] for d in range(10)]

    rng = np.random.default_rng(seed)
    modes = rng.permutation(np.arange(num_images) % NUM_MODES)
    channels = np.stack([modes // 100, modes // 10 % 10, modes % 10], axis=1)         # [N, 3] digits
    picks = np.vectorize(lambda d: rng.choice(by_class[d]))(channels)                 # [N, 3] instances
    return upsample(digits[picks], resolution), modes.astype(np.int64)

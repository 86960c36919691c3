"""The offline digit classifier behind the Stacked-Digits metrics: mode counts, KL, and a feature space for FID/PRDC.

A small MLP (64 -> 256 -> 64 -> 10) reads one 8x8 digit. It is trained in seconds, deterministically, on the
CLASSIFIER half of rtm_plugin.datasets.stacked_digits.digit_split(), the half the dataset never draws from, so its
accuracy on the stacking half is an honest held-out figure. An image [N, 3, H, W] is read channel by channel: each channel is
area-resized to 8x8 and classified, and the mode is 100 r + 10 g + b.

The weights are cached under rtm_plugin.files.cache_dir() (~/.cache/rtm_plugin, or $RTM_CACHE_DIR); the file
records the training recipe and a fingerprint of the split, and a stale or unreadable file is rebuilt.
"""

import hashlib
import json
import os
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from rtm_plugin.files import atomic_write, cache_dir as resolve_cache_dir
from rtm_plugin.datasets.stacked_digits import NUM_MODES, digit_split, load_digits_uint8, upsample
from rtm_plugin.metrics.images import as_uint8_images, run_batched
from rtm_plugin.metrics.modes import mode_stats  # noqa: F401  (the contract allows mode_stats here too)

# The training recipe. Any change here changes the cache key, so an old cache is rebuilt, never reused.
RECIPE = dict(
    version=1,
    seed=0,
    hidden=256,
    feature_dim=64,               # penultimate width per channel; features() concatenates the three channels
    steps=1500,
    batch_size=256,
    lr=3e-3,
    weight_decay=1e-4,
    label_smoothing=0.05,
    round_trips=(16, 32),         # digits upsampled as the dataset does, then read back at 8x8
    affine_copies=8,              # random small rotations/scalings/sub-pixel shifts, so imperfect samples still read
    max_rotation=0.15,            # radians
    max_scale=0.1,
    max_shift=0.125,              # in affine_grid units: half a pixel at 8x8
    gain=0.15,                    # per-image brightness in [1 - gain, 1 + gain]
    noise=0.05,                   # additive Gaussian noise, in 0..1 units
)
CACHE_NAME = 'digit_classifier.pt'

class DigitNet(nn.Module):
    """8x8 grayscale digit (float in 0..1) -> (penultimate features [N, feature_dim], logits [N, 10])."""

    def __init__(self, hidden, feature_dim):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, 10)

    def forward(self, x):
        features = self.body(x)
        return features, self.head(features)

def to_8x8(images_u8):
    """[N, C, H, W] uint8 -> [N, C, 8, 8] float in 0..1: area average when shrinking, bilinear when growing."""
    x = images_u8.float() / 255
    if x.shape[-2:] == (8, 8):
        return x
    if x.shape[-1] >= 8 and x.shape[-2] >= 8:
        return F.interpolate(x, size=(8, 8), mode='area')
    return F.interpolate(x, size=(8, 8), mode='bilinear', align_corners=False)

class DigitClassifier:
    """Reads Stacked-Digits images [N, 3, H, W] uint8, channel by channel.

    It is also a detector for evaluate_images(): features() is the feature space for FID/PRDC, probs() the
    1000-mode distribution for the Inception Score, and classify_modes() the mode counts.
    """

    name = 'digits'
    has_probs = True

    def __init__(self, net, held_out_accuracy, device='cpu'):
        self.device = torch.device(device)
        self.net = net.eval().requires_grad_(False).to(self.device)
        self.held_out_accuracy = held_out_accuracy
        self.num_features = 3 * net.head.in_features
        self.cache_id = 'digits-' + hashlib.md5(_cache_key().encode()).hexdigest()   # recipe + split

    def _read(self, images, batch_size):
        """Per channel, penultimate features and logits side by side: [N, 3, feature_dim + 10]."""
        images = as_uint8_images(images)
        if images.shape[1] != 3:
            raise ValueError(f'the digit classifier reads RGB Stacked-Digits images [N, 3, H, W], '
                             f'got {images.shape[1]} channel(s)')

        def read(batch):
            features, logits = self.net(to_8x8(batch).flatten(0, 1).unsqueeze(1))       # [B * 3, ...]
            return torch.cat([features, logits], 1).view(len(batch), 3, -1)
        return run_batched(read, images, batch_size, self.device)

    def classify_digits(self, images, batch_size=1024):
        """LongTensor [N, 3]: the digit read in the R, G and B channels."""
        return self._read(images, batch_size)[..., -10:].argmax(-1)

    def classify_modes(self, images, batch_size=1024):
        """LongTensor [N] of modes 100 r + 10 g + b in 0..999."""
        digits = self.classify_digits(images, batch_size)
        return digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]

    def features(self, images, batch_size=1024):
        """FloatTensor [N, 3 * 64]: the penultimate features of the R, G and B digits, concatenated.

        Concatenation (not pooling) keeps which digit sits in which channel, so modes (1, 2, 3) and (3, 2, 1) differ.
        """
        return self._read(images, batch_size)[..., :-10].flatten(1)

    def probs(self, images, batch_size=1024):
        """FloatTensor [N, 1000]: the probability of each mode, the product of the three channels' softmaxes."""
        p = self._read(images, batch_size)[..., -10:].double().softmax(-1)
        joint = p[:, 0, :, None, None] * p[:, 1, None, :, None] * p[:, 2, None, None, :]
        return joint.reshape(len(p), NUM_MODES).float()

def _split_fingerprint():
    digits, labels = load_digits_uint8()
    _, classify = digit_split()
    return hashlib.md5(digits[classify].tobytes() + labels[classify].tobytes()).hexdigest()

def _cache_key():
    return json.dumps({**RECIPE, 'split': _split_fingerprint()}, sort_keys=True)

def _round_trip(x, resolution):
    """Digits [N, 1, 8, 8] in 0..1 as the classifier sees them after the dataset upsampled them to `resolution`."""
    big = upsample((x * 255).round().to(torch.uint8).numpy(), resolution)
    return to_8x8(torch.from_numpy(big))

def _random_affine(x, recipe, generator):
    """Each digit [N, 1, 8, 8] slightly rotated, scaled and shifted, resampled through a 32x32 intermediate."""
    n = len(x)
    uniform = lambda *shape: 2 * torch.rand(*shape, generator=generator) - 1                      # in [-1, 1)
    angle, scale = recipe['max_rotation'] * uniform(n), 1 + recipe['max_scale'] * uniform(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = scale * angle.cos(), -scale * angle.sin()
    theta[:, 1, 0], theta[:, 1, 1] = scale * angle.sin(), scale * angle.cos()
    theta[:, :, 2] = recipe['max_shift'] * uniform(n, 2)
    big = F.interpolate(x, size=(32, 32), mode='bilinear', align_corners=False)
    big = F.grid_sample(big, F.affine_grid(theta, list(big.shape), align_corners=False), align_corners=False)
    return F.interpolate(big, size=(8, 8), mode='area')

def train_digit_net(train_images, train_labels, recipe=RECIPE):
    """Train DigitNet on uint8 digits [N, 8, 8]: CPU, one thread, seeded; global RNGs, thread count and grad mode
    untouched."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                      # the same reduction order, so the same weights, on every machine
    try:   # the caller may sit in no_grad or inference_mode (an evaluation loop); training needs autograd
        with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
            torch.manual_seed(recipe['seed'])
            generator = torch.Generator().manual_seed(recipe['seed'])
            x0 = torch.from_numpy(train_images).float().unsqueeze(1) / 255
            views = [x0] + [_round_trip(x0, r) for r in recipe['round_trips']]
            views += [_random_affine(x0, recipe, generator) for _ in range(recipe['affine_copies'])]
            x, y = torch.cat(views), torch.from_numpy(train_labels).repeat(len(views))

            net = DigitNet(recipe['hidden'], recipe['feature_dim'])
            opt = torch.optim.AdamW(net.parameters(), lr=recipe['lr'], weight_decay=recipe['weight_decay'])
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe['lr'], total_steps=recipe['steps'])
            for _ in range(recipe['steps']):
                idx = torch.randint(len(x), (recipe['batch_size'],), generator=generator)
                gain = 1 + recipe['gain'] * (2 * torch.rand(len(idx), 1, 1, 1, generator=generator) - 1)
                batch = x[idx] * gain + recipe['noise'] * torch.randn(x[idx].shape, generator=generator)
                loss = F.cross_entropy(net(batch)[1], y[idx], label_smoothing=recipe['label_smoothing'])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()

@torch.no_grad()
def digit_accuracy(net, images_u8, labels, resolution=8):
    """Fraction of uint8 digits [N, 8, 8] read correctly after the dataset's upsampling to `resolution`."""
    x = torch.from_numpy(images_u8).float().unsqueeze(1) / 255
    logits = net(_round_trip(x, resolution))[1]
    return (logits.argmax(1).numpy() == labels).mean().item()

def _build():
    digits, labels = load_digits_uint8()
    stack_idx, classify_idx = digit_split()
    net = train_digit_net(digits[classify_idx], labels[classify_idx])
    return net, digit_accuracy(net, digits[stack_idx], labels[stack_idx])

def _load_cached(path, key):
    """The cached (net, held-out accuracy), or None when the file is missing, stale or unreadable."""
    if not os.path.exists(path):
        return None
    try:
        blob = torch.load(path, map_location='cpu', weights_only=True)
        if blob.get('key') != key:
            raise ValueError('it was trained with another recipe or split')
        net = DigitNet(RECIPE['hidden'], RECIPE['feature_dim'])
        net.load_state_dict(blob['state_dict'])
        return net.eval(), float(blob['held_out_accuracy'])
    except Exception as e:  # an unreadable or foreign file is rebuilt, never trusted
        warnings.warn(f'rebuilding the digit classifier cache {path}: {type(e).__name__}: {e}')
        return None

_loaded = {}

def load_digit_classifier(cache_dir=None, device='cpu'):
    """The offline digit classifier: from the cache, or trained in seconds (CPU, fixed seed) and cached atomically.

    cache_dir: the cache root; default $RTM_CACHE_DIR, else ~/.cache/rtm_plugin. The file is <root>/digit_classifier.pt.
    `.held_out_accuracy` is its digit accuracy on the stacking half of the split, digits it never saw in training.
    """
    path = resolve_cache_dir(root=cache_dir) / CACHE_NAME
    key = _cache_key()
    memo = (str(path), key, str(torch.device(device)))
    if memo not in _loaded:
        cached = _load_cached(path, key)
        if cached is None:
            net, accuracy = _build()
            blob = dict(key=key, state_dict=net.state_dict(), held_out_accuracy=accuracy)
            atomic_write(path, lambda f: torch.save(blob, f))
            cached = net, accuracy
        _loaded[memo] = DigitClassifier(*cached, device=device)
    return _loaded[memo]

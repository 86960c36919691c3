"""Metrics by stylegan2-ada's names and protocols, for rtm-eval and the trainer (modelled on its metric_main.py).

A name reads `<family><N>k[<K>][_full][_digits]`; N (thousands of generated images) and K (neighbourhood size)
are integers:

| name | results | detector | reals used |
|---|---|---|---|
| fid<N>k_full | fid<N>k_full | Inception | all |
| kid<N>k_full | kid<N>k_full (100 subsets of 1000) | Inception | at most 1,000,000 |
| pr<N>k<K>_full | pr<N>k<K>_full_precision, _recall | VGG16 | at most 200,000 |
| dc<N>k<K>_full | dc<N>k<K>_full_density, _coverage | VGG16 | at most N k (Naeem et al. use equal counts) |
| is<N>k | is<N>k_mean, is<N>k_std (10 splits) | Inception | none |
| modes<N>k | modes<N>k_modes, modes<N>k_kl | digits | none |

Without `_full` (upstream's legacy fid50k, pr50k3, ...) at most N k reals are used. `_digits` computes the same
metric in the offline digit classifier's feature space (Stacked Digits), e.g. fid10k_full_digits, pr10k3_full_digits,
is10k_digits; modes<N>k is digits-only by nature. The detector is part of the name, so a jsonl file never mixes
feature spaces.
"""

import dataclasses
import json
import os
import re
import time
import warnings

import numpy as np
import torch

from rtm_plugin.metrics.feature_stats import (ReferenceStats, load_stats, save_stats, stats_cache_path,
                                              stream_features)
from rtm_plugin.metrics.image_files import ImageStream, open_images
from rtm_plugin.sampling import EVAL, EVAL_NOISE, generate, noise_seeds, seeded, to_uint8   # the trainer's sampling

class MetricWarning(UserWarning):
    """A metric was computed on too few samples to mean much, or against statistics of unknown provenance."""

_NAME = re.compile(r'(?P<family>fid|kid|pr|dc|is|modes)(?P<num>[1-9][0-9]*)k(?P<k>[1-9][0-9]*)?'
                   r'(?P<full>_full)?(?P<digits>_digits)?')
FAMILIES_WITH_K = ('pr', 'dc')
NO_REALS = ('is', 'modes')
FEATURE_DETECTOR = {'fid': 'inception', 'kid': 'inception', 'is': 'inception', 'pr': 'vgg16', 'dc': 'vgg16', 'modes': 'digits'}
FULL_MAX_REAL = {'fid': None, 'kid': 1_000_000, 'pr': 200_000}     # stylegan2-ada's *_full; dc: as many as fakes
IS_SPLITS = 10
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000
KNN_MIN_SAMPLES = 1000      # below this, k-NN metrics (and KID's subsets) are dominated by noise

CANONICAL = ['fid50k_full', 'kid50k_full', 'pr50k3_full', 'is50k', 'dc50k5_full',
             'fid10k_full_digits', 'kid10k_full_digits', 'pr10k3_full_digits', 'dc10k5_full_digits', 'is10k_digits',
             'modes10k']

@dataclasses.dataclass(frozen=True)
class MetricSpec:
    name: str
    family: str
    num_gen: int
    k: int
    full: bool
    detector: str           # 'inception', 'vgg16' or 'digits'

    @property
    def needs_real(self):
        return self.family not in NO_REALS

    @property
    def needs_all_features(self):
        return self.family in ('kid', 'pr', 'dc')

    @property
    def max_real(self):
        """How many reals the protocol uses at most (None: all; 0: none)."""
        if not self.needs_real:
            return 0
        if not self.full or self.family == 'dc':
            return self.num_gen
        return FULL_MAX_REAL[self.family]

def _invalid(name, why):
    return ValueError(f'unknown metric {name!r}: {why}; names read fid50k_full, kid50k_full, pr50k3_full, is50k, '
                      'dc50k5_full, modes10k (any count N in <N>k), with _digits for the digit classifier')

def parse_metric(name):
    """The MetricSpec of a metric name, or ValueError saying what is wrong with it."""
    m = _NAME.fullmatch(str(name))
    if m is None:
        raise _invalid(name, 'it does not read <family><N>k[<K>][_full][_digits]')
    family, k = m['family'], m['k']
    if (family in FAMILIES_WITH_K) != (k is not None):
        raise _invalid(name, f'{family} takes a neighbourhood size after the k (pr50k3)' if family in FAMILIES_WITH_K
                       else f'{family} takes no neighbourhood size')
    if family in NO_REALS and m['full']:
        raise _invalid(name, f'{family} uses no reals, so it has no _full variant')
    if family == 'modes' and m['digits']:
        raise _invalid(name, 'modes is always measured by the digit classifier; drop _digits')
    detector = 'digits' if m['digits'] else FEATURE_DETECTOR[family]
    return MetricSpec(str(name), family, int(m['num']) * 1000, int(k or 0), bool(m['full']), detector)

def is_valid_metric(name):
    try:
        parse_metric(name)
        return True
    except ValueError:
        return False

def list_valid_metrics():
    """The canonical names; any count N (fid5k, pr1k3_full, fid30k_full, ...) is valid too."""
    return list(CANONICAL)

def with_detector(name, detector):
    """rtm-eval's --detector digits: the _digits variant of `name` (unchanged for other detectors)."""
    spec = parse_metric(name)
    if detector != 'digits' or spec.detector == 'digits':
        return spec.name
    return spec.name + '_digits'

# ----------------------------------------------------------------------------------------------------------------
# Detectors

def resolve_detector(spec, detector=None, device='cpu', cache_dir=None):
    """The loaded detector for `spec`: its own (downloaded or cached like upstream's), or `detector`: a path or URL
    of that same detector's TorchScript file, or an already loaded detector."""
    from rtm_plugin.metrics.detectors import detector_kind, load_detector
    if detector is None or detector == spec.detector:
        return load_detector(spec.detector, device=device, cache_dir=cache_dir)
    if not isinstance(detector, (str, bytes, os.PathLike)):
        kind = getattr(detector, 'kind', getattr(detector, 'name', None))
        if kind not in (spec.detector, 'generic', None):
            raise ValueError(f'{spec.name} is defined on {spec.detector} features, but the detector given is {kind}')
        return detector
    detector = os.fspath(detector)
    if detector in ('digits', 'inception', 'vgg16') or spec.detector == 'digits':
        hint = f' (use {spec.name}_digits)' if detector == 'digits' else ''
        raise ValueError(f'{spec.name} is defined on {spec.detector} features, not {detector}{hint}')
    kind = detector_kind(detector)
    if kind not in (spec.detector, 'generic'):
        raise ValueError(f'{spec.name} needs the {spec.detector} detector, but {detector} is named as {kind}')
    return load_detector(detector, device=device, kind=spec.detector, cache_dir=cache_dir)

# ----------------------------------------------------------------------------------------------------------------
# Generated images

class GeneratedImages(ImageStream):
    """`count` samples of G (eval mode, w_avg untouched), z drawn in blocks of Z_BLOCK from seeded generators, so
    the samples depend on the seed alone, not on the batch size."""

    Z_BLOCK = 1024

    def __init__(self, G, count, seed=0):
        self.G, self.count, self.seed, self.name = G, count, seed, 'generated images'
        channels, resolution = getattr(G, 'img_channels', None), getattr(G, 'img_resolution', None)
        self.shape = (channels, resolution, resolution) if channels and resolution else None

    def batches(self, batch_size):
        # A decoder with noise injection takes one noise seed per sample, so its samples too depend on the seed alone.
        noisy = hasattr(getattr(self.G, 'synthesis', None), 'make_noise')
        for start in range(0, self.count, self.Z_BLOCK):
            n, block = min(self.Z_BLOCK, self.count - start), start // self.Z_BLOCK
            z = torch.randn([n, self.G.z_dim], generator=seeded(self.seed, EVAL, block))
            seeds = noise_seeds(self.seed, EVAL_NOISE, block, n) if noisy else None
            for i, zz in enumerate(z.split(batch_size)):
                part = None if seeds is None else seeds[i * batch_size:(i + 1) * batch_size]
                yield to_uint8(generate(self.G, zz, batch_size, seeds=part)).numpy()

    def fingerprint(self):
        return None                 # a generator's samples are never cached

def sample_images(G, num, seed=0, batch_size=256):
    """uint8 numpy [num, C, H, W]: the very samples calc_metric(G=G, seed=seed) draws, generated once, e.g. to
    compute several metrics of one snapshot from `fakes=` without sampling G for each."""
    return np.concatenate(list(GeneratedImages(G, num, seed).batches(batch_size)))

# ----------------------------------------------------------------------------------------------------------------
# Reals

def _check_shapes(real_shape, fake_shape, resize):
    if real_shape is None or fake_shape is None or tuple(real_shape) == tuple(fake_shape):
        return
    if resize and real_shape[0] == fake_shape[0]:
        return
    fmt = lambda s: 'x'.join(map(str, s))
    raise ValueError(f'real images are {fmt(real_shape)} (CxHxW) but generated images are {fmt(fake_shape)}: '
                     'evaluate at one resolution, or resize the reals to the fakes\' resolution with --resize '
                     '(resize=True)')

def reference_stats(real, spec, detector, fake_shape, *, resize=False, batch_size=256, cache_dir=None,
                    progress=False):
    """ReferenceStats of the reals for `spec`: from a stats .npz, from the cache, or streamed and cached."""
    if isinstance(real, (str, os.PathLike)) and os.fspath(real).endswith('.npz'):
        ref = load_stats(real)
        _check_npz(ref, spec, fake_shape, resize)
        return ref
    resolution = fake_shape[1] if resize and fake_shape and fake_shape[1] == fake_shape[2] else None
    if resize and resolution is None:
        raise ValueError('--resize needs square generated images')
    images = open_images(real, max_images=spec.max_real, resolution=resolution, name='real images')
    _check_shapes(images.shape, fake_shape, resize=False)
    detector_id = getattr(detector, 'cache_id', None)
    paths = []
    if detector_id and cache_dir is not False:
        paths = [stats_cache_path(images, detector_id, cache_dir, capture_all=True)]
        if not spec.needs_all_features:
            paths.insert(0, stats_cache_path(images, detector_id, cache_dir, capture_all=False))
        for path in paths:
            if path.is_file():
                try:
                    return load_stats(path)
                except ValueError as e:
                    warnings.warn(f'recomputing the unreadable cached statistics {path}: {e}', MetricWarning)
    stats = stream_features(images, lambda b: detector.features(b, batch_size=batch_size),
                            capture_all=spec.needs_all_features, batch_size=batch_size, progress=progress,
                            desc=f'{spec.name}: reals ({detector_name(detector)})')
    mu, sigma = (None, None) if stats.capture_all else stats.moments()
    ref = ReferenceStats(mu, sigma, stats.num, stats.features, detector_name(detector),
                         images.shape[1] if images.shape[1] == images.shape[2] else None, source=images.name)
    if paths:
        save_stats(paths[-1] if spec.needs_all_features else paths[0], ref, images.fingerprint())
    return ref

def detector_name(detector):
    return getattr(detector, 'kind', None) or getattr(detector, 'name', None) or type(detector).__name__

def _check_npz(ref, spec, fake_shape, resize):
    if spec.needs_all_features and ref.features is None:
        raise ValueError(f'{ref.source} holds only mu and sigma, which serve FID; {spec.name} needs the real images '
                         '(or a statistics file with their features)')
    if ref.detector is not None and ref.detector != spec.detector:
        raise ValueError(f'{ref.source} was computed with the {ref.detector} detector, but {spec.name} uses '
                         f'{spec.detector}')
    if ref.detector is None:
        warnings.warn(f'{ref.source} does not record its detector: make sure it was computed with stylegan2-ada\'s '
                      f'{spec.detector} (pytorch-fid\'s Inception port gives slightly different FIDs)', MetricWarning)
    if ref.resolution and fake_shape and ref.resolution != fake_shape[-1]:
        if resize:
            raise ValueError(f'{ref.source} holds statistics of {ref.resolution} px reals, which cannot be resized '
                             f'to the generated {fake_shape[-1]} px; compute them from the images with --resize')
        _check_shapes((fake_shape[0], ref.resolution, ref.resolution), fake_shape, resize=False)

# ----------------------------------------------------------------------------------------------------------------
# The metric

def _fake_images(spec, G, fakes, seed):
    if (G is None) == (fakes is None):
        raise ValueError('give exactly one of G (a generator to sample) and fakes (generated images)')
    if G is not None:
        return GeneratedImages(G, spec.num_gen, seed)
    images = open_images(fakes, max_images=spec.num_gen, name='generated images')
    if len(images) < spec.num_gen:
        have = len(images)
        hint = f', e.g. {spec.name.replace(f"{spec.num_gen // 1000}k", f"{have // 1000}k", 1)}' if have >= 1000 else ''
        raise ValueError(f'{spec.name} needs {spec.num_gen} generated images but {images.name} holds {have}; '
                         f'name a count it holds{hint}')
    return images

def _warn_small(spec, n_real, n_fake, dim):
    if spec.family == 'fid' and min(n_real, n_fake) < dim:
        warnings.warn(f'{spec.name}: {min(n_real, n_fake)} samples ({n_real} real, {n_fake} generated) are fewer than '
                      f'the {dim} feature dimensions, so a covariance is singular and FID is biased upward; compare '
                      'FIDs only at equal counts', MetricWarning)
    if spec.family in ('pr', 'dc', 'kid') and min(n_real, n_fake) < KNN_MIN_SAMPLES:
        warnings.warn(f'{spec.name}: {n_real} real and {n_fake} generated samples; below {KNN_MIN_SAMPLES} each this '
                      'metric is mostly noise', MetricWarning)
    if spec.family == 'is' and n_fake // IS_SPLITS < KNN_MIN_SAMPLES:
        warnings.warn(f'{spec.name}: {n_fake // IS_SPLITS} samples per split (of {IS_SPLITS}); below '
                      f'{KNN_MIN_SAMPLES} the Inception Score is biased low', MetricWarning)

def _compute(spec, detector, fake_images, ref, batch_size, progress, device):
    from rtm_plugin.metrics.fid import fid_from_stats, inception_score
    from rtm_plugin.metrics.manifold import density_coverage, precision_recall
    desc = f'{spec.name}: generated ({detector_name(detector)})'
    name = spec.name
    if spec.family == 'is':
        probs = stream_features(fake_images, lambda b: detector.probs(b, batch_size=batch_size), capture_all=True,
                                batch_size=batch_size, progress=progress, desc=desc).features
        _warn_small(spec, 0, len(probs), 0)
        mean, std = inception_score(probs.astype(np.float64), splits=IS_SPLITS, return_std=True)
        return {f'{name}_mean': mean, f'{name}_std': std}
    if spec.family == 'modes':
        from rtm_plugin.metrics.modes import mode_stats
        labels = torch.cat([detector.classify_modes(torch.from_numpy(b), batch_size=batch_size)
                            for b in fake_images.batches(batch_size)])
        stats = mode_stats(labels)
        return {f'{name}_modes': stats['modes'], f'{name}_kl': stats['kl']}
    fake = stream_features(fake_images, lambda b: detector.features(b, batch_size=batch_size),
                           capture_all=spec.needs_all_features, batch_size=batch_size, progress=progress, desc=desc)
    if ref.dim != fake.dim:
        raise ValueError(f'the reference statistics ({ref.source}) have {ref.dim} dimensions but the '
                         f'{detector_name(detector)} features have {fake.dim}')
    _warn_small(spec, ref.num if ref.num is not None else fake.num, fake.num, fake.dim)
    if spec.family == 'fid':
        return {name: fid_from_stats(*ref.moments(), *fake.moments())}
    if spec.family == 'kid':
        from rtm_plugin.metrics.kid import kernel_inception_distance
        return {name: kernel_inception_distance(ref.features, fake.features, KID_SUBSETS, KID_SUBSET_SIZE,
                                                device=device)}
    # the k-NN passes run where the detector runs (a GPU for 200k x 50k distances), in float64
    real_f, fake_f = torch.from_numpy(ref.features).to(device), torch.from_numpy(fake.features).to(device)
    if spec.family == 'pr':
        r = precision_recall(real_f, fake_f, k=spec.k)
        return {f'{name}_precision': r['precision'], f'{name}_recall': r['recall']}
    r = density_coverage(real_f, fake_f, k=spec.k)
    return {f'{name}_density': r['density'], f'{name}_coverage': r['coverage']}

def format_time(seconds):
    """dnnlib.util.format_time's style: '12s', '3m 05s', '2h 01m 00s', '1d 02h 03m'."""
    s = int(np.rint(seconds))
    if s < 60:
        return f'{s}s'
    if s < 3600:
        return f'{s // 60}m {s % 60:02d}s'
    if s < 86400:
        return f'{s // 3600}h {s // 60 % 60:02d}m {s % 60:02d}s'
    return f'{s // 86400}d {s // 3600 % 24:02d}h {s // 60 % 60:02d}m'

def calc_metric(metric, *, G=None, fakes=None, real=None, device='cpu', seed=0, batch_size=256, cache_dir=None,
                progress=False, detector=None, resize=False):
    """One metric, as stylegan2-ada's calc_metric: dict(results={...}, metric, total_time, total_time_str, num_gpus).

    G: a generator to sample spec.num_gen images from (eval mode, z from `seed`); or fakes: uint8 [N, C, H, W]
    (numpy/torch) or a folder, zip or .npy holding at least that many. real: uint8 images, a folder, zip or .npy,
    or a stats .npz (mu, sigma; FID only unless it holds `features`); not needed by is/modes. detector: None for
    the metric's own, else a path/URL of that detector's TorchScript file, or a loaded detector. cache_dir: the
    cache root (detector downloads, digit classifier, reference statistics under gan-metrics/); False caches no
    statistics. resize: resize reals to the generated resolution instead of refusing a mismatch.
    Small sample counts raise MetricWarning; bad input raises ValueError (or FileNotFoundError) with one line.
    """
    spec = parse_metric(metric)
    if batch_size < 1:
        raise ValueError(f'batch_size must be positive, got {batch_size}')
    start = time.time()
    fake_images = _fake_images(spec, G, fakes, seed)        # cheap checks first, then a detector download
    det = resolve_detector(spec, detector, device=device, cache_dir=None if cache_dir is False else cache_dir)
    ref = None
    if spec.needs_real:
        if real is None:
            raise ValueError(f'{spec.name} compares against real images: pass real')
        ref = reference_stats(real, spec, det, fake_images.shape, resize=resize, batch_size=batch_size,
                              cache_dir=cache_dir, progress=progress)
    results = _compute(spec, det, fake_images, ref, batch_size, progress, device)
    total = time.time() - start
    return dict(results=results, metric=spec.name, total_time=total, total_time_str=format_time(total), num_gpus=1)

# ----------------------------------------------------------------------------------------------------------------
# Reporting

def _finite_or_none(x):
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x

def report_metric(result_dict, run_dir=None, snapshot_pkl=None, echo=True):
    """Append result_dict as one line to <run_dir>/metric-<name>.jsonl, upstream's format plus snapshot_pkl
    (relative to run_dir) and timestamp; returns the line. The whole line goes out in one os.write on an O_APPEND
    descriptor, so a kill never leaves half a line; non-finite values are written as null, keeping it JSON."""
    metric = result_dict['metric']
    parse_metric(metric)
    if run_dir is not None and snapshot_pkl is not None:
        snapshot_pkl = os.path.relpath(snapshot_pkl, run_dir)
    line = json.dumps(_finite_or_none(dict(result_dict, snapshot_pkl=snapshot_pkl, timestamp=time.time())),
                      allow_nan=False)
    if echo:
        print(line, flush=True)
    if run_dir is not None and os.path.isdir(run_dir):
        append_line(os.path.join(run_dir, f'metric-{metric}.jsonl'), line)
    return line

def append_line(path, line):
    """Append `line` + newline in one os.write on an O_APPEND descriptor; a short or failed write (a full disk) is
    cut back off, so the file never ends in half a line."""
    data = (line + '\n').encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f'{path}: wrote {written} of {len(data)} bytes (disk full?)')
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)

"""dc50k5_full for NVlabs' stylegan2-ada-pytorch and stylegan3: density and coverage (Naeem et al. 2020, k=5) on
the VGG16 features of the tree's own pr50k3_full.

Registered by the patched metrics/metric_main.py next to pr50k3_full. The features come from upstream's own
plumbing (metric_utils, the same detector and capture_all path as pr50k3); the k-NN math is
rtm_plugin.metrics.manifold.density_coverage (prdc's definition: strict '<', radius = k-th other real).
"""

import importlib.util

from metrics import metric_utils

from rtm_plugin.metrics.manifold import density_coverage

# The VGG16 each tree's precision_recall.py uses: TorchScript (stylegan2-ada-pytorch), a pickle (stylegan3).
VGG16_URLS = {
    'stylegan2-ada-pytorch': 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt',
    'stylegan3': 'https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/vgg16.pkl',
}

def stylegan_tree():
    """Which NVlabs tree is importing this: stylegan3 has training/networks_stylegan3.py."""
    return 'stylegan3' if importlib.util.find_spec('training.networks_stylegan3') else 'stylegan2-ada-pytorch'

def compute_dc(opts, max_real, num_gen, nhood_size, detector_url=None, data_loader_kwargs=None):
    """-> (density, coverage) on rank 0, (nan, nan) elsewhere; every rank must call it (features are gathered).
    detector_url: the tree's VGG16 when None."""
    detector_url = detector_url or VGG16_URLS[stylegan_tree()]
    detector_kwargs = dict(return_features=True)
    real = metric_utils.compute_feature_stats_for_dataset(
        opts=opts, detector_url=detector_url, detector_kwargs=detector_kwargs, data_loader_kwargs=data_loader_kwargs,
        rel_lo=0, rel_hi=0, capture_all=True, max_items=max_real).get_all_torch()
    fake = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector_url=detector_url, detector_kwargs=detector_kwargs,
        rel_lo=0, rel_hi=1, capture_all=True, max_items=num_gen).get_all_torch()
    if opts.rank != 0:
        return float('nan'), float('nan')
    result = density_coverage(real.to(opts.device), fake.to(opts.device), k=nhood_size)
    return result['density'], result['coverage']

def dc50k5_full(opts):
    """Against the dataset without x-flips: 50k reals at most and 50k fakes (Naeem et al. use equal counts)."""
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    density, coverage = compute_dc(opts, max_real=50000, num_gen=50000, nhood_size=5)
    return dict(dc50k5_full_density=density, dc50k5_full_coverage=coverage)

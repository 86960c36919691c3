"""Driver for test_metrics_sg2ada.py, run in a subprocess with the stylegan2-ada-pytorch checkout on sys.path.

    python metrics_sg2ada_driver.py WORK

WORK holds real/ (PNGs), fakes.npy (uint8 [N, 3, H, W]) and a dnnlib cache ($DNNLIB_CACHE_DIR) in which stand-in
TorchScript files sit under the real Inception and VGG16 URLs. Upstream's own metric code (compute_fid,
compute_kid, compute_pr, compute_is with its dataset loader and generator loop) and rtm_plugin's calc_metric
both run on them; the results are printed as one JSON line.
"""

import json
import os
import sys

import numpy as np
import torch

UPSTREAM = os.environ['RTM_SG2ADA_DIR']
sys.path.insert(0, UPSTREAM)

import dnnlib                                                           # noqa: E402  pylint: disable=import-error
from metrics import (frechet_inception_distance, inception_score,     # noqa: E402  pylint: disable=import-error
                     kernel_inception_distance, metric_utils, precision_recall)

from rtm_plugin.metrics.metric_main import calc_metric                 # noqa: E402

class ReplayG(torch.nn.Module):
    """A 'generator' that returns the fixed images, in order, as upstream's loop would decode them back to uint8."""

    def __init__(self, images_u8):
        super().__init__()
        self.z_dim, self.c_dim, self.images, self.next = 8, 0, torch.from_numpy(images_u8), 0

    def forward(self, z, c, **kwargs):
        n = len(z)
        out = self.images[self.next:self.next + n].float()
        self.next += n
        out = torch.cat([out, out[:0].new_zeros([n - len(out), *out.shape[1:]])]) if len(out) < n else out
        return (out - 127.5) / 127.5           # upstream: (img * 127.5 + 128).clamp(0, 255).to(uint8) -> the same byte

def main(work):
    fakes = np.load(os.path.join(work, 'fakes.npy'))
    real_dir = os.path.join(work, 'real')
    n = len(fakes)
    torch.Tensor.pin_memory = lambda self, *a, **k: self      # upstream pins labels for CUDA; this is a CPU run
    opts = metric_utils.MetricOptions(
        G=ReplayG(fakes), dataset_kwargs=dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset',
                                                          path=real_dir, use_labels=False, max_size=None, xflip=False),
        num_gpus=1, rank=0, device=torch.device('cpu'), cache=False)
    np.random.seed(0)
    upstream = dict(
        fid=frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=n),
        kid=kernel_inception_distance.compute_kid(opts, max_real=1000000, num_gen=n, num_subsets=3,
                                                  max_subset_size=1000),
        pr=precision_recall.compute_pr(opts, max_real=200000, num_gen=n, nhood_size=3, row_batch_size=10000,
                                       col_batch_size=10000),
        is_=inception_score.compute_is(opts, num_gen=n, num_splits=10))
    k = n // 1000
    ours = {}
    for name in (f'fid{k}k_full', f'kid{k}k_full', f'pr{k}k3_full', f'is{k}k'):
        ours.update(calc_metric(name, fakes=fakes, real=real_dir, cache_dir=os.path.join(work, 'cache'))['results'])
    print(json.dumps(dict(upstream=upstream, ours=ours)))

if __name__ == '__main__':
    main(sys.argv[1])

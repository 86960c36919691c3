"""rtm_plugin's fid/kid/pr/is against stylegan2-ada-pytorch's own metric code (RTM_SG2ADA_DIR), on the same reals
(a folder read by upstream's ImageFolderDataset), the same generated images and the same detector
files, found by both sides under the real Inception/VGG16 URLs in a dnnlib cache (stand-ins: no weights offline).

Upstream runs in a subprocess, so its top-level packages (dnnlib, metrics, training) stay out of pytest's process."""

import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import checkouts
from rtm_plugin.datasets.stacked_digits import make_stacked_digits
from rtm_plugin.metrics.detectors import DETECTOR_URLS

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name('metrics_sg2ada_driver.py')
UPSTREAM, pytestmark = checkouts.upstream_checkout('RTM_SG2ADA_DIR')

class StandIn(torch.nn.Module):
    """Upstream's detector signature: uint8 [N, 3, H, W] -> 64 features, or a softmax over 10 classes."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Linear(48, 64)
        self.logits = torch.nn.Linear(64, 10)
        with torch.no_grad():
            self.logits.weight.mul_(30)                 # confident classes, so the Inception Score is well above 1

    def forward(self, img: torch.Tensor, return_features: bool = False, no_output_bias: bool = False):
        f = torch.relu(self.features(torch.nn.functional.adaptive_avg_pool2d(img.float() / 255, 4).flatten(1)))
        if return_features:
            return f
        return torch.softmax(self.logits(f) - self.logits.bias if no_output_bias else self.logits(f), 1)

def test_metrics_equal_upstream_code(tmp_path):
    dnnlib_downloads = tmp_path / 'dnnlib' / 'downloads'
    dnnlib_downloads.mkdir(parents=True)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        for kind in ('inception', 'vgg16'):
            url = DETECTOR_URLS[kind]
            name = hashlib.md5(url.encode()).hexdigest() + '_' + url.rsplit('/', 1)[1]
            torch.jit.script(StandIn().requires_grad_(False)).save(str(dnnlib_downloads / name))  # as NVIDIA ships them
    real, _ = make_stacked_digits(1000, resolution=16, seed=5)
    fakes, _ = make_stacked_digits(1000, resolution=16, seed=6)
    fakes[:300] = fakes[:300] // 2                                      # not the reals' distribution
    (tmp_path / 'real' / '00000').mkdir(parents=True)      # a folder: upstream's forked loader workers would share
    for i, img in enumerate(real):                          # one zip handle (a known upstream hazard, not ours)
        Image.fromarray(img.transpose(1, 2, 0)).save(tmp_path / 'real' / '00000' / f'img{i:08d}.png')
    np.save(tmp_path / 'fakes.npy', fakes)
    env = dict(os.environ, PYTHONPATH=str(REPO), RTM_SG2ADA_DIR=UPSTREAM, DNNLIB_CACHE_DIR=str(tmp_path / 'dnnlib'),
               RTM_CACHE_DIR=str(tmp_path / 'rtm-cache'))
    result = subprocess.run([sys.executable, str(DRIVER), str(tmp_path)], env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    up, ours = out['upstream'], out['ours']
    assert ours['fid1k_full'] == pytest.approx(up['fid'], rel=1e-5) and up['fid'] > 0.01
    # KID: every subset holds all 1000 images of each set, so only upstream's float32 sums differ
    assert ours['kid1k_full'] == pytest.approx(up['kid'], rel=1e-3, abs=1e-6)
    # P/R: upstream rounds features to float16; the count of boundary cases may differ by a few
    assert ours['pr1k3_full_precision'] == pytest.approx(up['pr'][0], abs=0.01)
    assert ours['pr1k3_full_recall'] == pytest.approx(up['pr'][1], abs=0.01)
    assert ours['is1k_mean'] == pytest.approx(up['is_'][0], rel=1e-5) and up['is_'][0] > 1.1
    assert ours['is1k_std'] == pytest.approx(up['is_'][1], rel=1e-3)           # upstream sums in float32

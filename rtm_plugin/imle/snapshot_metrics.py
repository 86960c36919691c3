"""--metrics during training: the one place where the trainer meets the metric layer.

It uses rtm_plugin.metrics.metric_main (calc_metric / report_metric, upstream's API and metric names) when that
module exists. Until then a thin adapter over rtm_plugin.metrics.evaluate.evaluate_images stands in, with the
same signatures, result dicts and metric-<name>.jsonl lines as upstream's metric_main.
"""

import os
import re
import time

import torch

from rtm_plugin.imle.runlog import append_json

try:
    from rtm_plugin.metrics.metric_main import calc_metric, report_metric   # noqa: F401
    ADAPTER = False
except ImportError:
    ADAPTER = True

# metric_main's names: <family><N>k[<K>][_full][_digits]; N thousand generated images, the detector by family
# (Inception for fid/is, VGG16 for pr/dc) or the digit classifier with _digits (modes: always digits).
METRIC_RE = re.compile(r'(?P<family>fid|is|pr|dc|modes)(?P<n>\d+)k(?P<k>\d+)?(?P<full>_full)?(?P<digits>_digits)?$')
FAMILY_DETECTOR = {'fid': 'inception', 'is': 'inception', 'pr': 'vgg16', 'dc': 'vgg16', 'modes': 'digits'}
FAMILY_KEYS = {'fid': {'fid': ''}, 'is': {'is': '_mean'}, 'pr': {'precision': '_precision', 'recall': '_recall'},
               'dc': {'density': '_density', 'coverage': '_coverage'}, 'modes': {'modes': '_modes', 'kl': '_kl'}}

def parse_metric(name):
    """(detector, generated samples, {evaluate_images key: result key}) of an adapted metric name, or None."""
    m = METRIC_RE.match(name)
    if m is None or (m['family'] == 'modes' and m['digits']):
        return None
    detector = 'digits' if m['digits'] else FAMILY_DETECTOR[m['family']]
    return detector, int(m['n']) * 1000, {k: name + suffix for k, suffix in FAMILY_KEYS[m['family']].items()}

def _format_time(seconds):
    s = int(round(seconds))
    return f'{s}s' if s < 60 else f'{s // 60}m {s % 60:02d}s' if s < 3600 else f'{s // 3600}h {s // 60 % 60:02d}m'

if ADAPTER:
    def calc_metric(metric, *, G=None, fakes=None, real, device='cpu', seed=0, batch_size=256, cache_dir=None,
                    progress=False, detector=None):
        from rtm_plugin.imle.features import to_uint8
        from rtm_plugin.imle.train import EVAL, generate, seeded
        from rtm_plugin.metrics.evaluate import evaluate_images
        default_detector, num, keys = parse_metric(metric)
        t0 = time.time()
        if fakes is None:
            z = torch.randn([num, G.z_dim], generator=seeded(seed, EVAL))
            fakes = to_uint8(generate(G, z, batch_size))
        found = evaluate_images(torch.as_tensor(real), fakes, detector=detector or default_detector, device=device,
                                batch_size=batch_size)
        results = {name: float(found[k]) for k, name in keys.items() if k in found}
        total = time.time() - t0
        return dict(results=results, metric=metric, total_time=total, total_time_str=_format_time(total),
                    num_gpus=1)

    def report_metric(result_dict, run_dir=None, snapshot_pkl=None):
        if run_dir is not None and snapshot_pkl is not None:
            snapshot_pkl = os.path.relpath(snapshot_pkl, run_dir)
        record = dict(result_dict, snapshot_pkl=snapshot_pkl, timestamp=time.time())
        if run_dir is not None and os.path.isdir(run_dir):
            append_json(os.path.join(run_dir, f'metric-{result_dict["metric"]}.jsonl'), record)
        return record

def is_valid_metric(name):
    if ADAPTER:
        return parse_metric(name) is not None
    from rtm_plugin.metrics import metric_main
    return metric_main.is_valid_metric(name)

EXAMPLES = 'fid50k_full, pr50k3_full, is50k, dc50k5_full, modes10k, fid10k_full_digits'


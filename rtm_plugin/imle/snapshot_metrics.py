"""--metrics during training: the one place where the trainer meets the metric layer.

It uses rtm_plugin.metrics.metric_main (calc_metric / report_metric, upstream's API and metric names) when that
module exists. Until then a thin adapter over rtm_plugin.metrics.evaluate.evaluate_images stands in, with the
same signatures, result dicts and metric-<name>.jsonl lines as upstream's metric_main.
"""

import os
import time

import torch

from rtm_plugin.imle.runlog import append_json

try:
    from rtm_plugin.metrics.metric_main import calc_metric, report_metric   # noqa: F401
    ADAPTER = False
except ImportError:
    ADAPTER = True

# name -> (detector, generated samples, {evaluate_images key: result key})
ADAPTED_METRICS = {
    'fid50k_full': ('inception', 50000, {'fid': 'fid50k_full'}),
    'is50k': ('inception', 50000, {'is': 'is50k_mean'}),
    'pr50k3_full': ('vgg16', 50000, {'precision': 'pr50k3_full_precision', 'recall': 'pr50k3_full_recall'}),
    'dc50k5_full': ('vgg16', 50000, {'density': 'dc50k5_full_density', 'coverage': 'dc50k5_full_coverage'}),
    'digits10k': ('digits', 10000, {k: f'digits10k_{k}' for k in ('modes', 'kl', 'fid', 'precision', 'recall',
                                                                   'density', 'coverage')}),
}

def _format_time(seconds):
    s = int(round(seconds))
    return f'{s}s' if s < 60 else f'{s // 60}m {s % 60:02d}s' if s < 3600 else f'{s // 3600}h {s // 60 % 60:02d}m'

if ADAPTER:
    def calc_metric(metric, *, G=None, fakes=None, real, device='cpu', seed=0, batch_size=256, cache_dir=None,
                    progress=False, detector=None):
        from rtm_plugin.imle.features import to_uint8
        from rtm_plugin.imle.train import EVAL, generate, seeded
        from rtm_plugin.metrics.evaluate import evaluate_images
        default_detector, num, keys = ADAPTED_METRICS[metric]
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

def known_metrics():
    """The names --metrics accepts."""
    if ADAPTER:
        return sorted(ADAPTED_METRICS)
    from rtm_plugin.metrics import metric_main
    return sorted(getattr(metric_main, 'list_valid_metrics', lambda: ADAPTED_METRICS)())

"""Each paper table's evaluation protocol as a list of metric names (StyleGAN2-ADA's naming, parsed generically by
rtm_plugin.metrics: fid<N>k_full = FID of N thousand generated images against the full training set's statistics,
pr<N>k3_full = improved precision/recall with k = 3 on N thousand of each). All are computed on G_ema with
Inception-v3 features (upstream's inception-2015-12-05.pt).

IS (upstream's is<N>k, 10 splits) is in no protocol here: per our notes of the paper, Tables 1-2 and the few-shot
tables report FID and precision/recall only. Add it with the metric layer's own options when an anchor needs it.
"""

import re

EVAL_PROTOCOLS = {
    'cifar10': ['fid50k_full', 'pr50k3_full'],      # Table 1: Inception FID and P/R on 50k samples
    'celebahq': ['fid30k_full', 'pr30k3_full'],     # Table 2: the same on 30k samples
    'fewshot': ['fid5k_full', 'pr1k3_full'],        # few-shot tables: FID on 5,000 samples, P/R on 1,000
}

def protocol_metrics(name):
    """The metric names of a protocol; None -> []."""
    if name is None:
        return []
    if name not in EVAL_PROTOCOLS:
        raise ValueError(f'eval protocol must be one of {sorted(EVAL_PROTOCOLS)}, got {name!r}')
    return list(EVAL_PROTOCOLS[name])

def num_samples(metric):
    """Generated images a metric name asks for: 'fid5k_full' -> 5000, 'pr1k3_full' -> 1000."""
    m = re.match(r'[a-z]+?(\d+)k', metric)
    if not m:
        raise ValueError(f'cannot read a sample count from metric name {metric!r}')
    return int(m.group(1)) * 1000

def fid_samples(name):
    """The FID sample count of a protocol."""
    return max(num_samples(m) for m in protocol_metrics(name) if m.startswith('fid'))

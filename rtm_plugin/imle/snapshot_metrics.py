"""--metrics during training: the one place where the trainer meets the metric layer, upstream's metric_main API
(calc_metric / report_metric, metric names such as fid50k_full, pr50k3_full, modes10k, fid10k_full_digits)."""

from rtm_plugin.metrics.metric_main import calc_metric, is_valid_metric, report_metric  # noqa: F401

EXAMPLES = 'fid50k_full, pr50k3_full, is50k, dc50k5_full, modes10k, fid10k_full_digits'

"""Evaluation metrics shared by the RS-IMLE trainer, the StyleGAN2-ADA patch and the analysis tools.

metric_main.py gives the metrics by stylegan2-ada's names and protocols (calc_metric('fid50k_full', ...),
report_metric), streaming images (image_files.py) through a detector and caching the reals' statistics
(feature_stats.py). evaluate_images / evaluate_features (evaluate.py) are the lower-level entry points;
detectors.py loads feature detectors, digits.py is the offline Stacked-Digits classifier, fid.py holds FID and IS,
kid.py KID, modes.py mode counts and KL, and manifold.py precision/recall and density/coverage. The names below are
importable from rtm_plugin.metrics.
"""

from rtm_plugin.metrics.detectors import load_detector
from rtm_plugin.metrics.digits import load_digit_classifier
from rtm_plugin.metrics.evaluate import evaluate_features, evaluate_images
from rtm_plugin.metrics.fid import fid_from_features, inception_score
from rtm_plugin.metrics.manifold import density_coverage, precision_recall
from rtm_plugin.metrics.metric_main import calc_metric, is_valid_metric, list_valid_metrics, report_metric
from rtm_plugin.metrics.modes import mode_stats

__all__ = ['evaluate_images', 'evaluate_features', 'load_detector', 'load_digit_classifier', 'fid_from_features',
           'inception_score', 'precision_recall', 'density_coverage', 'mode_stats', 'calc_metric', 'report_metric',
           'is_valid_metric', 'list_valid_metrics']

"""Evaluation metrics shared by the RS-IMLE trainer, the StyleGAN2-ADA patch and the analysis tools.

evaluate_images / evaluate_features (evaluate.py) are the entry points; detectors.py loads feature detectors,
digits.py is the offline Stacked-Digits classifier, fid.py holds FID and IS, modes.py mode counts and KL, and
manifold.py precision/recall and density/coverage. The names below are importable from rtm_plugin.metrics.
"""

from rtm_plugin.metrics.detectors import load_detector
from rtm_plugin.metrics.digits import load_digit_classifier
from rtm_plugin.metrics.evaluate import evaluate_features, evaluate_images
from rtm_plugin.metrics.fid import fid_from_features, inception_score
from rtm_plugin.metrics.manifold import density_coverage, precision_recall
from rtm_plugin.metrics.modes import mode_stats

__all__ = ['evaluate_images', 'evaluate_features', 'load_detector', 'load_digit_classifier', 'fid_from_features',
           'inception_score', 'precision_recall', 'density_coverage', 'mode_stats']

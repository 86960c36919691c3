"""Evaluation metrics shared by the RS-IMLE trainer, the StyleGAN2-ADA patch and the analysis tools.

evaluate_images / evaluate_features (evaluate.py) are the entry points; detectors.py loads feature detectors,
digits.py is the offline Stacked-Digits classifier, fid.py holds FID and IS, modes.py mode counts and KL, and
manifold.py precision/recall and density/coverage.
"""

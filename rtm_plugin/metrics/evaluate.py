"""One call from image batches (or detector features) to every metric: FID, IS, P/R, D/C and, on digits, modes/KL."""

import torch

from rtm_plugin.metrics.detectors import load_detector
from rtm_plugin.metrics.fid import fid_from_features, inception_score
from rtm_plugin.metrics.images import check_pair
from rtm_plugin.metrics.manifold import density_coverage, precision_recall
from rtm_plugin.metrics.modes import mode_stats

PR_K = 3   # improved precision/recall, stylegan2-ada's pr50k3
DC_K = 5   # density/coverage, Naeem et al.'s recommendation and StudioGAN's setting

def evaluate_features(real_feats, fake_feats):
    """{'fid', 'precision', 'recall' (k=3), 'density', 'coverage' (k=5)} for features [N, D] and [M, D]."""
    real, fake = torch.as_tensor(real_feats), torch.as_tensor(fake_feats)
    for name, x in (('real', real), ('fake', fake)):
        if x.ndim != 2:
            raise ValueError(f'{name} features must be [N, D], got shape {list(x.shape)}')
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f'real features have {real.shape[1]} dims but fake features have {fake.shape[1]}')
    if len(real) <= DC_K or len(fake) <= PR_K:
        raise ValueError(f'need at least {DC_K + 1} real and {PR_K + 1} fake samples for the k-NN metrics, '
                         f'got {len(real)} real and {len(fake)} fake')
    return {'fid': fid_from_features(real, fake),
            **precision_recall(real, fake, k=PR_K),
            **density_coverage(real, fake, k=DC_K)}

def evaluate_images(real_uint8_nchw, fake_uint8_nchw, detector='digits', device='cpu', batch_size=256):
    """Every metric for two image batches, uint8 [N, C, H, W] (numpy or torch), C in {1, 3}.

    detector: a name ('digits', 'inception', 'vgg16'), a path or URL of a TorchScript detector, or a loaded
    detector (anything with features(images, batch_size)). Returns evaluate_features()'s keys, plus 'is' (one
    split, StudioGAN's convention) when the detector has class probabilities, plus 'modes' and 'kl' of the
    FAKES when it is the digit classifier.
    """
    real, fake = check_pair(real_uint8_nchw, fake_uint8_nchw)
    if isinstance(detector, (str, bytes)) or hasattr(detector, '__fspath__'):
        detector = load_detector(detector, device=device)
    results = evaluate_features(detector.features(real, batch_size=batch_size),
                                detector.features(fake, batch_size=batch_size))
    if getattr(detector, 'has_probs', False):
        results['is'] = inception_score(detector.probs(fake, batch_size=batch_size), splits=1)
    if hasattr(detector, 'classify_modes'):
        results.update(mode_stats(detector.classify_modes(fake, batch_size=batch_size)))
    return results

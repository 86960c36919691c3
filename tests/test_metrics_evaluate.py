"""evaluate_images / evaluate_features: the whole metric set on real Stacked-Digits images."""

import numpy as np
import pytest
import torch

from rtm_plugin.datasets.stacked_digits import make_stacked_digits
from rtm_plugin.metrics.digits import load_digit_classifier
from rtm_plugin.metrics.evaluate import evaluate_features, evaluate_images
from rtm_plugin.metrics.fid import fid_from_features, inception_score
from rtm_plugin.metrics.manifold import density_coverage, precision_recall
from rtm_plugin.metrics.modes import mode_stats

@pytest.fixture(scope='module')
def classifier(digits_cache):
    return load_digit_classifier(cache_dir=digits_cache)

@pytest.fixture(scope='module')
def real():
    return make_stacked_digits(1000, resolution=16, seed=21)[0]

def test_evaluate_features_equals_the_individual_metrics():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(200, 6)), rng.normal(loc=0.2, size=(150, 6))
    out = evaluate_features(real, fake)
    assert out == {'fid': fid_from_features(real, fake), **precision_recall(real, fake, k=3),
                   **density_coverage(real, fake, k=5)}

def test_digits_metrics_on_real_and_on_collapsed_images(classifier, real):
    fresh = make_stacked_digits(1000, resolution=16, seed=22)[0]
    good = evaluate_images(real, fresh, detector=classifier)
    assert set(good) == {'fid', 'precision', 'recall', 'density', 'coverage', 'is', 'modes', 'kl'}
    collapsed = fresh.copy()
    collapsed[:, 1] = collapsed[0, 1]                    # the green digit never changes: 100 modes at most
    bad = evaluate_images(real, collapsed, detector=classifier)
    assert good['modes'] >= 960 and good['kl'] < 0.1 and bad['modes'] <= 100
    assert bad['fid'] > 10 * good['fid'] and bad['recall'] < good['recall'] - 0.5
    assert bad['coverage'] < good['coverage'] - 0.3 and bad['is'] < good['is'] / 5
    assert good['precision'] > 0.9 and good['recall'] > 0.9 and good['coverage'] > 0.9

def test_digits_values_equal_direct_calls(classifier, real):
    fake = make_stacked_digits(300, resolution=16, seed=23)[0]
    out = evaluate_images(torch.from_numpy(real), fake, detector=classifier, batch_size=128)
    assert out == {**evaluate_features(classifier.features(real), classifier.features(fake)),
                   'is': inception_score(classifier.probs(fake)),
                   **mode_stats(classifier.classify_modes(fake))}

def test_digits_by_name_uses_the_cache(classifier, real, monkeypatch, digits_cache):
    monkeypatch.setenv('RTM_CACHE_DIR', str(digits_cache))
    fake = real[:500]
    assert evaluate_images(real, fake, detector='digits') == evaluate_images(real, fake, detector=classifier)

def test_bad_input_is_named(classifier, real):
    with pytest.raises(TypeError, match='fake images: expected uint8'):
        evaluate_images(real, real.astype(np.float32) / 255, detector=classifier)
    with pytest.raises(ValueError, match='real images have 3 channel'):
        evaluate_images(real, real[:, :1], detector=classifier)
    with pytest.raises(ValueError, match='real images: expected \\[N, C, H, W\\]'):
        evaluate_images(real[0], real, detector=classifier)
    with pytest.raises(TypeError, match='numpy array or torch tensor'):
        evaluate_images(real.tolist(), real, detector=classifier)
    with pytest.raises(ValueError, match='at least 6 real and 4 fake'):
        evaluate_images(real, real[:3], detector=classifier)
    with pytest.raises(ValueError, match='real features have 5 dims but fake features have 6'):
        evaluate_features(np.zeros((10, 5)), np.zeros((10, 6)))

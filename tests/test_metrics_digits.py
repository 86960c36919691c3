"""The offline digit classifier: it reads real Stacked-Digits images, trains deterministically, caches safely."""

import numpy as np
import pytest
import torch

from rtm_plugin.datasets.stacked_digits import digit_split, load_digits_uint8, make_stacked_digits
from rtm_plugin.metrics import digits
from rtm_plugin.metrics.digits import RECIPE, DigitNet, load_digit_classifier, train_digit_net
from rtm_plugin.metrics.modes import mode_stats

@pytest.fixture(scope='module')
def classifier(digits_cache):
    return load_digit_classifier(cache_dir=digits_cache)

def test_held_out_digit_accuracy(classifier):
    assert classifier.held_out_accuracy >= 0.98          # on the stacking half, which training never saw

@pytest.mark.parametrize('resolution', [16, 32])
def test_reads_the_modes_of_real_stacked_digits(classifier, resolution):
    images, modes = make_stacked_digits(3000, resolution=resolution, seed=11)
    predicted = classifier.classify_modes(images)
    assert predicted.dtype == torch.long and predicted.shape == (3000,)
    assert int(predicted.min()) >= 0 and int(predicted.max()) <= 999
    assert (predicted.numpy() == modes).mean() >= 0.95
    assert torch.equal(predicted, classifier.classify_modes(torch.from_numpy(images), batch_size=256))

def test_balanced_real_data_covers_every_mode_with_kl_near_zero(classifier):
    images, _ = make_stacked_digits(5000, resolution=32, seed=12)
    stats = mode_stats(classifier.classify_modes(images))
    assert stats['modes'] == 1000 and stats['kl'] < 0.02

def test_collapsed_data_is_seen_as_collapsed(classifier):
    images, modes = make_stacked_digits(3000, resolution=16, seed=13)
    images[:, 0] = images[0, 0]                          # every red digit is the same instance: 100 modes at most
    stats = mode_stats(classifier.classify_modes(images))
    assert stats['modes'] <= 100 and stats['kl'] > np.log(1000 / 100) - 0.05

def test_features_and_probs(classifier):
    images, _ = make_stacked_digits(64, resolution=32, seed=14)
    feats = classifier.features(images)
    assert feats.shape == (64, classifier.num_features) == (64, 3 * RECIPE['feature_dim'])
    assert feats.dtype == torch.float32
    swapped = classifier.features(images[:, [2, 1, 0]])  # the channels are concatenated, in order
    torch.testing.assert_close(swapped.view(64, 3, -1), feats.view(64, 3, -1)[:, [2, 1, 0]])
    probs = classifier.probs(images)
    assert probs.shape == (64, 1000)
    torch.testing.assert_close(probs.sum(1), torch.ones(64))
    assert torch.equal(probs.argmax(1), classifier.classify_modes(images))

def test_rejects_images_that_are_not_rgb(classifier):
    with pytest.raises(ValueError, match='RGB Stacked-Digits'):
        classifier.classify_modes(np.zeros((2, 1, 16, 16), np.uint8))

def test_training_is_deterministic_and_leaves_global_state_alone():
    images, labels = load_digits_uint8()
    _, classify = digit_split()
    short = {**RECIPE, 'steps': 20, 'affine_copies': 1}
    threads, rng_state = torch.get_num_threads(), torch.random.get_rng_state()
    a = train_digit_net(images[classify], labels[classify], short).state_dict()
    b = train_digit_net(images[classify], labels[classify], short).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), rng_state)
    for mode in (torch.no_grad, torch.inference_mode):   # as called from inside an evaluation loop
        with mode():
            c = train_digit_net(images[classify], labels[classify], short).state_dict()
        assert all(torch.equal(a[k], c[k]) for k in a)

def test_cache_is_reused_and_a_corrupt_or_stale_file_is_rebuilt(tmp_path, monkeypatch, digits_cache):
    built = []

    def cheap_build():                                   # stands in for the 10 s training: this test is the cache
        built.append(1)
        return DigitNet(RECIPE['hidden'], RECIPE['feature_dim']).eval(), 0.5
    monkeypatch.setattr(digits, '_build', cheap_build)
    monkeypatch.setattr(digits, '_loaded', {})

    path = tmp_path / digits.CACHE_NAME
    path.write_bytes(b'not a torch file')               # corrupt
    with pytest.warns(UserWarning, match='rebuilding the digit classifier cache'):
        load_digit_classifier(cache_dir=tmp_path)
    assert built == [1] and torch.load(path, weights_only=True)['held_out_accuracy'] == 0.5
    assert [p.name for p in tmp_path.iterdir()] == [digits.CACHE_NAME]      # no temporary file left behind

    monkeypatch.setattr(digits, '_loaded', {})
    assert load_digit_classifier(cache_dir=tmp_path).held_out_accuracy == 0.5 and built == [1]   # reused

    monkeypatch.setattr(digits, 'RECIPE', {**RECIPE, 'steps': RECIPE['steps'] + 1})             # stale
    monkeypatch.setattr(digits, '_loaded', {})
    with pytest.warns(UserWarning, match='another recipe'):
        load_digit_classifier(cache_dir=tmp_path)
    assert built == [1, 1]

def test_cache_dir_follows_rtm_cache_dir(monkeypatch, digits_cache):
    monkeypatch.setenv('RTM_CACHE_DIR', str(digits_cache))
    monkeypatch.setattr(digits, '_build', lambda: pytest.fail('the session cache should have been used'))
    monkeypatch.setattr(digits, '_loaded', {})
    assert load_digit_classifier().held_out_accuracy >= 0.98

"""The offline Stacked-Digits dataset."""

import numpy as np
import pytest

from rtm_plugin.datasets.stacked_digits import NUM_MODES, digit_split, load_digits_uint8, make_stacked_digits

def test_split_is_disjoint_and_stratified():
    stack, classify = digit_split()
    assert len(np.intersect1d(stack, classify)) == 0 and len(stack) + len(classify) == 1797
    _, labels = load_digits_uint8()
    assert set(np.bincount(labels[stack]).tolist()) <= set(range(85, 95))

def test_images_carry_their_modes():
    images, modes = make_stacked_digits(2000, resolution=8, seed=3)
    assert images.shape == (2000, 3, 8, 8) and images.dtype == np.uint8
    assert np.bincount(modes, minlength=NUM_MODES).tolist() == [2] * NUM_MODES     # balanced modes
    digits, labels = load_digits_uint8()
    stack, _ = digit_split()
    lookup = {digits[i].tobytes(): labels[i] for i in stack}
    for img, mode in zip(images[:50], modes[:50]):                                 # each channel is its digit
        assert [lookup[ch.tobytes()] for ch in img] == [mode // 100, mode // 10 % 10, mode % 10]

def test_upsampled_and_deterministic():
    a, ma = make_stacked_digits(64, resolution=32, seed=1)
    b, mb = make_stacked_digits(64, resolution=32, seed=1)
    assert a.shape == (64, 3, 32, 32) and np.array_equal(a, b) and np.array_equal(ma, mb)
    assert not np.array_equal(a, make_stacked_digits(64, resolution=32, seed=2)[0])

@pytest.mark.parametrize('kwargs', [dict(num_images=0), dict(resolution=4), dict(resolution=16.0)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_stacked_digits(**{'num_images': 10, **kwargs})

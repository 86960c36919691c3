"""metric_main: stylegan2-ada's metric names and protocols, reference statistics, generation from G, reporting."""

import json
import os
import shutil
import socket
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from rtm_plugin.datasets.stacked_digits import make_stacked_digits
from rtm_plugin.metrics import detectors, metric_main
from rtm_plugin.metrics.detectors import DetectorDownloadError, url_cache_path
from rtm_plugin.metrics.digits import load_digit_classifier
from rtm_plugin.metrics.fid import inception_score
from rtm_plugin.metrics.kid import kernel_inception_distance
from rtm_plugin.metrics.manifold import density_coverage, precision_recall
from rtm_plugin.metrics.metric_main import (MetricWarning, calc_metric, is_valid_metric, list_valid_metrics,
                                            parse_metric, report_metric)
from rtm_plugin.metrics.modes import mode_stats

@pytest.fixture(scope='module')
def digit_sets():
    real, _ = make_stacked_digits(1500, resolution=16, seed=41)
    fake, _ = make_stacked_digits(1000, resolution=16, seed=42)
    return real, fake

@pytest.fixture
def cache(tmp_path, digits_cache):
    """A fresh cache root (no statistics) holding the session's trained digit classifier."""
    shutil.copy(digits_cache / 'digit_classifier.pt', tmp_path / 'digit_classifier.pt')
    return tmp_path

def pytorch_fid_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance, written out independently from its published formula."""
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning)     # pytorch-fid's disp=False
        covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)

def gaussian_fit(features):
    x = np.asarray(features, dtype=np.float64)
    return x.mean(0), np.cov(x, rowvar=False, bias=True)       # stylegan2-ada normalises by N

def closed_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

def test_names_follow_upstream_and_take_any_count():
    assert list_valid_metrics()[:5] == ['fid50k_full', 'kid50k_full', 'pr50k3_full', 'is50k', 'dc50k5_full']
    assert all(is_valid_metric(m) for m in list_valid_metrics())
    for name in ('fid5k', 'pr1k3', 'fid30k_full', 'fid10k_full', 'kid50k', 'pr50k3', 'is10k_digits', 'dc1k5_full',
                 'fid10k_full_digits', 'modes26k'):
        assert is_valid_metric(name), name
    for name in ('fid', 'fid50k_ful', 'fid0k', 'fid05k', 'fid1.5k', 'pr50k', 'fid50k3', 'is50k_full', 'modes10k_digits',
                 'FID50K_FULL', 'ppl2_wend', ' fid50k'):
        assert not is_valid_metric(name), name
    with pytest.raises(ValueError, match=r"unknown metric 'pr50k'.*neighbourhood size"):
        parse_metric('pr50k')
    spec = {n: parse_metric(n) for n in ('fid50k_full', 'kid50k_full', 'pr50k3_full', 'is50k', 'dc50k5_full',
                                          'fid5k', 'pr1k3', 'modes10k', 'fid10k_full_digits')}
    assert [spec[n].detector for n in spec] == ['inception', 'inception', 'vgg16', 'inception', 'vgg16',
                                                 'inception', 'vgg16', 'digits', 'digits']
    assert [spec[n].max_real for n in spec] == [None, 1_000_000, 200_000, 0, 50_000, 5000, 1000, 0, None]
    assert spec['pr1k3'].num_gen == 1000 and spec['pr1k3'].k == 3 and spec['fid5k'].num_gen == 5000

def test_fid_matches_an_independent_computation(digit_sets, cache):
    real, fake = digit_sets
    clf = load_digit_classifier(cache_dir=cache)
    mu_r, sigma_r = gaussian_fit(clf.features(torch.from_numpy(real)))
    mu_f, sigma_f = gaussian_fit(clf.features(torch.from_numpy(fake)))
    expected = pytorch_fid_distance(mu_r, sigma_r, mu_f, sigma_f)
    result = calc_metric('fid1k_full_digits', fakes=fake, real=real, cache_dir=cache, batch_size=97)
    assert set(result) == {'results', 'metric', 'total_time', 'total_time_str', 'num_gpus'}
    assert result['metric'] == 'fid1k_full_digits' and result['num_gpus'] == 1
    assert result['results']['fid1k_full_digits'] == pytest.approx(expected, rel=1e-6)
    assert expected > 0
    # the cached statistics are in pytorch-fid's / clean-fid's layout and equal the one-shot fit
    (path,) = (cache / 'gan-metrics').glob('digits-1500-*.npz')
    with np.load(path) as z:
        np.testing.assert_allclose(z['mu'], mu_r, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(z['sigma'], sigma_r, rtol=1e-5, atol=1e-7)
        assert str(z['detector']) == 'digits' and int(z['num_images']) == 1500 and int(z['resolution']) == 16

def test_each_protocol_equals_the_direct_functions(digit_sets, cache, monkeypatch):
    real, fake = digit_sets
    monkeypatch.setattr(metric_main, 'KID_SUBSETS', 3)
    clf = load_digit_classifier(cache_dir=cache)
    fr, ff = clf.features(torch.from_numpy(real)), clf.features(torch.from_numpy(fake))
    got = {}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', MetricWarning)
        for name in ('pr1k3_full_digits', 'dc1k5_full_digits', 'kid1k_full_digits', 'is1k_digits', 'modes1k'):
            got.update(calc_metric(name, fakes=fake, real=real, cache_dir=cache)['results'])
    pr = precision_recall(fr, ff, k=3)
    dc = density_coverage(fr[:1000], ff, k=5)               # dc uses as many reals as fakes
    mean, std = inception_score(clf.probs(torch.from_numpy(fake)).double().numpy(), splits=10, return_std=True)
    modes = mode_stats(clf.classify_modes(torch.from_numpy(fake)))
    assert got == pytest.approx({
        'pr1k3_full_digits_precision': pr['precision'], 'pr1k3_full_digits_recall': pr['recall'],
        'dc1k5_full_digits_density': dc['density'], 'dc1k5_full_digits_coverage': dc['coverage'],
        'kid1k_full_digits': kernel_inception_distance(fr.numpy(), ff.numpy(), num_subsets=3),
        'is1k_digits_mean': mean, 'is1k_digits_std': std,
        'modes1k_modes': modes['modes'], 'modes1k_kl': modes['kl']}, rel=1e-5, abs=1e-9)

def test_kid_is_the_unbiased_cubic_kernel_mmd():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 5)), rng.normal(0.5, 1, size=(40, 5))
    kid = kernel_inception_distance(x, y, num_subsets=1, max_subset_size=40, seed=3)
    pick = np.random.default_rng(3)
    fy = y[pick.choice(40, 40, replace=False)]
    rx = x[pick.choice(60, 40, replace=False)]
    k = lambda a, b: (a @ b / 5 + 1) ** 3
    m = 40
    xx = sum(k(fy[i], fy[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(rx[i], rx[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(fy[i], rx[j]) for i in range(m) for j in range(m)) / m ** 2
    assert kid == pytest.approx(xx + yy - 2 * xy)
    big = rng.normal(size=(400, 5))
    same = kernel_inception_distance(big, big[::-1], num_subsets=10, max_subset_size=200)
    shifted = kernel_inception_distance(big, big + 0.5, num_subsets=10, max_subset_size=200)
    assert abs(same) < 0.05 * shifted

def test_reference_statistics_are_cached_by_fingerprint_detector_and_count(digit_sets, cache, monkeypatch):
    real, fake = digit_sets
    clf = load_digit_classifier(cache_dir=cache)
    calls = []
    original = type(clf).features
    monkeypatch.setattr(type(clf), 'features', lambda self, x, batch_size=256: calls.append(len(x)) or
                        original(self, x, batch_size=batch_size))
    first = calc_metric('fid1k_full_digits', fakes=fake, real=real, cache_dir=cache)
    assert sum(calls) == 1500 + 1000
    calls.clear()
    again = calc_metric('fid1k_full_digits', fakes=fake, real=real, cache_dir=cache)
    assert sum(calls) == 1000 and again['results'] == first['results']           # reals came from the cache
    calls.clear()
    changed = real.copy()
    changed[0] = 255 - changed[0]
    calc_metric('fid1k_full_digits', fakes=fake, real=changed, cache_dir=cache)    # another dataset: recomputed
    assert sum(calls) == 1500 + 1000
    calls.clear()
    calc_metric('fid1k_digits', fakes=fake, real=real, cache_dir=cache)            # 1000 reals: another count
    assert sum(calls) == 1000 + 1000
    assert len(list((cache / 'gan-metrics').glob('digits-*.npz'))) == 3

def test_stats_npz_as_real(digit_sets, cache, tmp_path):
    real, fake = digit_sets
    expected = calc_metric('fid1k_full_digits', fakes=fake, real=real, cache_dir=cache)['results']
    (cached,) = (cache / 'gan-metrics').glob('digits-1500-*.npz')
    assert calc_metric('fid1k_full_digits', fakes=fake, real=cached, cache_dir=cache)['results'] == expected
    with np.load(cached) as z:                           # pytorch-fid's layout: mu and sigma only
        np.savez(tmp_path / 'pytorch_fid.npz', mu=z['mu'], sigma=z['sigma'])
    with pytest.warns(MetricWarning, match='does not record its detector'):
        got = calc_metric('fid1k_full_digits', fakes=fake, real=tmp_path / 'pytorch_fid.npz', cache_dir=cache)
    assert got['results'] == pytest.approx(expected)
    with pytest.raises(ValueError, match=r'pytorch_fid\.npz holds only mu and sigma.*pr1k3_full_digits needs'):
        calc_metric('pr1k3_full_digits', fakes=fake, real=tmp_path / 'pytorch_fid.npz', cache_dir=cache)
    np.savez(tmp_path / 'other.npz', mu=np.zeros(2048), sigma=np.eye(2048), detector='inception')
    with pytest.raises(ValueError, match='computed with the inception detector, but fid1k_full_digits uses digits'):
        calc_metric('fid1k_full_digits', fakes=fake, real=tmp_path / 'other.npz', cache_dir=cache)
    np.savez(tmp_path / 'junk.npz', a=np.zeros(3))
    with pytest.raises(ValueError, match=r'junk\.npz: not usable reference statistics \(it holds a, not mu and sigma'):
        calc_metric('fid1k_full_digits', fakes=fake, real=tmp_path / 'junk.npz', cache_dir=cache)

def test_resolutions_must_match_unless_resize(cache):
    real32, _ = make_stacked_digits(300, resolution=32, seed=1)
    real16, _ = make_stacked_digits(300, resolution=16, seed=1)
    fake, _ = make_stacked_digits(1000, resolution=16, seed=2)
    with pytest.raises(ValueError, match=r'real images are 3x32x32 \(CxHxW\) but generated images are 3x16x16.*--resize'):
        calc_metric('fid1k_full_digits', fakes=fake, real=real32, cache_dir=cache)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', MetricWarning)
        resized = calc_metric('fid1k_full_digits', fakes=fake, real=real32, cache_dir=cache, resize=True)['results']
        native = calc_metric('fid1k_full_digits', fakes=fake, real=real16, cache_dir=cache)['results']
    assert resized['fid1k_full_digits'] < 5 * native['fid1k_full_digits'] + 1     # resized digits still read

def test_too_few_generated_images_is_named(digit_sets, cache):
    real, fake = digit_sets
    with pytest.raises(ValueError, match=r'fid2k_full_digits needs 2000 generated images but generated images holds '
                                         r'1000; name a count it holds, e.g. fid1k_full_digits'):
        calc_metric('fid2k_full_digits', fakes=fake, real=real, cache_dir=cache)
    with pytest.raises(ValueError, match='exactly one of G'):
        calc_metric('fid1k_full_digits', real=real, cache_dir=cache)
    with pytest.raises(ValueError, match='compares against real images'):
        calc_metric('fid1k_full_digits', fakes=fake, cache_dir=cache)

def test_small_sets_warn(digit_sets, cache):
    real, fake = digit_sets
    with pytest.warns(MetricWarning) as caught:
        calc_metric('fid1k_full_digits', fakes=fake, real=real[:10], cache_dir=cache)
        calc_metric('pr1k3_full_digits', fakes=fake, real=real[:10], cache_dir=cache)
    messages = [str(w.message) for w in caught]
    assert any('10 samples (10 real, 1000 generated) are fewer than the 192 feature dimensions' in m for m in messages)
    assert any('pr1k3_full_digits: 10 real and 1000 generated samples; below 1000' in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter('error', MetricWarning)             # enough samples: no warning
        calc_metric('pr1k3_full_digits', fakes=fake, real=real, cache_dir=cache)

def test_missing_detector_weights_say_where_to_put_the_file(digit_sets, tmp_path, monkeypatch):
    real, fake = digit_sets
    url = f'http://127.0.0.1:{closed_port()}/metrics/inception-2015-12-05.pt'
    monkeypatch.setitem(detectors.DETECTOR_URLS, 'inception', url)
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'no-dnnlib'))
    with pytest.raises(DetectorDownloadError) as info:
        calc_metric('fid1k_full', fakes=fake, real=real, cache_dir=tmp_path)
    message = str(info.value)
    assert '\n' not in message and str(url_cache_path(url, tmp_path)) in message and 'local path' in message
    with pytest.raises(ValueError, match='fid1k_full is defined on inception features, not digits'):
        calc_metric('fid1k_full', fakes=fake, real=real, cache_dir=tmp_path, detector='digits')

class TinyGenerator(torch.nn.Module):
    """The generator interface calc_metric samples (z_dim, img_resolution, img_channels, w_avg), small and seeded."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.z_dim, self.img_resolution, self.img_channels = 16, 16, 3
        self.net = torch.nn.Linear(16, 3 * 16 * 16)
        self.register_buffer('w_avg', torch.zeros(16))

    def forward(self, z):
        if self.training:
            self.w_avg.copy_(self.w_avg + z.mean(0))      # what a mapper in training mode would do
        return torch.tanh(self.net(z)).view(-1, 3, 16, 16)

def test_samples_from_G_depend_on_the_seed_not_the_batch(cache):
    G = TinyGenerator().train()
    real, _ = make_stacked_digits(300, resolution=16, seed=1)
    kw = dict(G=G, real=real, cache_dir=cache)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', MetricWarning)
        a = calc_metric('fid1k_full_digits', batch_size=100, **kw)['results']
        b = calc_metric('fid1k_full_digits', batch_size=333, **kw)['results']
        c = calc_metric('fid1k_full_digits', seed=1, **kw)['results']
    assert a == pytest.approx(b, rel=1e-9) and a != pytest.approx(c, rel=1e-3)
    assert G.training and torch.equal(G.w_avg, torch.zeros(16))
    fakes = metric_main.sample_images(G, 1000, seed=1, batch_size=250)                  # the same samples, kept
    assert fakes.dtype == np.uint8 and fakes.shape == (1000, 3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', MetricWarning)
        assert calc_metric('fid1k_full_digits', fakes=fakes, real=real, cache_dir=cache)['results'] == pytest.approx(c)
    with pytest.raises(ValueError, match='real images are 3x32x32'):
        calc_metric('fid1k_full_digits', G=G, real=make_stacked_digits(10, 32)[0], cache_dir=cache)

def test_report_metric_writes_upstream_lines_that_a_kill_cannot_tear(tmp_path, monkeypatch, capsys):
    result = dict(results={'fid50k_full': 3.5}, metric='fid50k_full', total_time=1.25, total_time_str='1s', num_gpus=1)
    line = report_metric(result, run_dir=tmp_path, snapshot_pkl=tmp_path / 'network-snapshot-000100.pkl')
    assert capsys.readouterr().out == line + '\n'
    row = json.loads((tmp_path / 'metric-fid50k_full.jsonl').read_text())
    assert list(row) == ['results', 'metric', 'total_time', 'total_time_str', 'num_gpus', 'snapshot_pkl', 'timestamp']
    assert row['snapshot_pkl'] == 'network-snapshot-000100.pkl' and row['results'] == {'fid50k_full': 3.5}
    report_metric(dict(result, results={'fid50k_full': float('nan')}), run_dir=tmp_path, snapshot_pkl=None, echo=False)
    lines = (tmp_path / 'metric-fid50k_full.jsonl').read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])['results'] == {'fid50k_full': None}
    before = (tmp_path / 'metric-fid50k_full.jsonl').read_bytes()
    real_write = os.write
    monkeypatch.setattr(os, 'write', lambda fd, data: real_write(fd, data[:7]))      # a full disk mid-line
    with pytest.raises(OSError, match='disk full'):
        report_metric(result, run_dir=tmp_path, echo=False)
    assert (tmp_path / 'metric-fid50k_full.jsonl').read_bytes() == before
    with pytest.raises(ValueError, match='unknown metric'):
        report_metric(dict(result, metric='fid'), run_dir=tmp_path)

def test_samples_of_a_noisy_decoder_depend_on_the_seed_alone():
    """Decoders with noise injection draw per-sample noise from the metric's seed, not from the global RNG."""
    from dataclasses import replace
    from rtm_plugin.imle.config import DEFAULT_RUN
    from rtm_plugin.imle.decoders import NoiseInjection
    from rtm_plugin.imle.generator import build_generator
    G = build_generator(replace(DEFAULT_RUN, noise=True, z_dim=16, w_dim=16, rtm_dim=4, width=8)).eval()
    with torch.no_grad():
        for m in G.modules():                           # noise strengths start at zero: make the noise visible
            if isinstance(m, NoiseInjection):
                m.strength.fill_(1.0)
    torch.manual_seed(1)
    a = metric_main.sample_images(G, 20, seed=3, batch_size=7)
    torch.manual_seed(2)
    b = metric_main.sample_images(G, 20, seed=3, batch_size=20)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, metric_main.sample_images(G, 20, seed=4))

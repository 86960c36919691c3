"""rtm-eval on image folders, zips, .npy arrays and stats .npz files written by the test."""

import json
import shutil
import socket
import warnings
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from rtm_plugin.datasets.stacked_digits import make_stacked_digits
from rtm_plugin.metrics import detectors
from rtm_plugin.metrics.cli import main
from rtm_plugin.metrics.detectors import url_cache_path
from rtm_plugin.metrics.image_files import read_images
from rtm_plugin.metrics.metric_main import calc_metric

def save_pngs(images, folder):
    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img.transpose(1, 2, 0)).save(folder / f'{i:05d}.png')
    return folder

@pytest.fixture(scope='module')
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp('sets')
    real, _ = make_stacked_digits(1200, resolution=16, seed=31)
    fake, _ = make_stacked_digits(1000, resolution=16, seed=32)
    fake_dir = save_pngs(fake, root / 'fake' / 'sub')                  # nested: folders are searched recursively
    with zipfile.ZipFile(root / 'real.zip', 'w') as z:                  # a dataset_tool.py-like zip
        z.writestr('dataset.json', '{"labels": null}')
        for i, img in enumerate(real):
            png = root / 'tmp.png'
            Image.fromarray(img.transpose(1, 2, 0)).save(png)
            z.write(png, f'00000/img{i:08d}.png')
    np.save(root / 'fake.npy', fake)
    np.save(root / 'real.npy', real)
    return root, real, fake, fake_dir.parent

@pytest.fixture
def cache(tmp_path, digits_cache):
    root = tmp_path / 'cache'
    root.mkdir()
    shutil.copy(digits_cache / 'digit_classifier.pt', root / 'digit_classifier.pt')
    return root

def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])

def lines(result):
    return [json.loads(line) for line in result.stdout.splitlines()]

def error_line(result):
    """The 'Error: ...' line; it must be the only line of the message."""
    assert result.exit_code == 2, result.output
    return result.stderr.strip().splitlines()[-1]

def test_cli_matches_calc_metric(sets, cache, tmp_path):
    root, real, fake, fake_dir = sets
    out = tmp_path / 'metrics.jsonl'
    result = invoke('--real', root / 'real.zip', '--fake', fake_dir, '--metrics', 'fid1k_full,pr1k3_full,modes1k',
                    '--detector', 'digits', '--cache-dir', cache, '--out', out, '--no-progress')
    assert result.exit_code == 0, result.output
    printed = lines(result)
    assert [p['metric'] for p in printed] == ['fid1k_full_digits', 'pr1k3_full_digits', 'modes1k']
    assert [json.loads(line) for line in out.read_text().splitlines()] == printed
    for p in printed:
        assert set(p) == {'results', 'metric', 'total_time', 'total_time_str', 'num_gpus', 'snapshot_pkl', 'timestamp'}
        expected = calc_metric(p['metric'], fakes=fake, real=real, cache_dir=cache)['results']
        assert p['results'] == pytest.approx(expected)

def test_cli_no_longer_defaults_to_digits(tmp_path, monkeypatch, cache):
    """Random 64 px images: main scored them 'FID 0.034, modes 8' with the digits detector. Now the default is
    fid50k_full on Inception, and without the weights one line says where to put the file."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / 'a.npy', rng.integers(0, 256, (1000, 3, 64, 64), dtype=np.uint8))
    np.save(tmp_path / 'b.npy', rng.integers(0, 256, (1000, 3, 64, 64), dtype=np.uint8))
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        url = f'http://127.0.0.1:{s.getsockname()[1]}/metrics/inception-2015-12-05.pt'
    monkeypatch.setitem(detectors.DETECTOR_URLS, 'inception', url)
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'no-dnnlib'))
    result = invoke('--real', tmp_path / 'a.npy', '--fake', tmp_path / 'b.npy', '--cache-dir', cache)
    assert result.stdout == '' and 'fid50k_full needs 50000 generated images' in error_line(result)
    result = invoke('--real', tmp_path / 'a.npy', '--fake', tmp_path / 'b.npy', '--cache-dir', cache,
                    '--metrics', 'fid1k_full')
    message = error_line(result)
    assert result.stdout == '' and url in message and str(url_cache_path(url, cache)) in message

    # the file put where the message says: rtm-eval runs offline with it (a tiny stand-in with upstream's interface)
    write_tiny_inception(url_cache_path(url, cache))
    result = invoke('--real', tmp_path / 'a.npy', '--fake', tmp_path / 'b.npy', '--cache-dir', cache,
                    '--metrics', 'fid1k_full,is1k', '--no-progress')
    assert result.exit_code == 0, result.output
    assert [p['metric'] for p in lines(result)] == ['fid1k_full', 'is1k']
    assert set(lines(result)[1]['results']) == {'is1k_mean', 'is1k_std'}

class TinyInception(torch.nn.Module):
    """stylegan2-ada's detector call signature: uint8 [N, 3, H, W] in; features, or a softmax over 5 classes."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Linear(3, 4)
        self.logits = torch.nn.Linear(4, 5)

    def forward(self, img: torch.Tensor, return_features: bool = False, no_output_bias: bool = False):
        f = self.features(img.to(torch.float32).mean([2, 3]) / 255)
        if return_features:
            return f
        return torch.softmax(self.logits(f) - self.logits.bias if no_output_bias else self.logits(f), 1)

def write_tiny_inception(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.manual_seed(0)
        torch.jit.script(TinyInception()).save(str(path))
    return path

def test_cli_refuses_mismatched_resolutions_unless_resize(sets, cache, tmp_path):
    root, real, fake, fake_dir = sets
    np.save(tmp_path / 'real32.npy', make_stacked_digits(300, resolution=32, seed=3)[0])
    args = ('--real', tmp_path / 'real32.npy', '--fake', root / 'fake.npy', '--metrics', 'fid1k_full_digits',
            '--cache-dir', cache, '--no-progress')
    message = error_line(invoke(*args))
    assert 'real images are 3x32x32 (CxHxW) but generated images are 3x16x16' in message and '--resize' in message
    result = invoke(*args, '--resize')
    assert result.exit_code == 0, result.output

def test_cli_warns_below_meaningful_sample_counts(sets, cache, tmp_path):
    root, real, fake, fake_dir = sets
    np.save(tmp_path / 'ten.npy', real[:10])
    result = invoke('--real', tmp_path / 'ten.npy', '--fake', root / 'fake.npy', '--metrics',
                    'fid1k_full_digits,dc1k5_full_digits', '--cache-dir', cache, '--no-progress')
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if line.startswith('warning: ')]
    assert len(warned) == 2 and 'fewer than the 192 feature dimensions' in warned[0] and 'mostly noise' in warned[1]
    assert len(lines(result)) == 2

def test_cli_reads_stats_npz(sets, cache):
    root, real, fake, fake_dir = sets
    args = ('--fake', root / 'fake.npy', '--metrics', 'fid1k_full_digits', '--cache-dir', cache, '--no-progress')
    from_images = lines(invoke('--real', root / 'real.npy', *args))[0]['results']
    (npz,) = (cache / 'gan-metrics').glob('digits-1200-*.npz')
    assert lines(invoke('--real', npz, *args))[0]['results'] == from_images
    message = error_line(invoke('--real', npz, '--fake', root / 'fake.npy', '--metrics', 'kid1k_full_digits',
                                '--cache-dir', cache))
    assert 'holds only mu and sigma' in message

@pytest.mark.parametrize('args, expected', [
    (('--metrics', 'fid50k_digits'), 'fid50k_digits needs 50000 generated images but'),
    (('--metrics', 'fid1k_full_digits,fidd'), "unknown metric 'fidd'"),
    (('--metrics', ','), 'give at least one metric name'),
    (('--metrics', 'fid1k_full,pr1k3', '--detector', 'my.pt'), 'cannot tell whether'),
    (('--device', 'nonsense'), '--device nonsense'),
    (('--device', 'cuda:0'), 'no CUDA device') if not torch.cuda.is_available() else (('--device', 'x'), '--device x'),
])
def test_cli_usage_errors_are_one_line(sets, cache, tmp_path, args, expected):
    root, real, fake, fake_dir = sets
    (tmp_path / 'my.pt').write_bytes(b'')
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        result = invoke('--real', root / 'real.npy', '--fake', root / 'fake.npy', '--cache-dir', cache, *args)
    assert expected in error_line(result)

def test_readers_agree(sets):
    root, real, fake, fake_dir = sets
    assert np.array_equal(read_images(root / 'real.zip'), real)
    assert np.array_equal(read_images(fake_dir, max_images=50), fake[:50])
    assert np.array_equal(read_images(root / 'fake.npy'), fake)

def test_grayscale_and_rgba_become_rgb(tmp_path):
    (tmp_path / 'set').mkdir()
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(tmp_path / 'set' / 'a.png')
    Image.fromarray(np.full((8, 8, 4), 9, np.uint8)).save(tmp_path / 'set' / 'b.png')   # alpha 9: nearly white
    images = read_images(tmp_path / 'set')
    assert images.shape == (2, 3, 8, 8) and images[0].max() == 7 and images[1].max() == 246

def test_bad_sets_are_named(tmp_path, cache):
    empty = tmp_path / 'empty'
    empty.mkdir()
    result = invoke('--real', empty, '--fake', empty, '--metrics', 'modes1k', '--cache-dir', cache)
    assert 'no images' in error_line(result) and str(empty) in result.stderr
    mixed = save_pngs(np.zeros((2, 3, 8, 8), np.uint8), tmp_path / 'mixed')
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(mixed / 'z.png')
    with pytest.raises(ValueError, match=r'z\.png is 9x9 .* share one size'):
        read_images(mixed)
    with zipfile.ZipFile(tmp_path / 'crc.zip', 'w', zipfile.ZIP_STORED) as z:
        z.writestr('a.png', (mixed / '00000.png').read_bytes())
    data = bytearray((tmp_path / 'crc.zip').read_bytes())
    data[data.index(b'IDAT') + 8] ^= 0xFF                                      # corrupt a byte: the CRC no longer fits
    (tmp_path / 'crc.zip').write_bytes(bytes(data))
    message = error_line(invoke('--real', tmp_path / 'crc.zip', '--fake', tmp_path / 'crc.zip', '--metrics',
                                'fid1k_full_digits', '--cache-dir', cache))
    assert 'crc.zip:a.png: cannot read the file (BadZipFile' in message
    (mixed / 'z.png').write_bytes(b'truncated')
    with pytest.raises(ValueError, match=r'z\.png: cannot read image'):
        read_images(mixed)

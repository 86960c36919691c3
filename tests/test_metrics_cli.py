"""rtm-eval on image folders, zips and .npy arrays written by the test."""

import json
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from rtm_plugin.datasets.stacked_digits import make_stacked_digits
from rtm_plugin.metrics.cli import main
from rtm_plugin.metrics.evaluate import evaluate_images
from rtm_plugin.metrics.image_files import read_images

def save_pngs(images, folder):
    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img.transpose(1, 2, 0)).save(folder / f'{i:05d}.png')
    return folder

@pytest.fixture(scope='module')
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp('sets')
    real, _ = make_stacked_digits(300, resolution=16, seed=31)
    fake, _ = make_stacked_digits(200, resolution=16, seed=32)
    fake_dir = save_pngs(fake, root / 'fake' / 'sub')                  # nested: folders are searched recursively
    with zipfile.ZipFile(root / 'real.zip', 'w') as z:                  # a dataset_tool.py-like zip
        z.writestr('dataset.json', '{"labels": null}')
        for i, img in enumerate(real):
            png = root / 'tmp.png'
            Image.fromarray(img.transpose(1, 2, 0)).save(png)
            z.write(png, f'00000/img{i:08d}.png')
    np.save(root / 'fake.npy', fake)
    return root, real, fake, fake_dir.parent

def test_cli_matches_evaluate_images(sets, digits_cache, monkeypatch):
    monkeypatch.setenv('RTM_CACHE_DIR', str(digits_cache))
    root, real, fake, fake_dir = sets
    out = root / 'metrics.json'
    result = CliRunner().invoke(main, ['--real', str(root / 'real.zip'), '--fake', str(fake_dir), '--out', str(out)])
    assert result.exit_code == 0, result.output
    printed, written = json.loads(result.output), json.loads(out.read_text())
    expected = evaluate_images(real, fake, detector='digits')
    assert printed == written and printed['num_real'] == 300 and printed['num_fake'] == 200
    assert {k: printed[k] for k in expected} == pytest.approx(expected)

def test_readers_agree(sets):
    root, real, fake, fake_dir = sets
    assert np.array_equal(read_images(root / 'real.zip'), real)
    assert np.array_equal(read_images(fake_dir, max_images=50), fake[:50])
    assert np.array_equal(read_images(root / 'fake.npy'), fake)

def test_grayscale_and_rgba_become_rgb(tmp_path):
    (tmp_path / 'set').mkdir()
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(tmp_path / 'set' / 'a.png')
    Image.fromarray(np.full((8, 8, 4), 9, np.uint8)).save(tmp_path / 'set' / 'b.png')
    images = read_images(tmp_path / 'set')
    assert images.shape == (2, 3, 8, 8) and images[0].max() == 7 and images[1].max() == 9

def test_bad_sets_are_named(tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    result = CliRunner().invoke(main, ['--real', str(empty), '--fake', str(empty)])
    assert result.exit_code != 0 and 'no images' in result.output and str(empty) in result.output
    mixed = save_pngs(np.zeros((2, 3, 8, 8), np.uint8), tmp_path / 'mixed')
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(mixed / 'z.png')
    with pytest.raises(ValueError, match=r'z\.png is 9x9 .* share one size'):
        read_images(mixed)
    (mixed / 'z.png').write_bytes(b'truncated')
    with pytest.raises(ValueError, match=r'cannot read image .*z\.png'):
        read_images(mixed)

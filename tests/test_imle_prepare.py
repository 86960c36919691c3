"""rtm-imle-prepare: CIFAR-10 from its python tarball and image folders into dataset_tool.py-style zips, read
back by the trainer. Every input is made here; nothing is downloaded (--download is tested on a file:// URL)."""

import io
import json
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from rtm_plugin.image_reader import load_images
from rtm_plugin.imle.prepare import main, read_cifar10

def make_cifar_tarball(path, per_batch=3, seed=0):
    """A tiny cifar-10-python.tar.gz in the real layout: cifar-10-batches-py/data_batch_1..5 and test_batch,
    each a pickle with b'data' uint8 [N, 3072] (R plane, G plane, B plane, row-major) and b'labels'."""
    rng = np.random.default_rng(seed)
    batches = {}
    with tarfile.open(path, 'w:gz') as tar:
        for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
            data = rng.integers(0, 256, [per_batch, 3072], dtype=np.uint8)
            labels = rng.integers(0, 10, per_batch).tolist()
            batches[name] = (data, labels)
            blob = pickle.dumps({b'batch_label': name.encode(), b'data': data, b'labels': labels,
                                 b'filenames': [b'x.png'] * per_batch}, protocol=2)
            info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return batches

def read_zip(path):
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        meta = json.loads(zf.read('dataset.json'))
        images = {n: np.asarray(Image.open(io.BytesIO(zf.read(n)))) for n in names if n.endswith('.png')}
        infos = {i.filename: i.compress_type for i in zf.infolist()}
    return names, meta, images, infos

def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])

def test_cifar10_tarball_to_dataset_tool_zip(tmp_path):
    tarball = tmp_path / 'cifar-10-python.tar.gz'
    batches = make_cifar_tarball(tarball)
    dest = tmp_path / 'out' / 'cifar10.zip'
    result = run('--source', tarball, '--dest', dest)
    assert result.exit_code == 0, result.output
    names, meta, images, infos = read_zip(dest)
    pngs = [n for n in names if n.endswith('.png')]
    assert pngs == [f'00000/img{i:08d}.png' for i in range(15)]         # dataset_tool.py's names
    assert set(infos.values()) == {zipfile.ZIP_STORED}
    expected = np.concatenate([batches[f'data_batch_{i}'][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    labels = sum((batches[f'data_batch_{i}'][1] for i in range(1, 6)), [])
    assert meta['labels'] == [[n, l] for n, l in zip(pngs, labels)]
    for i, n in enumerate(pngs):                                        # exact pixels, channels in order
        assert np.array_equal(images[n], expected[i].transpose(1, 2, 0))
    back = load_images(str(dest))                                       # what rtm-imle --data reads
    assert np.array_equal(back.images, expected)

def test_cifar10_test_split_and_max_images(tmp_path):
    tarball = tmp_path / 'cifar-10-python.tar.gz'
    batches = make_cifar_tarball(tarball)
    images, labels = read_cifar10(str(tarball), 'test')
    assert np.array_equal(images, batches['test_batch'][0].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    result = run('--source', tarball, '--dest', tmp_path / 't.zip', '--split', 'test', '--max-images', 2)
    assert result.exit_code == 0, result.output
    _, meta, images, _ = read_zip(tmp_path / 't.zip')
    assert len(images) == 2 and [l for _, l in meta['labels']] == batches['test_batch'][1][:2]

def make_folder(root, sizes):
    rng = np.random.default_rng(1)
    (root / 'sub').mkdir(parents=True)
    for i, (w, h) in enumerate(sizes):
        where = root / 'sub' if i % 2 else root
        Image.fromarray(rng.integers(0, 256, [h, w, 3], dtype=np.uint8)).save(where / f'im{i}.png')
    Image.fromarray(rng.integers(0, 256, [64, 64], dtype=np.uint8), 'L').save(root / 'gray.jpg')
    (root / 'notes.txt').write_text('not an image')

def test_folder_to_zip_resized_with_null_labels(tmp_path):
    make_folder(tmp_path / 'faces', [(64, 64), (128, 128), (64, 64)])
    dest = tmp_path / 'faces.zip'
    result = run('--source', tmp_path / 'faces', '--dest', dest, '--resolution', 32)
    assert result.exit_code == 0, result.output
    names, meta, images, _ = read_zip(dest)
    assert meta == {'labels': None} and len(images) == 4
    assert all(im.shape == (32, 32, 3) for im in images.values())
    assert load_images(str(dest)).images.shape == (4, 3, 32, 32)

def test_a_prepared_folder_holds_what_the_trainer_reads_from_it(tmp_path):
    """One reader: rtm-imle-prepare takes the files the trainer takes (a .gif too) and decodes them as it does (a
    16-bit PNG scaled to 8 bits, not clipped; alpha composited on white)."""
    folder = tmp_path / 'mixed'
    folder.mkdir()
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 65536, [16, 16], dtype=np.uint16)).save(folder / 'a16.png')
    Image.fromarray(rng.integers(0, 256, [16, 16, 3], dtype=np.uint8)).save(folder / 'b.gif')
    Image.fromarray(rng.integers(0, 256, [16, 16, 4], dtype=np.uint8), 'RGBA').save(folder / 'c.png')
    dest = tmp_path / 'mixed.zip'
    result = run('--source', folder, '--dest', dest)
    assert result.exit_code == 0, result.output
    assert np.array_equal(load_images(str(dest)).images, load_images(str(folder)).images)

def test_folder_non_square_needs_center_crop(tmp_path):
    make_folder(tmp_path / 'shots', [(80, 64), (64, 64)])
    result = run('--source', tmp_path / 'shots', '--dest', tmp_path / 'a.zip', '--resolution', 32)
    assert result.exit_code == 1 and 'im0.png: image is 80x64, not square' in result.output
    assert not (tmp_path / 'a.zip').exists() and not list(tmp_path.glob('.*'))     # no temporary left
    result = run('--source', tmp_path / 'shots', '--dest', tmp_path / 'a.zip', '--resolution', 32,
                 '--transform', 'center-crop')
    assert result.exit_code == 0, result.output

def test_bad_sources_are_named(tmp_path):
    (tmp_path / 'empty').mkdir()
    assert 'no images found' in run('--source', tmp_path / 'empty', '--dest', tmp_path / 'x.zip').output
    (tmp_path / 'other.tar.gz').write_bytes(b'not a tarball')
    result = run('--source', tmp_path / 'other.tar.gz', '--dest', tmp_path / 'x.zip')
    assert result.exit_code == 2 and 'not a folder of images or the CIFAR-10 python tarball' in result.output
    assert run('--source', tmp_path / 'missing', '--dest', tmp_path / 'x.zip').exit_code == 2
    assert 'must end in .zip' in run('--source', tmp_path / 'empty', '--dest', tmp_path / 'x').output
    with tarfile.open(tmp_path / 'broken.tar.gz', 'w:gz') as tar:                 # data_batch_2 missing
        blob = pickle.dumps({b'data': np.zeros([1, 3072], np.uint8), b'labels': [0]})
        info = tarfile.TarInfo('cifar-10-batches-py/data_batch_1')
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    result = run('--source', tmp_path / 'broken.tar.gz', '--dest', tmp_path / 'x.zip')
    assert result.exit_code == 1 and 'no cifar-10-batches-py/data_batch_2' in result.output

def test_download_only_with_the_flag_and_from_a_local_url(tmp_path):
    served = tmp_path / 'served'
    served.mkdir()
    make_cifar_tarball(served / 'cifar-10-python.tar.gz')
    url = (served / 'cifar-10-python.tar.gz').as_uri()                 # file://, nothing leaves the machine
    assert run('--source', url, '--dest', tmp_path / 'out' / 'c.zip').exit_code == 2   # no flag: not a path
    result = run('--download', '--source', url, '--dest', tmp_path / 'out' / 'c.zip')
    assert result.exit_code == 0, result.output
    assert (tmp_path / 'out' / 'cifar-10-python.tar.gz').exists()
    assert len(read_zip(tmp_path / 'out' / 'c.zip')[2]) == 15

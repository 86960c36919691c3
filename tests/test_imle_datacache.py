"""The decoded dataset on disk (imle/datacache.py): decoded once, memory-mapped read-only by every rank."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rtm_plugin.image_reader import load_images
from rtm_plugin.imle.datacache import load_images_shared, source_key

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

@pytest.fixture
def folder(tmp_path):
    from rtm_plugin.datasets.stacked_digits import make_stacked_digits
    images = make_stacked_digits(12, 16, seed=0)[0]
    path = tmp_path / 'data'
    path.mkdir()
    for i, x in enumerate(images):
        Image.fromarray(x.transpose(1, 2, 0)).save(path / f'{i:03d}.png')
    (path / 'dataset.json').write_text('{}')
    return str(path)

def test_decoded_once_then_reused_as_a_read_only_memmap(folder, tmp_path):
    root = str(tmp_path / 'cache')
    first = load_images_shared(folder, 16, log=lambda m: None, root=root)
    assert first.created and isinstance(first.images, np.memmap) and not first.images.flags.writeable
    expected = load_images(folder, 16)
    assert np.array_equal(first.images, expected.images) and first.names == expected.names
    again = load_images_shared(folder, 16, log=lambda m: None, root=root)
    assert not again.created and again.file == first.file
    # Another setting, or an edited dataset, is another key: decoded again.
    assert source_key(folder, 8) != source_key(folder, 16)
    os.utime(os.path.join(folder, '003.png'), ns=(1, 1))
    assert load_images_shared(folder, 16, log=lambda m: None, root=root).created
    assert len(os.listdir(root)) == 2

def test_skips_are_kept_with_the_cache(folder, tmp_path):
    with open(os.path.join(folder, 'zz_bad.png'), 'wb') as f:
        f.write(b'not a png')
    root = str(tmp_path / 'cache')
    for created in (True, False):
        found = load_images_shared(folder, 16, skip_bad=True, log=lambda m: None, root=root)
        assert found.created == created and len(found.images) == 12
        assert len(found.skipped) == 1 and 'zz_bad.png' in found.skipped[0][0]
    with pytest.raises(ValueError, match='zz_bad.png: cannot read image'):
        load_images_shared(folder, 16, log=lambda m: None, root=root)

def test_a_cache_without_room_stops_with_the_size(folder, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple
    usage = namedtuple('usage', 'total used free')
    monkeypatch.setattr(shutil, 'disk_usage', lambda p: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(ValueError, match=r'needs up to 9\.0 KiB \(12 images of 3x16x16 uint8\) but .* has 1000 bytes free'):
        load_images_shared(folder, 16, log=lambda m: None, root=str(tmp_path / 'cache'))
    assert not os.path.exists(tmp_path / 'cache') or not any(
        f.endswith('.u8') for _, _, files in os.walk(tmp_path / 'cache') for f in files)

def test_a_dataset_larger_than_memory_streams_and_says_so(folder, tmp_path, monkeypatch):
    import rtm_plugin.imle.datacache as datacache
    monkeypatch.setattr(datacache, 'memory_available', lambda: 1000)
    lines = []
    found = load_images_shared(folder, 16, log=lines.append, root=str(tmp_path / 'cache'))
    assert isinstance(found.images, np.memmap) and found.nbytes == 12 * 3 * 16 * 16
    assert lines[-1] == (f'{folder}: 9.0 KiB decoded, more than the 1000 bytes of memory available: pages stream '
                         f'from {found.file} (keep it on a fast local disk)')

def test_the_trainer_trains_from_the_memmap_without_copying_it(folder, tmp_path):
    from dataclasses import replace
    sys.path.insert(0, HERE)
    from imle_tiny import TINY
    from rtm_plugin.imle.train import RunOptions, Trainer
    found = load_images_shared(folder, 16, log=lambda m: None, root=str(tmp_path / 'cache'))
    t = Trainer(replace(TINY, batch=4), found.images, RunOptions(outdir=str(tmp_path / 'run'), perceptual='fallback',
                progress=False), log=lambda m: None)
    assert t.images.data_ptr() == found.images.ctypes.data            # the tensor is a view of the mapped file
    t.rematch(0)
    assert np.isfinite(t.train_step()[0])

def test_two_ranks_map_one_file(folder, tmp_path):
    cache, out = tmp_path / 'cache', tmp_path / 'out'
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1', RTM_IMLE_DATA_CACHE=str(cache))
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                           os.path.join(HERE, 'imle_datacache_worker.py'), folder, str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [json.load(open(out / f'rank{r}.json')) for r in (0, 1)]
    assert [r['world'] for r in reports] == [2, 2]
    assert [r['created'] for r in reports] == [True, False]             # local rank 0 decoded, rank 1 waited
    files = [os.path.join(d, f) for d, _, fs in os.walk(cache) for f in fs]
    assert len(files) == 2 and sorted(map(os.path.basename, files)) == ['images.u8', 'meta.json']  # no temp left
    data_file = next(f for f in files if f.endswith('images.u8'))
    assert {r['file'] for r in reports} == {data_file} and len({r['inode'] for r in reports}) == 1
    assert all(r['memmap'] and r['mode'] == 'r' and not r['writeable'] for r in reports)
    assert reports[0]['sha1'] == reports[1]['sha1'] and reports[0]['shape'] == [12, 3, 16, 16]
    assert os.path.getsize(data_file) == 12 * 3 * 16 * 16
    expected = load_images(folder, 16).images
    assert np.array_equal(np.fromfile(data_file, np.uint8).reshape(expected.shape), expected)

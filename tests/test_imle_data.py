"""The image loader on real photos (scikit-image's bundled LFW faces): formats, colour modes, zips, bad input."""

import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from rtm_plugin.image_reader import load_images

@pytest.fixture(scope='module')
def faces():
    skdata = pytest.importorskip('skimage.data', reason='scikit-image ships the LFW faces ([test] extra)')
    return (skdata.lfw_subset()[:100] * 255).round().astype(np.uint8)   # 100 faces, 25x25 grayscale

def write(folder, faces, mode='L', ext='.png', start=0, count=10):
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        g = faces[i]
        if mode == 'L':
            img = Image.fromarray(g, 'L')
        elif mode == 'RGB':
            img = Image.fromarray(np.stack([g, g // 2, 255 - g], axis=-1), 'RGB')
        else:                                                      # RGBA: left half transparent
            a = np.full_like(g, 255)
            a[:, :12] = 0
            img = Image.fromarray(np.stack([g, g, g, a], axis=-1), 'RGBA')
        path = os.path.join(folder, f'img{i:04d}{ext}')
        img.save(path)
        paths.append(path)
    return paths

def zip_folder(folder, zpath, extra=None):
    with zipfile.ZipFile(zpath, 'w') as z:
        for name in sorted(os.listdir(folder)):
            z.write(os.path.join(folder, name), name)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return zpath

def test_grayscale_png_folder_is_replicated_to_rgb(tmp_path, faces):
    write(tmp_path / 'gray', faces, 'L')
    s = load_images(str(tmp_path / 'gray'))
    assert s.images.shape == (10, 3, 25, 25) and s.images.dtype == np.uint8
    assert np.array_equal(s.images[:, 0], faces[:10]) and np.array_equal(s.images[:, 1], s.images[:, 2])

def test_rgb_jpeg_and_resize(tmp_path, faces):
    write(tmp_path / 'jpg', faces, 'RGB', '.jpg')
    s = load_images(str(tmp_path / 'jpg'), resolution=16)
    assert s.images.shape == (10, 3, 16, 16)
    assert s.images[:, 2].mean() > s.images[:, 1].mean()           # the inverted blue channel survives

def test_rgba_is_composited_on_white(tmp_path, faces):
    write(tmp_path / 'rgba', faces, 'RGBA')
    s = load_images(str(tmp_path / 'rgba'))
    assert (s.images[:, :, :, :12] == 255).all()                   # transparent half -> white
    assert np.array_equal(s.images[:, 0, :, 12:], faces[:10, :, 12:])

def test_dataset_tool_zip_with_json_and_subfolders(tmp_path, faces):
    write(tmp_path / 'z' / '00000', faces, 'L', count=6)
    zpath = tmp_path / 'faces.zip'
    with zipfile.ZipFile(zpath, 'w') as z:
        for name in sorted(os.listdir(tmp_path / 'z' / '00000')):
            z.write(tmp_path / 'z' / '00000' / name, f'00000/{name}')
        z.writestr('dataset.json', '{"labels": null}')
    s = load_images(str(zpath), resolution=32)
    assert s.images.shape == (6, 3, 32, 32)
    assert s.names[0].endswith('faces.zip:00000/img0000.png')

def test_mixed_formats_in_sorted_order(tmp_path, faces):
    write(tmp_path / 'mix', faces, 'L', '.png', 0, 3)
    write(tmp_path / 'mix', faces, 'RGB', '.bmp', 3, 3)
    write(tmp_path / 'mix', faces, 'RGBA', '.png', 6, 3)
    (tmp_path / 'mix' / 'notes.txt').write_text('not an image')
    s = load_images(str(tmp_path / 'mix'))
    assert len(s.images) == 9 and [os.path.basename(n) for n in s.names] == sorted(os.path.basename(n) for n in s.names)

def test_corrupt_file_is_named_or_skipped_and_counted(tmp_path, faces):
    paths = write(tmp_path / 'bad', faces, 'L')
    with open(paths[3], 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n garbage')                       # a PNG header and nothing else
    with open(paths[7], 'r+b') as f:                               # a truncated PNG
        data = f.read()
        f.seek(0), f.truncate(), f.write(data[:len(data) // 2])
    with pytest.raises(ValueError, match='img0003.png: cannot read image'):
        load_images(str(tmp_path / 'bad'))
    s = load_images(str(tmp_path / 'bad'), skip_bad=True)
    assert len(s.images) == 8 and len(s.skipped) == 2
    assert [os.path.basename(n) for n, _ in s.skipped] == ['img0003.png', 'img0007.png']
    zpath = zip_folder(str(tmp_path / 'bad'), str(tmp_path / 'bad.zip'))
    with pytest.raises(ValueError, match=r'bad\.zip:img0003\.png: cannot read image'):
        load_images(zpath)

def test_mixed_sizes_need_a_resolution(tmp_path, faces):
    write(tmp_path / 'sizes', faces, 'L', count=4)
    Image.fromarray(np.zeros([30, 30], np.uint8), 'L').save(tmp_path / 'sizes' / 'img9999.png')
    with pytest.raises(ValueError, match=r'img9999\.png: image is 30x30 but .*img0000\.png is 25x25; pass a resolution'):
        load_images(str(tmp_path / 'sizes'))
    assert load_images(str(tmp_path / 'sizes'), resolution=25).images.shape == (5, 3, 25, 25)

def test_non_square_is_named(tmp_path, faces):
    write(tmp_path / 'rect', faces, 'L', count=2)
    Image.fromarray(np.zeros([20, 25], np.uint8), 'L').save(tmp_path / 'rect' / 'wide.png')
    with pytest.raises(ValueError, match=r'wide\.png: image is 25x20, not square'):
        load_images(str(tmp_path / 'rect'), resolution=16)

def test_empty_missing_and_wrong_paths(tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'readme.txt').write_text('no images here')
    with pytest.raises(ValueError, match='empty: no images found'):
        load_images(str(tmp_path / 'empty'))
    with pytest.raises(FileNotFoundError, match='dataset not found'):
        load_images(str(tmp_path / 'nowhere'))
    (tmp_path / 'file.txt').write_text('x')
    with pytest.raises(ValueError, match='not a folder of images or a zip'):
        load_images(str(tmp_path / 'file.txt'))

def test_all_unreadable_with_skip_is_still_an_error(tmp_path):
    (tmp_path / 'junk').mkdir()
    for i in range(3):
        (tmp_path / 'junk' / f'{i}.png').write_bytes(b'not a png')
    with pytest.raises(ValueError, match='none of 3 image files could be read'):
        load_images(str(tmp_path / 'junk'), skip_bad=True)

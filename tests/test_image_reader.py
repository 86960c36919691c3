"""The one image reader behind the trainer's loader and rtm-eval: depth, float images, alpha, extensions."""

import io

import numpy as np
import pytest
from PIL import Image

from rtm_plugin.image_reader import decode_image, load_images
from rtm_plugin.metrics.image_files import read_images

def gradient16():
    return (np.arange(64, dtype=np.uint32).reshape(8, 8) * 1040).astype(np.uint16)      # 0 .. 65520

def expected8(a16):
    return np.round(a16 / 257).astype(np.uint8)

def both_readers(folder):
    """What rtm-eval's reader and the trainer's loader make of a folder: they must agree."""
    metrics = read_images(folder)
    trainer = load_images(str(folder)).images
    assert np.array_equal(metrics, trainer)
    return metrics

def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    (tmp_path / 'set').mkdir()
    a = gradient16()
    Image.fromarray(a).save(tmp_path / 'set' / 'a.png')
    x = both_readers(tmp_path / 'set')
    assert x.shape == (1, 3, 8, 8) and np.array_equal(x[0, 0], expected8(a)) and x.max() == expected8(a).max()

def test_16_bit_pgm_is_scaled(tmp_path):
    (tmp_path / 'set').mkdir()
    a = gradient16()
    (tmp_path / 'set' / 'a.pgm').write_bytes(b'P5\n8 8\n65535\n' + a.astype('>u2').tobytes())
    x = both_readers(tmp_path / 'set')
    assert np.array_equal(x[0, 1], expected8(a))

def test_float_tiff_in_unit_range_is_scaled_and_other_floats_are_refused(tmp_path):
    tifffile = pytest.importorskip('tifffile', reason='tifffile writes float TIFFs (scikit-image, [test] extra)')
    (tmp_path / 'set').mkdir()
    f = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    tifffile.imwrite(tmp_path / 'set' / 'a.tif', f)
    x = both_readers(tmp_path / 'set')
    assert np.array_equal(x[0, 2], np.round(f.astype(np.float64) * 255).astype(np.uint8)) and x.max() == 255

    tifffile.imwrite(tmp_path / 'set' / 'a.tif', f * 255)
    for read in (read_images, lambda p: load_images(str(p))):
        with pytest.raises(ValueError, match=r'a\.tif: cannot read image .*float image with values in \[0, 255\]'):
            read(tmp_path / 'set')
    tifffile.imwrite(tmp_path / 'set' / 'a.tif', np.stack([f, f, f], -1), photometric='rgb')
    with pytest.raises(ValueError, match=r'a\.tif: cannot read image .*save it as 8- or 16-bit'):
        read_images(tmp_path / 'set')
    tifffile.imwrite(tmp_path / 'set' / 'a.tif', (f * 1e6).astype(np.int32))
    with pytest.raises(ValueError, match=r'a\.tif: cannot read image .*32-bit integers'):
        read_images(tmp_path / 'set')

def test_alpha_is_composited_on_white_by_both_readers(tmp_path):
    (tmp_path / 'set').mkdir()
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 4:, 3] = 255                                # left half transparent
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'set' / 'a.png')
    x = both_readers(tmp_path / 'set')
    assert (x[0, :, :, :4] == 255).all() and (x[0, 0, :, 4:] == 200).all() and (x[0, 1:, :, 4:] == 0).all()

def test_both_readers_take_the_same_extensions(tmp_path):
    (tmp_path / 'set').mkdir()
    Image.fromarray(np.full((8, 8), 50, np.uint8)).save(tmp_path / 'set' / 'a.gif')
    Image.fromarray(np.full((8, 8), 60, np.uint8)).save(tmp_path / 'set' / 'b.pgm')
    (tmp_path / 'set' / '.hidden.png').write_bytes(b'not an image')
    x = both_readers(tmp_path / 'set')
    assert len(x) == 2 and x[0].max() == 50 and x[1].max() == 60

def test_decode_names_the_file():
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, format='PNG')
    assert decode_image(buf.getvalue(), 'x.png').shape == (3, 4, 4)
    with pytest.raises(ValueError, match=r'^dir/y\.png: cannot read image'):
        decode_image(b'garbage', 'dir/y.png')

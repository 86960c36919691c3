"""rtm_plugin.image_grid: the one grid writer behind the trainer's reals/fakes PNGs and rtm-analyze's sheets."""

import numpy as np
from PIL import Image

from rtm_plugin.image_grid import save_grid, tile

def images(n, c=3, size=2):
    return np.arange(n * c * size * size, dtype=np.uint8).reshape(n, c, size, size) + 1     # no zero pixel

def test_trainer_grid_is_upscaled_to_min_width_with_black_empty_cells(tmp_path):
    x = images(3)
    path = save_grid(tmp_path / 'g.png', x, cols=2, min_width=8)         # 2 x 2 px per image: scale 2
    got = np.asarray(Image.open(path))
    assert got.shape == (8, 8, 3)
    assert np.array_equal(got[:4, :4], x[0].transpose(1, 2, 0).repeat(2, 0).repeat(2, 1))
    assert np.array_equal(got[4:, :4], x[2].transpose(1, 2, 0).repeat(2, 0).repeat(2, 1))
    assert not got[4:, 4:].any()                                           # the cell after the last image

def test_sheet_tiles_have_white_gaps_and_gray_becomes_rgb():
    x = images(2, c=1)
    out = tile(x, cols=2, gap=1)
    assert out.shape == (2, 5, 3)
    assert (out[:, 2] == 255).all()                                        # the gap
    assert np.array_equal(out[:, :2, 0], x[0, 0]) and np.array_equal(out[:, :2, 2], x[0, 0])

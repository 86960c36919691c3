"""Image grids: uint8 images [N, C, H, W] tiled `cols` per row into one RGB array, and PNGs written atomically.
The trainer's reals/fakes grids and the analysis tools' sheets are both drawn here."""

import io

import numpy as np
from PIL import Image

from rtm_plugin.files import atomic_write

BACKGROUND = 255        # white between and around the analysis sheets' tiles
MIN_WIDTH = 512         # the trainer's grids are upscaled to at least this width

def upscale(images_u8, scale):
    """uint8 [N, C, H, W] -> [N, C, scale*H, scale*W], nearest neighbour (pixels stay visible)."""
    x = np.asarray(images_u8)
    return x.repeat(scale, axis=2).repeat(scale, axis=3) if scale > 1 else x

def tile(images_u8, cols, gap=2, background=BACKGROUND):
    """uint8 [N, C, H, W] (C = 1 or 3) -> one HWC RGB array, `cols` per row, `gap` background pixels between
    images; the cells after the last image are background too."""
    x = np.asarray(images_u8)
    if x.shape[1] == 1:
        x = x.repeat(3, axis=1)
    n, _, h, w = x.shape
    rows = -(-n // cols)
    out = np.full([rows * (h + gap) - gap, cols * (w + gap) - gap, 3], background, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, k * (w + gap):k * (w + gap) + w] = x[i].transpose(1, 2, 0)
    return out

def save_png(path, array, optimize=True):
    """An HWC uint8 array as a PNG at `path`, written atomically; returns the path."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format='PNG', optimize=optimize)
    return atomic_write(path, buf.getvalue())

def save_grid(path, images_u8, cols, min_width=MIN_WIDTH):
    """The trainer's sample grid: `cols` images per row, no gaps, black empty cells, upscaled by an integer factor
    to be at least min_width pixels wide (tiny images stay crisp squares)."""
    x = np.asarray(images_u8)
    scale = max(1, -(-min_width // (cols * x.shape[3])))
    return save_png(path, tile(upscale(x, scale), cols, gap=0, background=0), optimize=False)

"""Image grids as PNG, written atomically, at least MIN_WIDTH pixels wide (tiny images are upscaled with
nearest-neighbour, so each pixel stays a crisp square)."""

import io

import numpy as np
from PIL import Image

from rtm_plugin.cache import atomic_write_bytes

MIN_WIDTH = 512

def save_grid(path, images_u8, cols, min_width=MIN_WIDTH):
    """uint8 [N, C, H, W] (C = 1 or 3) -> one PNG, `cols` images per row, upscaled by an integer factor to
    be at least min_width pixels wide."""
    x = np.asarray(images_u8)
    n, c, h, w = x.shape
    rows = -(-n // cols)
    canvas = np.zeros([rows * h, cols * w, c], dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        canvas[r * h:(r + 1) * h, k * w:(k + 1) * w] = x[i].transpose(1, 2, 0)
    scale = max(1, -(-min_width // (cols * w)))
    if scale > 1:
        canvas = canvas.repeat(scale, axis=0).repeat(scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(canvas[..., 0] if c == 1 else canvas).save(buf, format='PNG')
    atomic_write_bytes(path, buf.getvalue())

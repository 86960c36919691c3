"""The one image decoder behind the trainer's dataset loader and rtm-eval: one file's bytes -> uint8 [3, H, W] RGB.

- Colour: grayscale ('L', '1', 16-bit) is replicated to three channels; palette images are converted; an alpha
  channel (RGBA, LA, transparent palettes) is composited onto white.
- Depth: 16-bit images are scaled to 8 bits by round(v * 255 / 65535) (Pillow itself reduces 16-bit RGB PNGs to
  their high byte, so those differ from it by at most 1). Float images ('F', e.g. a float TIFF) must hold values
  in [0, 1] and are scaled by 255; other float ranges and 32-bit integer images are refused, because their scale
  cannot be known. Clipping them would give silently wrong pixels (a float image in [0, 1] read as black).
Size and resizing are the caller's business.
"""

import io
import os

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff', '.gif', '.ppm', '.pgm')
SIXTEEN_BIT_FORMATS = ('PNG', 'PPM')      # formats whose 'I' mode is 16-bit data (Pillow opens 16-bit PGM as 'I')

def is_image(name):
    """An image file name by its extension; hidden files ('.DS_Store', '._x.png') are not."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and not os.path.basename(name).startswith('.')

def _composite_on_white(img):
    rgba = img.convert('RGBA')
    background = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert('RGB')

def _gray_to_8bit(img):
    """A one-channel image of more than 8 bits (modes I;16*, I, F) as uint8 [H, W], or ValueError."""
    a = np.asarray(img)
    if img.mode.startswith('I;16') or (img.mode == 'I' and img.format in SIXTEEN_BIT_FORMATS):
        return np.round(a.astype(np.float64) * (255 / 65535)).astype(np.uint8)
    if img.mode == 'F':
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        if not np.isfinite(a).all() or lo < 0 or hi > 1:
            raise ValueError(f'a float image with values in [{lo:g}, {hi:g}]; only [0, 1] has a known scale: '
                             'save it as 8- or 16-bit')
        return np.round(a.astype(np.float64) * 255).astype(np.uint8)
    raise ValueError(f'a {img.mode} ({img.format}) image of 32-bit integers, whose scale cannot be known: save it as '
                     '8- or 16-bit')

def to_rgb_array(img):
    """A PIL image -> uint8 [H, W, 3] by the rules in the module docstring."""
    if img.mode == 'P':
        img = img.convert('RGBA' if 'transparency' in img.info else 'RGB')
    if img.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La'):
        img = _composite_on_white(img)
    elif img.mode.startswith('I') or img.mode == 'F':
        img = Image.fromarray(_gray_to_8bit(img), 'L')
    if img.mode != 'RGB':
        img = img.convert('RGB')
    return np.asarray(img, dtype=np.uint8)

def decode_image(data, name):
    """The encoded file `data` (bytes) -> uint8 [3, H, W]; ValueError naming `name` when it cannot be read right."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.ascontiguousarray(to_rgb_array(img).transpose(2, 0, 1))
    except Exception as e:
        hint = ''
        if os.path.splitext(name)[1].lower() in ('.tif', '.tiff') and 'identify' in str(e):
            hint = ' (Pillow reads no multi-channel float or 32-bit TIFF; save it as 8- or 16-bit)'
        raise ValueError(f'{name}: cannot read image ({type(e).__name__}: {e}){hint}') from None

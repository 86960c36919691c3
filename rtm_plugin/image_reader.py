"""The one image reader: one file's bytes -> uint8 [3, H, W] RGB (decode_image, which rtm-eval's image sets use
too), and a dataset (a folder, searched recursively, or a StyleGAN2-ADA dataset_tool.py zip) -> uint8
[N, 3, R, R] (load_images, iter_images: the trainer's loader, and the analysis tools' reader of a run's data).

Decoding one file:
- Colour: grayscale ('L', '1', 16-bit) is replicated to three channels; palette images are converted; an alpha
  channel (RGBA, LA, transparent palettes) is composited onto white.
- Depth: 16-bit images are scaled to 8 bits by round(v * 255 / 65535) (Pillow itself reduces 16-bit RGB PNGs to
  their high byte, so those differ from it by at most 1). Float images ('F', e.g. a float TIFF) must hold values
  in [0, 1] and are scaled by 255; other float ranges and 32-bit integer images are refused, because their scale
  cannot be known. Clipping them would give silently wrong pixels (a float image in [0, 1] read as black).

Reading a dataset:
- Size: images must be square. With `resolution` given, each is resized to it (Lanczos); without, the
  first image sets the resolution and an image of another size is an error naming it.
- Bad files: a file that cannot be decoded raises an error naming it; with skip_bad=True it is skipped
  and the skips are counted and reported. Files whose extension is not an image's (dataset.json,
  notes) are ignored. No image at all is an error.
Labels in a zip's dataset.json are ignored: the trainer is unconditional.
"""

import io
import os
import zipfile
import zlib
from dataclasses import dataclass, field

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

# ----------------------------------------------------------------------------------------------------------------
# Datasets

@dataclass
class ImageSet:
    images: np.ndarray                  # uint8 [N, 3, R, R]
    names: list                         # source names, in order
    skipped: list = field(default_factory=list)     # (name, reason) of skipped files

def resize(x, resolution):
    """uint8 [C, H, W] (C = 1 or 3) -> [C, resolution, resolution], Lanczos, for the trainer and the metrics alike."""
    if x.shape[1:] == (resolution, resolution):
        return x
    mode = 'L' if x.shape[0] == 1 else 'RGB'
    img = Image.fromarray(x[0] if mode == 'L' else x.transpose(1, 2, 0), mode)
    y = np.asarray(img.resize((resolution, resolution), Image.LANCZOS), dtype=np.uint8)
    return y[None] if mode == 'L' else y.transpose(2, 0, 1)

def _decode_square(name, data, resolution):
    x = decode_image(data, name)
    h, w = x.shape[1:]
    if w != h:
        raise ValueError(f'{name}: image is {w}x{h}, not square; crop it to a square first')
    return x if resolution is None else resize(x, resolution)

def image_members(path):
    """The image files of a folder (searched recursively) or a zip, sorted by name: ('folder', [paths relative to
    it]) or ('zip', [ZipInfo]); None when `path` is neither. The trainer's and the metrics' image sets alike."""
    if os.path.isdir(path):
        return 'folder', sorted(os.path.relpath(os.path.join(root, f), path)
                                for root, _, files in os.walk(path) for f in files if is_image(f))
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return 'zip', sorted((i for i in z.infolist() if not i.is_dir() and is_image(i.filename)),
                                 key=lambda i: i.filename)
    return None

def list_sources(path):
    """[(name, read_bytes)] in a fixed (sorted) order."""
    found = image_members(path)
    if found is not None and found[0] == 'folder':
        return [(os.path.join(path, n), (lambda p=os.path.join(path, n): open(p, 'rb').read())) for n in found[1]]
    if found is not None:
        zf = zipfile.ZipFile(path)
        return [(f'{path}:{i.filename}', (lambda i=i: zf.read(i))) for i in found[1]]
    if os.path.isfile(path):
        raise ValueError(f'{path}: not a folder of images or a zip archive')
    raise FileNotFoundError(f'dataset not found: {path}')

def iter_images(path, resolution=None, skip_bad=False, max_images=None, skipped=None):
    """Yield (name, uint8 [3, R, R]) one image at a time, as load_images reads them (so a caller can write them
    somewhere without holding the dataset); files skipped under skip_bad are appended to `skipped`."""
    if resolution is not None and (not isinstance(resolution, int) or resolution < 1):
        raise ValueError(f'resolution must be a positive integer, got {resolution!r}')
    sources = list_sources(path)
    if not sources:
        raise ValueError(f'{path}: no images found (looked for {", ".join(IMAGE_EXTENSIONS)})')
    skipped = [] if skipped is None else skipped
    first, count = None, 0
    for name, read in sources:
        if max_images is not None and count >= max_images:
            break
        try:
            try:
                data = read()
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:     # a bad CRC is a BadZipFile
                raise ValueError(f'{name}: cannot read file ({e})') from None
            x = _decode_square(name, data, resolution)
            if first is not None and x.shape != first[1]:
                raise ValueError(f'{name}: image is {x.shape[2]}x{x.shape[1]} but {first[0]} is '
                                 f'{first[1][2]}x{first[1][1]}; pass a resolution to resize all')
        except ValueError as e:
            if not skip_bad:
                raise
            skipped.append((name, str(e)))
            continue
        if first is None:
            first = (name, x.shape)
        count += 1
        yield name, x
    if count == 0:
        raise ValueError(f'{path}: none of {len(sources)} image files could be read '
                         f'(first error: {skipped[0][1] if skipped else "none"})')

def load_images(path, resolution=None, skip_bad=False, max_images=None):
    """Read a dataset into an ImageSet; see the module docstring for what is accepted."""
    skipped = []
    names, images = [], []
    for name, x in iter_images(path, resolution, skip_bad, max_images, skipped):
        names.append(name)
        images.append(x)
    return ImageSet(np.stack(images), names, skipped)

"""Training images from a folder (recursive) or a StyleGAN2-ADA dataset_tool.py zip, held in memory as
uint8 [N, 3, R, R].

- Colour and depth: each file is decoded by rtm_plugin.image_reader.decode_image, the reader rtm-eval uses too:
  RGB out, grayscale replicated, alpha composited onto white, 16-bit scaled to 8, float images in [0, 1] scaled.
- Size: images must be square. With `resolution` given, each is resized to it (Lanczos); without, the
  first image sets the resolution and an image of another size is an error naming it.
- Bad files: a file that cannot be decoded raises an error naming it; with skip_bad=True it is skipped
  and the skips are counted and reported. Files whose extension is not an image's (dataset.json,
  notes) are ignored. No image at all is an error.
Labels in a zip's dataset.json are ignored: the trainer is unconditional.
"""

import os
import zipfile
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from rtm_plugin.image_reader import IMAGE_EXTENSIONS, decode_image, is_image  # noqa: F401  (IMAGE_EXTENSIONS is public here)

@dataclass
class ImageSet:
    images: np.ndarray                  # uint8 [N, 3, R, R]
    names: list                         # source names, in order
    skipped: list = field(default_factory=list)     # (name, reason) of skipped files

def _decode(name, data, resolution):
    x = decode_image(data, name)
    h, w = x.shape[1:]
    if w != h:
        raise ValueError(f'{name}: image is {w}x{h}, not square; crop it to a square first')
    if resolution is not None and w != resolution:
        img = Image.fromarray(x.transpose(1, 2, 0)).resize((resolution, resolution), Image.LANCZOS)
        x = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
    return x

def _list_sources(path):
    """[(name, read_bytes)] in a fixed (sorted) order."""
    if os.path.isdir(path):
        names = sorted(os.path.relpath(os.path.join(root, f), path)
                       for root, _, files in os.walk(path) for f in files)
        return [(os.path.join(path, n), (lambda p=os.path.join(path, n): open(p, 'rb').read()))
                for n in names if is_image(n)]
    if zipfile.is_zipfile(path):
        zf = zipfile.ZipFile(path)
        names = sorted(n for n in zf.namelist() if not n.endswith('/') and is_image(n))
        return [(f'{path}:{n}', (lambda n=n: zf.read(n))) for n in names]
    if os.path.isfile(path):
        raise ValueError(f'{path}: not a folder of images or a zip archive')
    raise FileNotFoundError(f'dataset not found: {path}')

def iter_images(path, resolution=None, skip_bad=False, max_images=None, skipped=None):
    """Yield (name, uint8 [3, R, R]) one image at a time, as load_images reads them (so a caller can write them
    somewhere without holding the dataset); files skipped under skip_bad are appended to `skipped`."""
    if resolution is not None and (not isinstance(resolution, int) or resolution < 1):
        raise ValueError(f'resolution must be a positive integer, got {resolution!r}')
    sources = _list_sources(path)
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
            except OSError as e:
                raise ValueError(f'{name}: cannot open file ({e})') from None
            x = _decode(name, data, resolution)
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

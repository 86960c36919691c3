"""Image sets from disk for rtm-eval: a folder (searched recursively), a zip (e.g. dataset_tool.py's), or a .npy array.

Every image is decoded with Pillow and converted to RGB (grayscale is repeated, alpha is dropped), so real and fake
sets always have matching channels. All images of a set must share one size; evaluation never resizes silently.
"""

import contextlib
import os
import zipfile

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = {'.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff', '.ppm'}

def _is_image(name):
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS

def _decode(open_fn, name):
    try:
        with open_fn() as f, Image.open(f) as img:
            return np.asarray(img.convert('RGB'))
    except Exception as e:
        raise ValueError(f'cannot read image {name}: {type(e).__name__}: {e}') from e

def _listing(source, stack):
    """[(display name, opener)] of the images in a folder or zip, in sorted order."""
    if os.path.isdir(source):
        paths = sorted(os.path.join(root, f) for root, _, files in os.walk(source) for f in files if _is_image(f))
        return [(p, lambda p=p: open(p, 'rb')) for p in paths]
    if zipfile.is_zipfile(source):
        archive = stack.enter_context(zipfile.ZipFile(source))
        names = sorted(n for n in archive.namelist() if _is_image(n))
        return [(f'{source}:{n}', lambda n=n: archive.open(n)) for n in names]
    raise ValueError(f'{source} is neither a folder, a zip nor a .npy file')

def read_images(source, max_images=None):
    """uint8 [N, 3, H, W] (or, for a .npy, the stored [N, C, H, W] uint8 array) from a folder, zip or .npy."""
    source = os.fspath(source)
    if not os.path.exists(source):
        raise FileNotFoundError(f'no such folder or file: {source}')
    if source.endswith('.npy'):
        return np.load(source, mmap_mode='r')[:max_images]
    images = []
    with contextlib.ExitStack() as stack:
        listing = _listing(source, stack)[:max_images]
        if not listing:
            raise ValueError(f'no images ({", ".join(sorted(IMAGE_EXTENSIONS))}) found in {source}')
        for name, open_fn in listing:
            img = _decode(open_fn, name)
            if images and img.shape != images[0].shape:
                raise ValueError(f'{name} is {img.shape[1]}x{img.shape[0]} but {listing[0][0]} is {images[0].shape[1]}'
                                 f'x{images[0].shape[0]}; all images of a set must share one size')
            images.append(img)
    return np.stack(images).transpose(0, 3, 1, 2)

"""Image sets for the metrics, read lazily in batches: a folder (searched recursively), a zip (dataset_tool.py's
among others), a .npy of uint8 [N, C, H, W], or an array already in memory.

Files are decoded one by one by rtm_plugin.image_reader.decode_image (the trainer's reader) in sorted order, so
a set of any size streams through a detector in bounded memory. All images of a set must share one size;
evaluation never resizes unless asked (`resolution=`, rtm-eval's --resize).

Every set has a fingerprint(), the key of the cached reference statistics: a hash of the pixels for arrays and
.npy files, of the members' names, CRC-32s and sizes for a zip, and of the files' relative names, sizes and
modification times for a folder (reading every file's bytes only to hash them would cost as much as decoding).
"""

import contextlib
import hashlib
import os
import zipfile

import numpy as np
import torch

from rtm_plugin.image_reader import IMAGE_EXTENSIONS, decode_image, image_members, resize

class ImageStream:
    """The interface: len(), shape (C, H, W), fingerprint(), batches(batch_size) -> uint8 numpy [B, C, H, W]."""

    name = 'images'
    resolution = None

    def __len__(self):
        return self.count

    def fingerprint(self):
        if getattr(self, '_fingerprint', None) is None:
            self._fingerprint = self._hash()
        return self._fingerprint

    def _finish(self, x):
        return resize(x, self.resolution) if self.resolution else x

class ArrayImages(ImageStream):
    """Images already in memory (numpy or torch, uint8 [N, C, H, W]); a .npy file is read through a memory map."""

    def __init__(self, array, name='images', max_images=None, resolution=None):
        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().numpy()
        array = np.asarray(array) if not isinstance(array, np.ndarray) else array
        if array.ndim != 4 or array.shape[1] not in (1, 3):
            raise ValueError(f'{name}: expected uint8 images [N, C, H, W] with C = 1 or 3, got shape {list(array.shape)}')
        if array.dtype != np.uint8:
            raise ValueError(f'{name}: expected uint8 images, got {array.dtype}; convert generator output in [-1, 1] '
                             'with (x * 127.5 + 128).clip(0, 255).astype(uint8)')
        self.array, self.name, self.resolution = array[:max_images], name, resolution
        self.count = len(self.array)
        if self.count == 0:
            raise ValueError(f'{name}: no images')
        self.shape = (array.shape[1], resolution, resolution) if resolution else tuple(array.shape[1:])

    def _hash(self):
        h = hashlib.sha1(repr((self.array.shape, str(self.array.dtype))).encode())
        for i in range(0, self.count, 1024):
            h.update(np.ascontiguousarray(self.array[i:i + 1024]).tobytes())
        return h.hexdigest()

    def batches(self, batch_size):
        for i in range(0, self.count, batch_size):
            # a copy: a .npy's memory map is read-only, and torch.from_numpy warns about every such array
            x = np.array(self.array[i:i + batch_size])
            yield np.stack([self._finish(y) for y in x]) if self.resolution else x

class FileImages(ImageStream):
    """The image files of a folder or zip, decoded lazily."""

    def __init__(self, source, max_images=None, resolution=None):
        self.name, self.resolution = source, resolution
        found = image_members(source)
        if found is None:
            raise ValueError(f'{source} is neither a folder, a zip, a .npy nor a .npz statistics file')
        kind, members = found
        self._zip = source if kind == 'zip' else None
        self._members = [(f'{source}:{i.filename}', i) if self._zip else (os.path.join(source, i), i)
                         for i in members[:max_images]]
        self.count = len(self._members)
        if self.count == 0:
            raise ValueError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) found in {source}')
        self.shape = self._read(*self._members[0], archive=None).shape

    def _read(self, display, member, archive):
        try:
            if self._zip is None:
                with open(display, 'rb') as f:
                    data = f.read()
            elif archive is None:
                with zipfile.ZipFile(self._zip) as z:
                    data = z.read(member)
            else:
                data = archive.read(member)
        except (OSError, zipfile.BadZipFile, EOFError) as e:      # a bad CRC is a BadZipFile
            raise ValueError(f'{display}: cannot read the file ({type(e).__name__}: {e})') from None
        return self._finish(decode_image(data, display))

    def _hash(self):
        h = hashlib.sha1(b'zip' if self._zip else b'folder')
        for display, member in self._members:
            if self._zip:
                h.update(repr((member.filename, member.CRC, member.file_size)).encode())
            else:
                st = os.stat(display)
                h.update(repr((member, st.st_size, st.st_mtime_ns)).encode())
        return h.hexdigest()

    def batches(self, batch_size):
        with contextlib.ExitStack() as stack:
            archive = stack.enter_context(zipfile.ZipFile(self._zip)) if self._zip else None
            first = self._members[0][0]
            batch = []
            for display, member in self._members:
                x = self._read(display, member, archive)
                if x.shape != self.shape:
                    raise ValueError(f'{display} is {x.shape[2]}x{x.shape[1]} but {first} is {self.shape[2]}x'
                                     f'{self.shape[1]}; all images of a set must share one size')
                batch.append(x)
                if len(batch) == batch_size:
                    yield np.stack(batch)
                    batch = []
            if batch:
                yield np.stack(batch)

def open_images(source, max_images=None, resolution=None, name=None):
    """An ImageStream for a path (folder, zip, .npy) or an array; `resolution` resizes every image to it (Lanczos)."""
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return ArrayImages(source, name or 'images', max_images, resolution)
    source = os.fspath(source)
    if not os.path.exists(source):
        raise FileNotFoundError(f'no such folder or file: {source}')
    if source.endswith('.npy'):
        return ArrayImages(np.load(source, mmap_mode='r'), source, max_images, resolution)
    return FileImages(source, max_images, resolution)

def read_images(source, max_images=None):
    """uint8 [N, 3, H, W] (or, for a .npy, the stored [N, C, H, W] uint8 array) from a folder, zip or .npy."""
    source = os.fspath(source)
    if source.endswith('.npy') and os.path.exists(source):
        return np.load(source, mmap_mode='r')[:max_images]
    images = open_images(source, max_images)
    return np.concatenate(list(images.batches(256)))

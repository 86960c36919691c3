"""One copy of the training images per node: the dataset decoded once into a uint8 file that every rank
memory-maps read-only.

Under torchrun, local rank 0 of each node decodes (image by image, through data.iter_images, so the decoder never
holds the dataset) and writes `<cache>/<key>/images.u8` and then `meta.json`; the other ranks wait at a barrier
and open the same file with numpy.memmap(mode='r'). The pages live once in the node's page cache, whatever the
number of ranks. A dataset larger than the memory available still trains: its pages stream from the file (keep
the cache on a local disk then). A cache folder without room for the file stops with the size it needs.

The key is a sha1 of the source's identity (path; each file's name, size and mtime for a folder, the archive's
size and mtime for a zip) and of what decoding depends on (resolution, max_images, skip_bad), so an edited dataset
is decoded again and an unchanged one is reused by later runs. The cache folder is $RTM_IMLE_DATA_CACHE, else
<rtm_plugin cache root>/imle-data ($RTM_CACHE_DIR, else ~/.cache/rtm_plugin); point it at node-local storage
(e.g. $SLURM_TMPDIR or /tmp) on a cluster.
"""

import hashlib
import json
import os
import shutil
from dataclasses import dataclass

import numpy as np

from rtm_plugin.files import atomic_write, cache_dir
from rtm_plugin.image_reader import ImageSet, iter_images, list_sources
from rtm_plugin.imle import distributed as D

FORMAT = 1                  # bump when the decoded bytes of the same source would change
DATA_FILE, META_FILE = 'images.u8', 'meta.json'

@dataclass
class CachedImageSet(ImageSet):
    file: str = None            # the memory-mapped file
    created: bool = False       # whether this process decoded and wrote it
    nbytes: int = 0

def cache_root():
    return os.environ.get('RTM_IMLE_DATA_CACHE') or str(cache_dir('imle-data'))

def source_key(path, resolution=None, skip_bad=False, max_images=None):
    """sha1 naming the decoded form of `path` under these settings (see the module docstring)."""
    path = os.path.abspath(path)
    h = hashlib.sha1(json.dumps(dict(format=FORMAT, path=path, resolution=resolution, skip_bad=bool(skip_bad),
                                     max_images=max_images)).encode())
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for f in sorted(files):
                st = os.stat(os.path.join(root, f))
                h.update(f'{os.path.relpath(os.path.join(root, f), path)}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
    elif os.path.exists(path):
        st = os.stat(path)
        h.update(f'{st.st_size}\0{st.st_mtime_ns}'.encode())
    else:
        raise FileNotFoundError(f'dataset not found: {path}')
    return h.hexdigest()

def _size(n):
    for unit, scale in (('GiB', 2**30), ('MiB', 2**20), ('KiB', 2**10)):
        if n >= scale:
            return f'{n / scale:.1f} {unit}'
    return f'{n} bytes'

def memory_available():
    """Bytes of memory the kernel could give now (MemAvailable), else physical memory; None if unknown."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    except (ValueError, OSError, AttributeError):
        return None

def _complete(folder):
    meta_path = os.path.join(folder, META_FILE)
    if not os.path.exists(meta_path):
        return None
    meta = json.load(open(meta_path))
    data_path = os.path.join(folder, DATA_FILE)
    if not os.path.exists(data_path) or os.path.getsize(data_path) != int(np.prod(meta['shape'])):
        return None
    return meta

def _write(folder, path, resolution, skip_bad, max_images):
    """Decode `path` image by image into folder/images.u8, then write meta.json (its presence marks completion)."""
    skipped, names, state = [], [], {}

    def fill(f):
        for name, x in iter_images(path, resolution, skip_bad, max_images, skipped):
            if not names:
                state['shape'] = x.shape
                free = shutil.disk_usage(folder).free + f.tell()
                limit = max_images or _count_sources(path)
                need = limit * x.nbytes
                if need > free:
                    raise ValueError(f'{path}: decoded, the dataset needs up to {_size(need)} ({limit} images of '
                                     f'{"x".join(map(str, x.shape))} uint8) but {folder} has {_size(free)} free; '
                                     f'set RTM_IMLE_DATA_CACHE to a larger disk')
            f.write(np.ascontiguousarray(x).tobytes())
            names.append(name)
    try:
        atomic_write(os.path.join(folder, DATA_FILE), fill)
    except BaseException:
        if os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)                # a dataset that fails to decode leaves no empty cache entry
        raise
    meta = dict(format=FORMAT, source=os.path.abspath(path), shape=[len(names), *state['shape']], names=names,
                skipped=skipped, resolution=resolution, skip_bad=bool(skip_bad), max_images=max_images)
    atomic_write(os.path.join(folder, META_FILE), json.dumps(meta))
    return meta

def _count_sources(path):
    return len(list_sources(path))

def load_images_shared(path, resolution=None, skip_bad=False, max_images=None, log=print, root=None):
    """The dataset as a read-only uint8 memmap [N, 3, R, R] (a CachedImageSet), decoded at most once per node.

    Call it on every rank (after the process group is up, when WORLD_SIZE > 1): local rank 0 writes the file if
    it is missing, every rank waits at a barrier, then every rank maps the same file.
    """
    if int(os.environ.get('WORLD_SIZE', '1')) > 1 and D.world_size() == 1:
        raise RuntimeError('load_images_shared under torchrun needs the process group first '
                           '(rtm_plugin.imle.distributed.init_from_env)')
    folder = os.path.join(root or cache_root(), source_key(path, resolution, skip_bad, max_images))
    created = False
    if D.local_rank() == 0 and _complete(folder) is None:
        log(f'{path}: decoding once into {folder} (later runs and the other ranks on this node reuse it)')
        _write(folder, path, resolution, skip_bad, max_images)
        created = True
    D.long_barrier()
    meta = _complete(folder)
    if meta is None:
        raise ValueError(f'{folder}: the decoded dataset is missing or incomplete after local rank 0 wrote it; '
                         f'is RTM_IMLE_DATA_CACHE on storage this process can see?')
    data_path = os.path.join(folder, DATA_FILE)
    images = np.memmap(data_path, dtype=np.uint8, mode='r', shape=tuple(meta['shape']))
    nbytes = int(images.nbytes)
    available = memory_available()
    if available is not None and nbytes > available:
        log(f'{path}: {_size(nbytes)} decoded, more than the {_size(available)} of memory available: pages stream '
            f'from {data_path} (keep it on a fast local disk)')
    return CachedImageSet(images, meta['names'], [tuple(s) for s in meta['skipped']], file=data_path,
                          created=created, nbytes=nbytes)

"""rtm-imle-prepare: write a StyleGAN2-ADA dataset zip (dataset_tool.py's layout) for the paper's data sets.

Sources:
- CIFAR-10: the standard python tarball, cifar-10-python.tar.gz (cifar-10-batches-py/data_batch_1..5 for the
  training split, test_batch for the test split; pickles with b'data' uint8 [N, 3072] and b'labels');
- a folder of images (CelebA-HQ, the few-shot sets), searched recursively in sorted order.

The zip holds uncompressed PNGs at '00000/img00000000.png', '00000/img00000001.png', ... and a dataset.json
{"labels": [[name, label], ...]} (CIFAR-10) or {"labels": null} (folders), as upstream's dataset_tool.py writes.
Nothing is downloaded unless --download is given with a URL.
"""

import hashlib
import io
import json
import os
import pickle
import tarfile
import urllib.request
import zipfile

import click
import numpy as np
from PIL import Image

from rtm_plugin import __version__
from rtm_plugin.files import atomic_write
from rtm_plugin.image_reader import IMAGE_EXTENSIONS, image_members, to_rgb_array

CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
CIFAR10_MD5 = 'c58f30108f718f92721af3b95e74349a'       # of the file at CIFAR10_URL
CIFAR10_MEMBERS = {'train': [f'data_batch_{i}' for i in range(1, 6)], 'test': ['test_batch']}

def is_cifar10_tarball(path):
    if not (os.path.isfile(path) and tarfile.is_tarfile(path)):
        return False
    with tarfile.open(path) as tar:
        return any(n.endswith('cifar-10-batches-py/data_batch_1') for n in tar.getnames())

def read_cifar10(path, split='train'):
    """(uint8 images [N, 32, 32, 3], int labels [N]) of a split of the CIFAR-10 python tarball."""
    images, labels = [], []
    with tarfile.open(path) as tar:
        names = {os.path.basename(n): n for n in tar.getnames() if '/cifar-10-batches-py/' in '/' + n}
        for member in CIFAR10_MEMBERS[split]:
            if member not in names:
                raise ValueError(f'{path}: no cifar-10-batches-py/{member} in the tarball')
            with tar.extractfile(names[member]) as f:
                batch = pickle.load(f, encoding='bytes')
            batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
            data = np.asarray(batch['data'], dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3072 or len(batch['labels']) != len(data):
                raise ValueError(f'{path}: {member} holds data {list(data.shape)} and {len(batch["labels"])} labels, '
                                 f'expected [N, 3072] and N')
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(np.asarray(batch['labels'], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)

def folder_images(path, resolution=None, transform=None):
    """Yield (name, uint8 [R, R, 3]) for each image file under path, sorted; see the module docstring."""
    names = image_members(path)[1]                     # the files the trainer would read, in its order
    if not names:
        raise ValueError(f'{path}: no images found (looked for {", ".join(IMAGE_EXTENSIONS)})')
    size = resolution
    for name in names:
        try:
            with Image.open(os.path.join(path, name)) as img:
                img = Image.fromarray(to_rgb_array(img))   # as the trainer decodes: alpha on white, 16-bit scaled
        except Exception as e:
            raise ValueError(f'{os.path.join(path, name)}: cannot read image ({type(e).__name__}: {e})') from None
        w, h = img.size
        if w != h:
            if transform != 'center-crop':
                raise ValueError(f'{os.path.join(path, name)}: image is {w}x{h}, not square; '
                                 f'pass --transform center-crop')
            c = min(w, h)
            img = img.crop(((w - c) // 2, (h - c) // 2, (w - c) // 2 + c, (h - c) // 2 + c))
        size = size or img.size[0]
        if img.size[0] != size:
            img = img.resize((size, size), Image.LANCZOS)
        yield name, np.asarray(img, dtype=np.uint8)

def write_dataset_zip(dest, images, labels=None):
    """Write (uint8 [R, R, 3]) images as dataset_tool.py does; atomic (rtm_plugin.files). Returns N."""
    names = []

    def write(f):
        shape = None
        with zipfile.ZipFile(f, 'w', compression=zipfile.ZIP_STORED) as zf:
            for idx, img in enumerate(images):
                if shape is None:
                    shape = img.shape
                    if shape[0] != shape[1] or shape[0] & (shape[0] - 1):
                        raise ValueError(f'images must be square with a power-of-two size, got {shape[1]}x{shape[0]}')
                elif img.shape != shape:
                    raise ValueError(f'image {idx} is {img.shape[1]}x{img.shape[0]}, the first is {shape[1]}x{shape[0]}')
                name = f'{idx:08d}'[:5] + f'/img{idx:08d}.png'
                buf = io.BytesIO()
                Image.fromarray(img, 'RGB').save(buf, format='png', compress_level=0, optimize=False)
                zf.writestr(name, buf.getvalue())
                names.append(name)
            if not names:
                raise ValueError('no images to write')
            meta = {'labels': None if labels is None else [[n, int(l)] for n, l in zip(names, labels)]}
            zf.writestr('dataset.json', json.dumps(meta))
    atomic_write(os.path.abspath(dest), write)
    return len(names)

def download(url, folder, md5=None):
    """Fetch url (http(s) or file://) into folder, atomically; check md5 when given. Returns the local path."""
    path = os.path.join(folder, os.path.basename(url.split('?')[0]) or 'download')

    def write(f):
        digest = hashlib.md5()
        with urllib.request.urlopen(url) as response:
            for block in iter(lambda: response.read(1 << 20), b''):
                digest.update(block)
                f.write(block)
        if md5 is not None and digest.hexdigest() != md5:
            raise ValueError(f'{url}: md5 {digest.hexdigest()}, expected {md5}')
    atomic_write(path, write)
    return path

@click.command(context_settings=dict(help_option_names=['-h', '--help'], show_default=True))
@click.version_option(__version__)
@click.option('--source', required=True, help='cifar-10-python.tar.gz, or a folder of images (with --download: a URL)')
@click.option('--dest', required=True, type=click.Path(dir_okay=False), help='Output .zip (dataset_tool.py layout)')
@click.option('--resolution', type=click.IntRange(min=1), help='Resize to this square size (Lanczos) [the first image]')
@click.option('--transform', type=click.Choice(['center-crop']), help='Crop non-square images to their centre square')
@click.option('--split', type=click.Choice(['train', 'test']), default='train', help='CIFAR-10 split')
@click.option('--max-images', type=click.IntRange(min=1), help='Stop after this many images')
@click.option('--download', 'download_', is_flag=True, help=f'Fetch --source from a URL first (e.g. {CIFAR10_URL})')
def main(source, dest, resolution, transform, split, max_images, download_):
    """Prepare a data set for rtm-imle --data.

    \b
    rtm-imle-prepare --source cifar-10-python.tar.gz --dest cifar10.zip
    rtm-imle-prepare --source celeba_hq_256/ --dest celebahq256.zip --resolution 256
    rtm-imle-prepare --source 100-shot-obama/ --dest obama.zip --resolution 256 --transform center-crop
    rtm-imle-prepare --download --source https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz --dest cifar10.zip
    """
    if not dest.lower().endswith('.zip'):
        raise click.UsageError(f'--dest {dest}: must end in .zip')
    try:
        if download_:
            if '://' not in source:
                raise click.UsageError(f'--download needs a URL in --source, got {source!r}')
            folder = os.path.dirname(os.path.abspath(dest))
            source = download(source, folder, md5=CIFAR10_MD5 if source == CIFAR10_URL else None)
            click.echo(f'downloaded {source}', err=True)
        if not os.path.exists(source):
            raise click.UsageError(f'--source {source}: no such file or folder')
        labels = None
        if os.path.isdir(source):
            images = (img for _, img in folder_images(source, resolution, transform))
        elif is_cifar10_tarball(source):
            images, labels = read_cifar10(source, split)
            if resolution and resolution != 32:
                images = [np.asarray(Image.fromarray(i).resize((resolution, resolution), Image.LANCZOS)) for i in images]
        else:
            raise click.UsageError(f'--source {source}: not a folder of images or the CIFAR-10 python tarball')
        if max_images:
            images = (img for img, _ in zip(images, range(max_images)))
            labels = None if labels is None else labels[:max_images]
        count = write_dataset_zip(dest, images, labels)
    except (ValueError, OSError) as e:
        raise click.ClickException(str(e))
    click.echo(f'{dest}: {count} images{"" if labels is None else ", with labels"}')

if __name__ == '__main__':
    main()

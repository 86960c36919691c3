"""Feature detectors for evaluate_images(): stylegan2-ada's TorchScript Inception and VGG16, and the offline digits.

'inception' and 'vgg16' are the very files stylegan2-ada's metrics download (same URLs), called as upstream calls
them: uint8 [N, 3, H, W] in, the module resizes internally; `return_features=True` gives the features (2048-d pool
features for Inception, 4096-d for VGG16), and Inception's `no_output_bias=True` gives the softmax used for IS.

Files are fetched like dnnlib.util.open_url: a local path or file:// URL is read in place; an http(s) URL is looked
up in <cache>/downloads/<md5(url)>_<name> (and in stylegan2-ada's own dnnlib cache, so an existing download is
reused), else downloaded with urllib and written atomically. The cache root is $RTM_CACHE_DIR or
~/.cache/rtm_plugin. Every detector offers features(images) -> [N, F], and probs(images) when has_probs.
"""

import glob
import hashlib
import os
import re
import shutil
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import torch

from rtm_plugin.files import atomic_write, cache_dir as resolve_cache_dir
from rtm_plugin.metrics.images import as_uint8_images, run_batched

DETECTOR_URLS = {
    'inception': 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt',
    'vgg16': 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt',
}
KNOWN_NAMES = ('digits', *DETECTOR_URLS)

class DetectorDownloadError(OSError):
    """A detector URL could not be fetched; the message says where to put the file by hand."""

def _is_url(s):
    return re.match('^[a-z][a-z0-9+.-]*://', s) is not None

def url_cache_path(url, cache_dir=None):
    """Where the download of `url` is cached: <cache>/downloads/<md5(url)>_<file name>."""
    md5 = hashlib.md5(url.encode('utf-8')).hexdigest()
    name = re.sub(r'[^0-9a-zA-Z._-]', '_', os.path.basename(urllib.parse.urlparse(url).path) or 'download')
    return resolve_cache_dir('downloads', root=cache_dir) / f'{md5}_{name}'

def _dnnlib_download(url):
    """A copy that stylegan2-ada's dnnlib already downloaded, if there is exactly one."""
    root = os.environ.get('DNNLIB_CACHE_DIR') or os.path.join(os.path.expanduser('~'), '.cache', 'dnnlib')
    md5 = hashlib.md5(url.encode('utf-8')).hexdigest()
    found = glob.glob(os.path.join(root, 'downloads', md5 + '_*'))
    return Path(found[0]) if len(found) == 1 else None

def fetch_file(url_or_path, cache_dir=None, num_attempts=3, timeout=60, verbose=True):
    """A local Path for a file path, a file:// URL, or an http(s) URL (downloaded once, then cached)."""
    s = str(url_or_path)
    if not _is_url(s) or s.startswith('file://'):
        path = Path(urllib.parse.unquote(urllib.parse.urlparse(s).path) if _is_url(s) else s).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f'detector file not found: {path}' + (f' (from {s})' if _is_url(s) else ''))
        return path
    cached = url_cache_path(s, cache_dir)
    if cached.is_file():
        return cached
    if (dnnlib_copy := _dnnlib_download(s)) is not None:
        return dnnlib_copy
    error = None
    if verbose:
        print(f'Downloading {s} ...', flush=True)
    for _ in range(num_attempts):
        try:
            with urllib.request.urlopen(s, timeout=timeout) as response:
                return atomic_write(cached, lambda f: shutil.copyfileobj(response, f))
        except OSError as e:  # URLError, HTTPError, timeouts and refused connections are all OSErrors
            error = e
    raise DetectorDownloadError(
        f'could not download {s} ({type(error).__name__}: {error}). This machine may be offline. Fetch the file '
        f'elsewhere and either pass its local path or a file:// URL as the detector, or copy it to {cached} '
        f'(set RTM_CACHE_DIR to move the cache).') from error

def detector_kind(name_or_path):
    """'inception', 'vgg16' or 'generic', from a known name or the file name of a path/URL."""
    stem = os.path.basename(urllib.parse.urlparse(str(name_or_path)).path).lower()
    for kind in DETECTOR_URLS:
        if stem.startswith(kind):
            return kind
    return 'generic'

class TorchScriptDetector:
    """A TorchScript detector with stylegan2-ada's call signature: module(uint8 [N, 3, H, W], return_features=True).

    Grayscale images are repeated to 3 channels, as upstream does. kind='inception' also has probs() (the
    1008-way softmax without output bias, upstream's is50k input); other kinds have features only.
    """

    def __init__(self, module, kind, device='cpu', source=None, cache_id=None):
        self.module, self.kind, self.device, self.source = module, kind, torch.device(device), source
        self.name = kind
        self.has_probs = kind == 'inception'
        self.cache_id = cache_id    # names the weights in cached reference statistics (kind + file hash)

    def _run(self, images, batch_size, **kwargs):
        images = as_uint8_images(images)
        return run_batched(lambda b: self.module(b.expand(-1, 3, -1, -1), **kwargs), images, batch_size, self.device)

    def features(self, images, batch_size=256):
        """FloatTensor [N, F]: the detector's features."""
        return self._run(images, batch_size, return_features=True)

    def probs(self, images, batch_size=256):
        """FloatTensor [N, K]: class probabilities (Inception only)."""
        if not self.has_probs:
            raise ValueError(f'the {self.kind} detector ({self.source}) has no class probabilities')
        return self._run(images, batch_size, no_output_bias=True)

def load_torchscript(path, device='cpu'):
    """torch.jit.load with a clear error for a file that is not TorchScript."""
    try:
        with warnings.catch_warnings():   # TorchScript is deprecated, but it is the format upstream ships
            warnings.filterwarnings('ignore', category=DeprecationWarning, message='.*torch.jit')
            return torch.jit.load(str(path), map_location=device).eval()
    except Exception as e:
        raise ValueError(f'{path} is not a loadable TorchScript detector ({type(e).__name__}: {e}); '
                         'if it is a partial download, delete it and fetch it again') from e

_loaded = {}

def load_detector(name_or_path, device='cpu', kind=None, cache_dir=None):
    """A detector by name ('digits', 'inception', 'vgg16'), local path, file:// or http(s) URL.

    kind: how to call a TorchScript file ('inception', 'vgg16' or 'generic'); by default it is read from the file
    name (inception-2015-12-05.pt -> 'inception'). cache_dir: the cache root (default $RTM_CACHE_DIR or
    ~/.cache/rtm_plugin), used for downloads and for the digit classifier's weights.
    """
    name = str(name_or_path)
    if name == 'digits':
        from rtm_plugin.metrics.digits import load_digit_classifier
        return load_digit_classifier(cache_dir=cache_dir, device=device)
    url = DETECTOR_URLS.get(name, name)
    if url == name and not _is_url(name) and not Path(name).expanduser().exists():
        raise FileNotFoundError(f'detector {name!r} is neither a known name ({", ".join(KNOWN_NAMES)}) '
                                'nor an existing file')
    kind = kind or detector_kind(url)
    if kind not in (*DETECTOR_URLS, 'generic'):
        raise ValueError(f'kind must be one of {", ".join(DETECTOR_URLS)} or generic, got {kind!r}')
    path = fetch_file(url, cache_dir=cache_dir)
    key = (str(path.resolve()), os.path.getmtime(path), kind, str(torch.device(device)))
    if key not in _loaded:
        _loaded[key] = TorchScriptDetector(load_torchscript(path, device), kind, device, source=url,
                                           cache_id=f'{kind}-{file_md5(path)}')
    return _loaded[key]

def file_md5(path):
    h = hashlib.md5()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()

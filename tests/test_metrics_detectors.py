"""Detectors loaded from a local TorchScript file the test writes: path, file:// URL, download cache, clear errors."""

import functools
import hashlib
import http.server
import os
import socket
import threading
import time
import warnings

import numpy as np
import pytest
import torch

from rtm_plugin.metrics import detectors
from rtm_plugin.metrics.detectors import DetectorDownloadError, load_detector, url_cache_path

class TinyInception(torch.nn.Module):
    """stylegan2-ada's detector call signature: uint8 [N, 3, H, W] in; features, or a softmax over 5 classes."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Linear(3, 4)
        self.logits = torch.nn.Linear(4, 5)

    def forward(self, img: torch.Tensor, return_features: bool = False, no_output_bias: bool = False):
        assert img.dtype == torch.uint8 and img.shape[1] == 3
        f = self.features(img.to(torch.float32).mean([2, 3]) / 255)
        if return_features:
            return f
        logits = self.logits(f) - self.logits.bias if no_output_bias else self.logits(f)
        return torch.softmax(logits, 1)

def write_detector(path):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.manual_seed(0)
        torch.jit.script(TinyInception()).save(str(path))
    return path

@pytest.fixture
def tiny(tmp_path):
    return write_detector(tmp_path / 'inception-2015-12-05.pt')

@pytest.fixture
def images():
    return torch.randint(0, 256, (10, 3, 12, 12), dtype=torch.uint8)

def expected_features(path, images):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        return torch.jit.load(str(path))(images, return_features=True)

def test_local_path_and_file_url_load_the_same_detector(tiny, images):
    by_path = load_detector(str(tiny))
    by_url = load_detector(tiny.as_uri())
    assert by_path.kind == by_url.kind == 'inception' and by_path.has_probs
    torch.testing.assert_close(by_path.features(images), expected_features(tiny, images))
    torch.testing.assert_close(by_url.features(images, batch_size=3), by_path.features(images))

def test_probs_use_no_output_bias_and_grayscale_is_repeated(tiny, images):
    det = load_detector(tiny)
    probs = det.probs(images)
    assert probs.shape == (10, 5)
    torch.testing.assert_close(probs.sum(1), torch.ones(10))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.testing.assert_close(probs, torch.jit.load(str(tiny))(images, no_output_bias=True))
    gray = images[:, :1]
    torch.testing.assert_close(det.features(gray), det.features(gray.repeat(1, 3, 1, 1)))

def test_kind_comes_from_the_file_name_or_the_argument(tmp_path, images):
    vgg = load_detector(write_detector(tmp_path / 'vgg16.pt'))
    assert vgg.kind == 'vgg16' and not vgg.has_probs
    assert vgg.features(images).shape == (10, 4)
    with pytest.raises(ValueError, match='no class probabilities'):
        vgg.probs(images)
    other = write_detector(tmp_path / 'my_detector.pt')
    assert load_detector(other).kind == 'generic'
    assert load_detector(other, kind='inception').has_probs
    with pytest.raises(ValueError, match='kind must be one of'):
        load_detector(other, kind='resnet')

class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

@pytest.fixture
def http_server(tmp_path):
    """A local web server for tmp_path/www: real downloads without a network."""
    www = tmp_path / 'www'
    www.mkdir()
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(QuietHandler, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()

def test_download_is_cached_atomically_and_reused_offline(http_server, tmp_path, images, capsys):
    www, base = http_server
    write_detector(www / 'inception-2015-12-05.pt')
    url, cache = f'{base}/inception-2015-12-05.pt', tmp_path / 'cache'
    det = load_detector(url, cache_dir=cache)
    cached = url_cache_path(url, cache)
    assert cached.name == hashlib.md5(url.encode()).hexdigest() + '_inception-2015-12-05.pt'
    assert cached.read_bytes() == (www / 'inception-2015-12-05.pt').read_bytes()
    assert os.listdir(cached.parent) == [cached.name]                     # no temporary file left behind
    assert 'Downloading' in capsys.readouterr().out
    (www / 'inception-2015-12-05.pt').unlink()                            # the server no longer has it
    detectors._loaded.clear()
    again = load_detector(url, cache_dir=cache)
    assert 'Downloading' not in capsys.readouterr().out
    torch.testing.assert_close(again.features(images), det.features(images))

def test_an_existing_dnnlib_download_is_reused(tmp_path, monkeypatch, tiny):
    url = detectors.DETECTOR_URLS['inception']
    dnnlib = tmp_path / 'dnnlib' / 'downloads'
    dnnlib.mkdir(parents=True)
    (dnnlib / (hashlib.md5(url.encode()).hexdigest() + '_inception-2015-12-05.pt')).write_bytes(tiny.read_bytes())
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'dnnlib'))
    assert load_detector('inception', cache_dir=tmp_path / 'empty').kind == 'inception'

def closed_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

def test_an_unreachable_url_fails_fast_naming_the_url_and_where_to_put_the_file(tmp_path):
    url = f'http://127.0.0.1:{closed_port()}/metrics/vgg16.pt'
    start = time.monotonic()
    with pytest.raises(DetectorDownloadError) as info:
        load_detector(url, cache_dir=tmp_path)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert url in message and str(url_cache_path(url, tmp_path)) in message and 'local path' in message
    assert not (tmp_path / 'downloads').exists() or not os.listdir(tmp_path / 'downloads')

def test_bad_names_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='neither a known name'):
        load_detector('inceptionv3')
    with pytest.raises(FileNotFoundError, match='not found'):
        load_detector((tmp_path / 'missing.pt').as_uri())
    junk = tmp_path / 'vgg16.pt'
    junk.write_bytes(b'<html>not a model</html>')
    with pytest.raises(ValueError, match='not a loadable TorchScript detector'):
        load_detector(junk)

def test_digits_is_the_offline_classifier(digits_cache):
    from rtm_plugin.metrics.digits import DigitClassifier
    assert isinstance(load_detector('digits', cache_dir=digits_cache), DigitClassifier)

def test_input_images_are_validated(tiny):
    det = load_detector(tiny)
    with pytest.raises(TypeError, match=r'uint8.*\(x \* 127\.5 \+ 128\)'):
        det.features(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match='NHWC'):
        det.features(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r'0\.\.255'):
        det.features(np.full((2, 3, 8, 8), 300, np.int16))
    assert det.features(np.full((2, 3, 8, 8), 200, np.int64)).shape == (2, 4)

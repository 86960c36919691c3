"""Shared fixtures, and the upstream checkouts of the integration tests (see upstream_trees.py)."""

import os
from pathlib import Path

import pytest

import upstream_trees

def pytest_addoption(parser):
    parser.addoption('--upstream', metavar='DIR', default=None,
                     help='folder of upstream snapshots (*.tar.gz + SHA256SUMS) that the integration tests run on '
                          '[default: ../shared/upstream beside the repository, when present]; "none": skip them')

def pytest_configure(config):
    """Before collection: the integration test modules read RTM_*_DIR when they are imported."""
    folder = config.getoption('upstream')
    if folder == 'none':
        config.rtm_upstream = 'upstream trees: not used (--upstream=none)'
        return
    if folder is not None and not Path(folder).is_dir():
        raise pytest.UsageError(f'--upstream={folder}: no such folder')
    try:
        config.rtm_upstream = upstream_trees.provide(folder)
    except upstream_trees.UpstreamError as err:
        raise pytest.UsageError(str(err)) from None

def pytest_report_header(config):
    return getattr(config, 'rtm_upstream', None)

@pytest.fixture(autouse=True, scope='session')
def imle_data_cache(tmp_path_factory):
    """rtm-imle --data decodes datasets into a cache folder (imle/datacache.py): keep the suite's out of $HOME."""
    os.environ['RTM_IMLE_DATA_CACHE'] = str(tmp_path_factory.mktemp('imle_data'))

@pytest.fixture(scope='session')
def digits_cache(tmp_path_factory):
    """A cache root holding the trained offline digit classifier: trained once per session, never in $HOME."""
    from rtm_plugin.metrics.digits import load_digit_classifier
    root = tmp_path_factory.mktemp('rtm_cache')
    load_digit_classifier(cache_dir=root)
    return root

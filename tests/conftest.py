"""Shared fixtures."""

import os

import pytest

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

"""Shared fixtures."""

import pytest

@pytest.fixture(scope='session')
def digits_cache(tmp_path_factory):
    """A cache root holding the trained offline digit classifier: trained once per session, never in $HOME."""
    from rtm_plugin.metrics.digits import load_digit_classifier
    root = tmp_path_factory.mktemp('rtm_cache')
    load_digit_classifier(cache_dir=root)
    return root

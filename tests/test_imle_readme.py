"""The README's RS-IMLE settings table is the one config.py generates, so the two cannot drift apart."""

import os

from rtm_plugin.imle.config import DEFAULT_RUN, FEWSHOT, OFFICIAL_SOURCES, settings_table

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'README.md')

def test_readme_settings_table_matches_config():
    text = open(README, encoding='utf-8').read()
    start = text.index('<!-- imle-config-table')
    body = text[text.index('\n', start) + 1:text.index('<!-- /imle-config-table -->')].strip()
    assert body == settings_table()

def test_official_sources_state_the_fewshot_values():
    for name, (value, _) in OFFICIAL_SOURCES.items():
        if name != 'map':                                       # the trainer defaults to RTM, the project's point
            assert getattr(FEWSHOT, name) == value, name
    assert FEWSHOT.map == 'rtm' and DEFAULT_RUN.map == 'rtm'

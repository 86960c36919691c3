"""The patch engine on synthetic checkouts (no upstream needed): all-or-nothing apply, byte-exact revert."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from rtm_plugin.patching import engine
from rtm_plugin.patching.engine import BOM, RECORD_DIR, PatchError
from rtm_plugin.patching.spec import AddFile, FilePatch, Insert, Replace, SpecError, Target
from rtm_plugin.patching.targets import load_target, resolve_target

REPO = Path(__file__).resolve().parents[1]

NETWORKS = BOM + (
    b'# a BOM file, as most upstream files are\n'
    b'class Mapping:\n'
    b'    def __init__(self):\n'
    b'        self.layers = 8\n'
)
TRAIN = b'import os\r\n\r\ndef main():\r\n    return 1\r\n'       # CRLF
OTHER = b'untouched = True\n'

def make_checkout(root: Path):
    (root / 'training').mkdir(parents=True)
    (root / 'training' / 'networks.py').write_bytes(NETWORKS)
    (root / 'train.py').write_bytes(TRAIN)
    (root / 'other.py').write_bytes(OTHER)
    os.chmod(root / 'train.py', 0o755)
    os.chmod(root / 'training' / 'networks.py', 0o640)
    return root

def make_target(home: Path, networks_anchor=r'^class Mapping:$', train_anchor=r'^def main\(\):$'):
    (home / 'extra.yaml').write_bytes(b'rtm: true\n')
    return Target(
        name='toy', identify=['train.py', 'training/networks.py'], home=home,
        changes=[
            FilePatch('training/networks.py', [
                Insert(networks_anchor, '# rtm-plugin: a comment before the class', why='comment'),
                Replace(r'(?<=self\.layers = )8$', '0 # rtm-plugin', why='no layers'),
                Insert(r'^        self\.layers', 'self.extra = 1', after=True, why='indented like the anchor line'),
            ]),
            FilePatch('train.py', [Insert(train_anchor, 'import sys # rtm-plugin', why='import')]),
            AddFile('configs/new/extra.yaml', 'extra.yaml', why='a shipped config'),
        ])

def snapshot(root: Path):
    out = {}
    for p in sorted(root.rglob('*')):
        if p.is_file():
            out[str(p.relative_to(root))] = (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        else:
            out[str(p.relative_to(root)) + '/'] = None
    return out

@pytest.fixture
def tree(tmp_path):
    root = make_checkout(tmp_path / 'checkout')
    (tmp_path / 'spec').mkdir()
    return root, make_target(tmp_path / 'spec')

#----------------------------------------------------------------------------

def test_apply_keeps_bom_crlf_and_modes_and_revert_is_byte_exact(tree):
    root, target = tree
    before = snapshot(root)
    outcome = engine.apply(root, target)
    assert outcome.changed and outcome.report.state == 'patched'

    networks = (root / 'training' / 'networks.py').read_bytes()
    assert networks.startswith(BOM) and networks.count(BOM) == 1
    assert networks.decode('utf-8-sig') == (
        '# a BOM file, as most upstream files are\n'
        '# rtm-plugin: a comment before the class\n'
        'class Mapping:\n'
        '    def __init__(self):\n'
        '        self.layers = 0 # rtm-plugin\n'
        '        self.extra = 1\n')
    assert (root / 'train.py').read_bytes() == b'import os\r\n\r\nimport sys # rtm-plugin\r\ndef main():\r\n    return 1\r\n'
    assert stat.S_IMODE((root / 'train.py').stat().st_mode) == 0o755
    assert stat.S_IMODE((root / 'training' / 'networks.py').stat().st_mode) == 0o640
    assert (root / 'configs' / 'new' / 'extra.yaml').read_bytes() == b'rtm: true\n'
    assert (root / 'other.py').read_bytes() == OTHER

    assert engine.revert(root).changed
    assert snapshot(root) == before     # bytes, modes, and no leftover folders or records

def test_reapply_is_a_no_op(tree):
    root, target = tree
    engine.apply(root, target)
    patched = snapshot(root)
    outcome = engine.apply(root, target)
    assert not outcome.changed and 'already patched' in outcome.message
    assert snapshot(root) == patched
    assert engine.check(root, target).state == 'patched'

@pytest.mark.parametrize('anchor, count', [(r'^class Nope:$', 0), (r'^ {4,8}\S', 2)])
def test_anchor_not_matching_exactly_once_names_file_and_anchor(tree, anchor, count):
    root, target = tree
    target = make_target(target.home, networks_anchor=anchor)
    before = snapshot(root)
    with pytest.raises(PatchError) as err:
        engine.apply(root, target)
    message = str(err.value)
    assert 'unknown-version' in message and 'training/networks.py' in message
    assert repr(anchor) in message and f'matches {count} times' in message
    assert snapshot(root) == before
    assert engine.check(root, target).state == 'unknown-version'

def test_second_file_anchor_missing_changes_nothing(tree):
    root, target = tree
    target = make_target(target.home, train_anchor=r'^def train\(\):$')
    before = snapshot(root)
    with pytest.raises(PatchError, match=r'train\.py: mismatch \(anchor #1 .* matches 0 times'):
        engine.apply(root, target)
    assert snapshot(root) == before

def test_write_failing_on_second_file_rolls_back(tree, monkeypatch):
    root, target = tree
    before = snapshot(root)
    writes = []
    def failing_write(path, data, mode):
        writes.append(path)
        if len(writes) == 2:
            raise OSError('disk full')
        engine.atomic_write(path, data, mode)
    monkeypatch.setattr(engine, 'write_file', failing_write)
    with pytest.raises(PatchError, match='disk full.*every file was put back'):
        engine.apply(root, target)
    assert len(writes) == 2
    assert snapshot(root) == before     # first file restored, no record, no temp files

def test_read_only_file_is_refused(tree):
    root, target = tree
    os.chmod(root / 'train.py', 0o444)
    before = snapshot(root)
    with pytest.raises(PatchError, match=r'train\.py: read-only \(mode 444\)'):
        engine.apply(root, target)
    assert snapshot(root) == before

def test_partially_patched_tree_is_refused_and_revert_repairs_it(tree):
    root, target = tree
    before = snapshot(root)
    engine.apply(root, target)
    (root / 'train.py').write_bytes(TRAIN)      # someone restored one file by hand
    report = engine.check(root, target)
    assert report.state == 'partial'
    assert {f.path: f.status for f in report.files}['train.py'] == 'reverted'
    partial = snapshot(root)
    with pytest.raises(PatchError, match='partial'):
        engine.apply(root, target)
    assert snapshot(root) == partial
    engine.revert(root)
    assert snapshot(root) == before

def test_edited_after_patching_blocks_revert(tree):
    root, target = tree
    engine.apply(root, target)
    with open(root / 'train.py', 'ab') as f:
        f.write(b'# my own change\n')
    edited = snapshot(root)
    with pytest.raises(PatchError, match=r'train\.py: changed since rtm-patch wrote it'):
        engine.revert(root)
    assert snapshot(root) == edited
    assert engine.check(root, target).state == 'partial'

def test_marker_without_record_is_foreign(tree):
    root, target = tree
    engine.apply(root, target)
    patched = (root / 'train.py').read_bytes()
    engine.revert(root)
    (root / 'train.py').write_bytes(patched)     # a patched file copied in from elsewhere
    report = engine.check(root, target)
    assert report.state == 'partial' and {f.path: f.status for f in report.files}['train.py'] == 'foreign'
    with pytest.raises(PatchError):
        engine.apply(root, target)

def test_changed_spec_is_outdated_but_still_reverts(tree):
    root, target = tree
    before = snapshot(root)
    engine.apply(root, target)
    (target.home / 'extra.yaml').write_bytes(b'rtm: false\n')      # a newer spec version
    assert engine.check(root, target).state == 'outdated'
    with pytest.raises(PatchError, match='another version'):
        engine.apply(root, target)
    engine.revert(root)
    assert snapshot(root) == before

def test_wrong_paths(tmp_path, tree):
    _, target = tree
    with pytest.raises(PatchError, match='no such folder'):
        engine.apply(tmp_path / 'nope', target)
    (tmp_path / 'file.txt').write_text('x')
    with pytest.raises(PatchError, match='not a folder'):
        engine.apply(tmp_path / 'file.txt', target)

def test_render_edge_cases():
    patch = FilePatch('a.py', [Insert(r'^last$', 'x = 1 # rtm-plugin', after=True)])
    assert engine.render(b'first\nlast', patch) == b'first\nlast\nx = 1 # rtm-plugin\n'
    mixed = b'a\r\nb\nc\n'          # mixed endings stay as they are
    patch = FilePatch('a.py', [Insert(r'^c$', 'y # rtm-plugin')])
    assert engine.render(mixed, patch) == b'a\r\nb\ny # rtm-plugin\nc\n'
    overlapping = FilePatch('a.py', [Replace(r'ab', 'X # rtm-plugin'), Replace(r'bc', 'Y')])
    with pytest.raises(PatchError, match='overlaps'):
        engine.render(b'abc\n', overlapping)
    with pytest.raises(PatchError, match='not UTF-8'):
        engine.render(b'\xff\xfe', patch)

def test_spec_validation():
    with pytest.raises(SpecError, match='marker'):
        FilePatch('a.py', [Insert('^x', 'y = 1')])
    with pytest.raises(SpecError, match='regular expression'):
        Insert('(', 'y # rtm-plugin')
    with pytest.raises(SpecError, match='relative path'):
        FilePatch('../a.py', [Insert('^x', 'y # rtm-plugin')])
    with pytest.raises(SpecError, match='changed twice'):
        Target('t', ['a.py'], [FilePatch('a.py', [Insert('^x', '# rtm-plugin')])] * 2)

#----------------------------------------------------------------------------
# The shipped stylegan2-ada-pytorch spec loads, and detection refuses folders it does not fit.

def test_shipped_target_loads_and_detection(tmp_path):
    target = load_target('stylegan2-ada-pytorch')
    assert target.home == REPO / 'patches' / 'stylegan2-ada-pytorch'
    assert len(target.digest()) == 64
    with pytest.raises(PatchError, match='does not look like a checkout of any known target'):
        resolve_target(tmp_path)
    with pytest.raises(PatchError, match='is not a stylegan2-ada-pytorch checkout: it lacks train.py'):
        resolve_target(tmp_path, 'stylegan2-ada-pytorch')
    with pytest.raises(PatchError, match="unknown target 'stylegan9'"):
        resolve_target(tmp_path, 'stylegan9')

def test_cli_reports_bad_input_without_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = lambda *args: subprocess.run([sys.executable, '-m', 'rtm_plugin.patching', *args], env=env,
                                       capture_output=True, text=True, timeout=120)
    result = run('apply', str(tmp_path / 'missing'))
    assert result.returncode == 2 and 'Error:' in result.stderr and 'no such folder' in result.stderr
    assert 'Traceback' not in result.stderr
    result = run('check', str(tmp_path))
    assert result.returncode == 2 and 'does not look like a checkout' in result.stderr
    result = run('targets')
    assert result.returncode == 0 and 'stylegan2-ada-pytorch' in result.stdout

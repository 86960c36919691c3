"""The patch engine against a crafted record, symbolic links, concurrent runs and a lost backup (issue 13, item 6).

The toy checkout and target are test_patching.py's. Every refusal must leave the checkout, and everything outside
it, byte for byte as it was.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from click.testing import CliRunner

from rtm_plugin.patching import cli as patch_cli
from rtm_plugin.patching import engine
from rtm_plugin.patching.engine import LOCK_FILE, RECORD_DIR, PatchError
from test_patching import NETWORKS, TRAIN, make_checkout, make_target, snapshot

REPO = Path(__file__).resolve().parents[1]

def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

@pytest.fixture
def tree(tmp_path):
    root = make_checkout(tmp_path / 'checkout')
    (tmp_path / 'spec').mkdir()
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'victim.txt').write_bytes(b'precious\n')
    return root, make_target(tmp_path / 'spec'), outside

def edit_record(root: Path, fn):
    path = root / RECORD_DIR / 'record.json'
    record = json.loads(path.read_text())
    fn(record)
    path.write_text(json.dumps(record))

#----------------------------------------------------------------------------
# A crafted record: nothing outside the checkout is deleted, overwritten or removed.

def crafted(kind, outside: Path):
    victim = outside / 'victim.txt'
    def craft(record):
        if kind == 'absolute-add':          # revert would delete it: its bytes match the "added" hash
            record['files'][str(victim)] = dict(op='add', patched_sha256=sha(victim.read_bytes()), mode=0o644)
        elif kind == 'dotdot-edit':         # revert would overwrite it with .rtm-patch/originals/../<...>
            rel = os.path.relpath(victim, outside.parent / 'checkout')
            record['files'][rel] = dict(op='edit', original_sha256=sha(b'evil\n'),
                                        patched_sha256=sha(victim.read_bytes()), mode=0o644)
        elif kind == 'dotdot-folder':       # revert would rmdir an empty folder outside
            (outside / 'empty').mkdir()
            record['created_folders'].append('../outside/empty')
        elif kind == 'git-folder':          # inside, but not ours to touch
            record['files']['.git/config'] = dict(op='add', patched_sha256=sha(b'x'), mode=0o644)
        elif kind == 'setuid-mode':
            record['files']['train.py']['mode'] = 0o4755
        elif kind == 'not-a-hash':
            record['files']['train.py']['patched_sha256'] = '../../x'
    return craft

@pytest.mark.parametrize('kind', ['absolute-add', 'dotdot-edit', 'dotdot-folder', 'git-folder', 'setuid-mode',
                                  'not-a-hash'])
def test_crafted_record_is_refused_and_nothing_changes(tree, kind):
    root, target, outside = tree
    engine.apply(root, target)
    (root / RECORD_DIR / 'outside').mkdir()     # originals/../outside/victim.txt, for 'dotdot-edit'
    (root / RECORD_DIR / 'outside' / 'victim.txt').write_bytes(b'evil\n')
    edit_record(root, crafted(kind, outside))
    inside, outside_before = snapshot(root), snapshot(outside)
    with pytest.raises(PatchError, match='unusable patch record') as err:
        engine.revert(root)
    assert '\n' not in str(err.value)
    assert snapshot(root) == inside and snapshot(outside) == outside_before

#----------------------------------------------------------------------------
# Symbolic links: never followed out of the checkout, never replaced by a regular file.

def test_folder_link_out_of_the_checkout_is_refused_by_apply(tree):
    root, target, outside = tree
    shutil.move(root / 'training', outside / 'training')
    os.symlink(outside / 'training', root / 'training')
    inside, outside_before = snapshot(root), snapshot(outside)
    with pytest.raises(PatchError, match=r'^training is a symbolic link .*replace the link'):
        engine.apply(root, target)
    with pytest.raises(PatchError, match='symbolic link'):
        engine.check(root, target)
    assert snapshot(root) == inside and snapshot(outside) == outside_before
    assert (outside / 'training' / 'networks.py').read_bytes() == NETWORKS

def test_folder_link_is_refused_by_revert(tree):
    root, target, outside = tree
    engine.apply(root, target)
    shutil.move(root / 'training', outside / 'training')      # the patched folder, moved out and linked back
    os.symlink(outside / 'training', root / 'training')
    inside, outside_before = snapshot(root), snapshot(outside)
    with pytest.raises(PatchError, match='training is a symbolic link'):
        engine.revert(root)
    assert snapshot(root) == inside and snapshot(outside) == outside_before

def test_file_link_is_refused_not_turned_into_a_file(tree):
    root, target, _ = tree
    (root / 'train.py').rename(root / 'real_train.py')
    os.symlink('real_train.py', root / 'train.py')
    before = snapshot(root)
    with pytest.raises(PatchError, match=r'^train\.py is a symbolic link \(-> real_train\.py\).*replace the link'):
        engine.apply(root, target)
    assert os.path.islink(root / 'train.py') and snapshot(root) == before

def test_file_link_made_after_apply_is_refused_by_revert(tree):
    root, target, _ = tree
    engine.apply(root, target)
    (root / 'train.py').rename(root / 'real_train.py')
    os.symlink('real_train.py', root / 'train.py')
    before = snapshot(root)
    with pytest.raises(PatchError, match=r'train\.py is a symbolic link'):
        engine.revert(root)
    assert os.path.islink(root / 'train.py') and snapshot(root) == before

def test_record_folder_as_link_is_refused(tree):
    root, target, outside = tree
    engine.apply(root, target)
    shutil.move(root / RECORD_DIR, outside / 'record')
    os.symlink(outside / 'record', root / RECORD_DIR)
    inside, outside_before = snapshot(root), snapshot(outside)
    with pytest.raises(PatchError, match=r'\.rtm-patch is a symbolic link'):
        engine.revert(root)
    assert snapshot(root) == inside and snapshot(outside) == outside_before

#----------------------------------------------------------------------------
# One writer at a time.

def test_second_apply_while_the_first_runs_fails_clearly(tree, monkeypatch):
    root, target, _ = tree
    before = snapshot(root)
    inside, release = threading.Event(), threading.Event()
    check_writable = engine._check_writable
    def slow_check(*args):                  # the first apply stops between inspecting and writing
        if not inside.is_set():
            inside.set()
            release.wait(30)
        check_writable(*args)
    monkeypatch.setattr(engine, '_check_writable', slow_check)
    results = {}
    def first():
        try:
            results['first'] = engine.apply(root, target)
        except Exception as err:            # pylint: disable=broad-except
            results['first'] = err
    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(30)
    try:
        with pytest.raises(PatchError, match=rf'^another rtm-patch \(pid {os.getpid()}\) is changing .* wait until'):
            engine.apply(root, target)
    finally:
        release.set()
        thread.join(30)
    assert isinstance(results['first'], engine.Outcome) and results['first'].changed
    assert engine.check(root, target).state == 'patched' and not (root / LOCK_FILE).exists()
    engine.revert(root)
    assert snapshot(root) == before

def test_stale_lock_file_is_taken_over_and_removed(tree):
    root, target, _ = tree
    (root / LOCK_FILE).write_text('999999999\n')        # left by a killed run: nobody holds its lock
    assert engine.apply(root, target).changed
    assert not (root / LOCK_FILE).exists()
    assert engine.revert(root).changed
    assert not (root / LOCK_FILE).exists()

TOY_SPEC = '''
from rtm_plugin.patching.spec import AddFile, FilePatch, Insert, Replace, Target
TARGET = Target(name='toy', identify=['train.py', 'training/networks.py'], changes=[
    FilePatch('training/networks.py', [
        Insert(r'^class Mapping:$', '# rtm-plugin: a comment before the class', why='comment'),
        Replace(r'(?<=self\\.layers = )8$', '0 # rtm-plugin', why='no layers'),
    ]),
    FilePatch('train.py', [Insert(r'^def main\\(\\):$', 'import sys # rtm-plugin', why='import')]),
    AddFile('configs/new/extra.yaml', 'extra.yaml', why='a shipped config'),
])
'''

@pytest.fixture
def cli(tmp_path, monkeypatch):
    """`rtm-patch ARGS` (in this process: a subprocess spends seconds importing torch), with a patches folder that
    holds only the toy target. Returns (exit code, stdout, stderr)."""
    specs = tmp_path / 'patches' / 'toy'
    specs.mkdir(parents=True)
    (specs / 'target.py').write_text(TOY_SPEC)
    (specs / 'extra.yaml').write_bytes(b'rtm: true\n')
    monkeypatch.setenv('RTM_PATCHES_DIR', str(tmp_path / 'patches'))
    def run(*args):
        result = CliRunner().invoke(patch_cli.main, [str(a) for a in args])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
        return result.exit_code, result.stdout, result.stderr
    run.env = dict(os.environ, PYTHONPATH=str(REPO), RTM_PATCHES_DIR=str(tmp_path / 'patches'))
    return run

def test_two_concurrent_apply_processes_exactly_one_succeeds(tmp_path, cli):
    root = make_checkout(tmp_path / 'checkout')
    before = snapshot(root)
    go = tmp_path / 'go'
    script = textwrap.dedent(f'''
        import os, sys, time
        from rtm_plugin.patching import cli, engine
        write = engine.write_file
        def slow_write(*args):              # a slow disk: the apply holds the checkout for 2 s
            if not slow_write.done:
                slow_write.done = True
                time.sleep(2)
            write(*args)
        slow_write.done = False
        engine.write_file = slow_write
        open(os.path.join({str(tmp_path)!r}, 'ready-' + sys.argv[1]), 'w').close()
        while not os.path.exists({str(go)!r}):     # both have imported: start together
            time.sleep(0.01)
        sys.argv = ['rtm-patch', 'apply', {str(root)!r}]
        cli.main()
    ''')
    procs = [subprocess.Popen([sys.executable, '-c', script, str(i)], env=cli.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f'ready-{i}').exists() for i in range(2)) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        outs.append((p.returncode, out, err))
    codes = sorted(code for code, _, _ in outs)
    assert codes == [0, 1], outs
    loser = next(err for code, _, err in outs if code == 1)
    assert loser.startswith('Error: another rtm-patch (pid ') and loser.count('\n') == 1, loser
    assert any('patched' in out for code, out, _ in outs if code == 0)
    assert cli('check', root)[0] == 0 and not (root / LOCK_FILE).exists()
    assert cli('revert', root)[0] == 0
    assert snapshot(root) == before

def test_cli_fails_in_one_line_while_the_lock_is_held(tmp_path, cli):
    root = make_checkout(tmp_path / 'checkout')
    before = snapshot(root)
    with engine.checkout_lock(root):
        code, out, err = cli('apply', root)
    assert code == 1 and out == ''
    assert err == (f'Error: another rtm-patch (pid {os.getpid()}) is changing {root} right now; wait '
                             f'until it has finished, then run this again\n')
    assert snapshot(root) == before

#----------------------------------------------------------------------------
# The backup is gone.

def test_revert_without_record_on_a_patched_tree_refuses(tree, cli):
    root, target, _ = tree
    engine.apply(root, target)
    shutil.rmtree(root / RECORD_DIR)
    patched = snapshot(root)
    with pytest.raises(PatchError, match=r'has rtm-patch edits or files \(training/networks\.py, train\.py, '
                                         r'configs/new/extra\.yaml\) but no \.rtm-patch/ record .*restore these'):
        engine.revert(root, target)
    assert snapshot(root) == patched
    code, _, err = cli('revert', root)          # the toy target is detected from the checkout
    assert code == 1 and err.count('\n') == 1 and 'no .rtm-patch/ record' in err
    assert snapshot(root) == patched

def test_revert_without_record_on_a_pristine_tree_is_a_no_op(tree, cli):
    root, target, _ = tree
    before = snapshot(root)
    outcome = engine.revert(root, target)
    assert not outcome.changed and 'nothing to do' in outcome.message
    code, out, _ = cli('revert', root)
    assert code == 0 and 'nothing to do' in out
    assert snapshot(root) == before

def test_missing_originals_is_one_line_and_changes_nothing(tree, cli):
    root, target, _ = tree
    engine.apply(root, target)
    shutil.rmtree(root / RECORD_DIR / 'originals')
    patched = snapshot(root)
    with pytest.raises(PatchError, match=r'training/networks\.py: its saved original \.rtm-patch/originals/'
                                         r'training/networks\.py is missing; train\.py: .*restore these files'):
        engine.revert(root)
    code, _, err = cli('revert', root)
    assert code == 1 and err.count('\n') == 1 and 'is missing' in err
    assert snapshot(root) == patched

#----------------------------------------------------------------------------
# Every CLI error: one line naming the problem and the fix; exit 2 for usage errors, 1 for refusals.

def test_cli_errors_are_one_line_with_usage_exit_codes(tmp_path, cli):
    root = make_checkout(tmp_path / 'checkout')
    (tmp_path / 'file.txt').write_text('x')
    (tmp_path / 'empty').mkdir()
    cases = [
        (2, ['apply', tmp_path / 'missing'], 'no such folder; give the path'),
        (2, ['revert', tmp_path / 'file.txt'], 'not a folder; give the checkout'),
        (2, ['check', tmp_path / 'empty'], 'does not look like a checkout of any known target'),
        (2, ['apply', root, '--target', 'stylegan9'], "unknown target 'stylegan9'; pass one of"),
        (2, ['revert', tmp_path / 'empty', '--target', 'toy'], 'is not a toy checkout: it lacks train.py'),
    ]
    for expected, args, message in cases:
        code, _, err = cli(*args)
        assert code == expected and err.startswith('Error: '), (args, err)
        assert err.count('\n') == 1 and message in err, (args, err)

    (root / 'train.py').write_bytes(TRAIN.replace(b'def main', b'def run'))     # another upstream version
    code, _, err = cli('apply', root)
    assert code == 1 and err.count('\n') == 1
    assert 'unknown-version (train.py: mismatch (anchor #1' in err and 'check out the upstream' in err
    (root / 'train.py').write_bytes(TRAIN)
    os.chmod(root / 'train.py', 0o444)
    code, _, err = cli('apply', root)
    assert code == 1 and err.count('\n') == 1 and 'make it writable first' in err

"""upstream_trees: the snapshots beside the repository, checked against SHA256SUMS, extracted once per checksum,
and the RTM_*_DIR variables of the integration tests set from them; a mismatch stops the suite before it starts."""

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import upstream_trees
from upstream_trees import UpstreamError, provide

REPO = Path(__file__).resolve().parents[1]
VARIABLES = ('RTM_SG2ADA_DIR', 'RTM_SG3_DIR', 'RTM_STUDIOGAN_DIR')

def make_snapshots(folder: Path, trees=(('stylegan3', 'abc1234'), ('PyTorch-StudioGAN', 'def5678'))):
    """Small archives laid out like ../shared/upstream, and their SHA256SUMS."""
    folder.mkdir()
    lines = []
    for project, commit in trees:
        name = f'{project}-{commit}.tar.gz'
        with tarfile.open(folder / name, 'w:gz') as tar:
            for path, text in ((f'{project}/train.py', f'# {project}\n'), (f'{project}/pkg/mod.py', 'x = 1\n')):
                data = text.encode()
                info = tarfile.TarInfo(path)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        lines.append(f'{hashlib.sha256((folder / name).read_bytes()).hexdigest()}  {name}')
    (folder / 'SHA256SUMS').write_text('\n'.join(lines) + '\n')
    return folder

def test_sets_the_variables_and_extracts_once(tmp_path):
    folder, cache, env = make_snapshots(tmp_path / 'upstream'), tmp_path / 'cache', {}
    line = provide(folder, env, cache)
    assert set(env) == {'RTM_SG3_DIR', 'RTM_STUDIOGAN_DIR'} and 'RTM_SG2ADA_DIR' in line   # no snapshot: skips
    sg3 = Path(env['RTM_SG3_DIR'])
    assert sg3.name == 'stylegan3' and (sg3 / 'train.py').read_text() == '# stylegan3\n'
    assert cache in sg3.parents and folder not in sg3.parents
    marker = sg3 / 'pkg' / '__pycache__'
    marker.mkdir()                                   # what running upstream code leaves is no damage
    again = {}
    provide(folder, again, cache)
    assert again == env and marker.is_dir()          # the same folder, not extracted again
    (sg3 / 'train.py').write_text('changed')         # a damaged tree is extracted afresh
    (sg3 / 'stray.py').write_text('')
    provide(folder, {}, cache)
    assert (sg3 / 'train.py').read_text() == '# stylegan3\n' and not (sg3 / 'stray.py').exists()

def test_variables_already_set_are_kept(tmp_path):
    env = {'RTM_SG3_DIR': '/elsewhere/stylegan3'}
    provide(make_snapshots(tmp_path / 'upstream'), env, tmp_path / 'cache')
    assert env['RTM_SG3_DIR'] == '/elsewhere/stylegan3' and 'RTM_STUDIOGAN_DIR' in env

def test_without_snapshots_nothing_is_set(tmp_path):
    env = {}
    line = provide(tmp_path / 'absent', env, tmp_path / 'cache')
    assert env == {} and 'no snapshots' in line and all(v in line for v in VARIABLES)

def test_a_changed_archive_or_a_missing_file_is_an_error(tmp_path):
    folder = make_snapshots(tmp_path / 'upstream')
    archive = folder / 'stylegan3-abc1234.tar.gz'
    data = bytearray(archive.read_bytes())
    data[-1] ^= 1
    archive.write_bytes(bytes(data))
    with pytest.raises(UpstreamError, match=r'stylegan3-abc1234\.tar\.gz: SHA-256 [0-9a-f]{64} does not match'):
        provide(folder, {}, tmp_path / 'cache')
    archive.unlink()
    with pytest.raises(UpstreamError, match='listed in SHA256SUMS but missing'):
        provide(folder, {}, tmp_path / 'cache')
    (folder / 'SHA256SUMS').unlink()
    with pytest.raises(UpstreamError, match='SHA256SUMS is missing'):
        provide(folder, {}, tmp_path / 'cache')

def test_the_suite_stops_on_a_corrupted_copy(tmp_path):
    """`python -m pytest` itself: a corrupted copy of the snapshots (the real ones when ../shared is there) ends
    the run before any test, exit 4, with the file named."""
    real = upstream_trees.DEFAULT_FOLDER
    folder = tmp_path / 'upstream'
    if real.is_dir():
        shutil.copytree(real, folder)
        for path in [folder, *folder.iterdir()]:    # CI's ../shared is read-only, and so is a copy of it
            path.chmod(0o755 if path.is_dir() else 0o644)
    else:
        make_snapshots(folder)
    archive = sorted(folder.glob('*.tar.gz'))[0]
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    result = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', f'--upstream={folder}',
                             '--collect-only', str(REPO / 'tests' / 'test_rtm_core.py')],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 4, result.stdout + result.stderr
    assert f'{archive}: SHA-256' in result.stderr and 'does not match SHA256SUMS' in result.stderr

def test_an_upstream_folder_that_is_not_there_is_a_usage_error(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                             f'--upstream={tmp_path / "absent"}', '--collect-only',
                             str(REPO / 'tests' / 'test_rtm_core.py')],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 4 and f'--upstream={tmp_path / "absent"}: no such folder' in result.stderr

def test_a_tree_another_session_extracted_meanwhile_is_kept(tmp_path, monkeypatch):
    """Two suites on one machine, cold cache: the one that finishes extracting second keeps the first one's tree,
    which the first is already running tests in, and drops its own copy."""
    folder, cache = make_snapshots(tmp_path / 'upstream'), tmp_path / 'cache'
    archive = folder / 'stylegan3-abc1234.tar.gz'
    digest = upstream_trees.sha256(archive)
    real_extract, in_use = upstream_trees._extract, []
    def racing_extract(path, into):
        monkeypatch.setattr(upstream_trees, '_extract', real_extract)
        other = upstream_trees.extracted(path, digest, cache)      # the other session is done first...
        marker = other / 'stylegan3' / '__pycache__' / 'in-use'
        marker.parent.mkdir()
        marker.write_text('')                                      # ...and is running its tests there
        in_use.append(marker)
        real_extract(path, into)
    monkeypatch.setattr(upstream_trees, '_extract', racing_extract)
    home = upstream_trees.extracted(archive, digest, cache)
    assert in_use and in_use[0].is_file() and home in in_use[0].parents
    assert sorted(p.name for p in cache.iterdir()) == [home.name]  # no temporary folder left behind

def test_a_malformed_sums_file_is_an_error_that_names_the_line(tmp_path):
    folder = make_snapshots(tmp_path / 'upstream')
    sums = folder / 'SHA256SUMS'
    sums.write_text(sums.read_text() + 'stylegan3-abc1234.tar.gz\n')     # a name without its checksum
    with pytest.raises(UpstreamError, match=r'SHA256SUMS:3: not "<sha256>  <file name>"'):
        provide(folder, {}, tmp_path / 'cache')

@pytest.mark.skipif(not hasattr(os, 'getuid'), reason='POSIX owners and modes')
def test_a_cache_folder_others_can_change_is_refused(tmp_path):
    """The trees' code runs in the tests: a cache in the shared temporary folder that another user made, linked or
    can write to is not used."""
    folder = make_snapshots(tmp_path / 'upstream')
    open_cache = tmp_path / 'open'
    open_cache.mkdir()
    open_cache.chmod(0o777)
    with pytest.raises(UpstreamError, match=r'open: .*others can write to it'):
        provide(folder, {}, open_cache)
    linked = tmp_path / 'linked'
    linked.symlink_to(tmp_path / 'elsewhere', target_is_directory=True)
    (tmp_path / 'elsewhere').mkdir(mode=0o700)
    with pytest.raises(UpstreamError, match=r'linked: .*a symbolic link'):
        provide(folder, {}, linked)

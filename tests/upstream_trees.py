"""The pristine upstream snapshots beside the repository (`../shared/upstream`: *.tar.gz and SHA256SUMS) as the
checkouts of the integration tests: every archive checked against SHA256SUMS, each extracted once into a temporary
folder keyed by its checksum (outside the repository), and RTM_SG2ADA_DIR, RTM_SG3_DIR and RTM_STUDIOGAN_DIR
pointed at the extracted trees unless they are set already. tests/conftest.py calls `provide` before collection.
"""

import hashlib
import os
import re
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path
from typing import Dict, Optional

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = REPO.parent / 'shared' / 'upstream'
SUMS = 'SHA256SUMS'
# The environment variable each archive serves, by the archive's name up to its commit.
ARCHIVES = {'stylegan2-ada-pytorch': 'RTM_SG2ADA_DIR', 'stylegan3': 'RTM_SG3_DIR',
            'PyTorch-StudioGAN': 'RTM_STUDIOGAN_DIR'}

class UpstreamError(Exception):
    """The snapshots are there but cannot be trusted or used: a checksum mismatch, a missing file."""

def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()

def read_sums(folder: Path) -> Dict[str, str]:
    """{file name: sha256} from `sha256sum` output ('<hex>  <name>' or '<hex> *<name>')."""
    path = folder / SUMS
    if not path.is_file():
        raise UpstreamError(f'{path} is missing: the snapshots in {folder} cannot be checked')
    sums = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            fields = line.split(maxsplit=1)
            if len(fields) != 2 or not re.fullmatch(r'[0-9a-fA-F]{64}', fields[0]):
                raise UpstreamError(f'{path}:{number}: not "<sha256>  <file name>": {line.strip()!r}')
            sums[fields[1].lstrip('*')] = fields[0].lower()
    return sums

def verify(folder: Path) -> Dict[str, str]:
    """Every file SHA256SUMS lists has its checksum, or UpstreamError."""
    sums = read_sums(folder)
    for name, expected in sums.items():
        path = folder / name
        if not path.is_file():
            raise UpstreamError(f'{path} is listed in {SUMS} but missing')
        actual = sha256(path)
        if actual != expected:
            raise UpstreamError(f'{path}: SHA-256 {actual} does not match {SUMS} ({expected}); the snapshot is '
                                f'changed or corrupt: restore the pristine archive')
    return sums

def _members(archive: Path):
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.isfile():
                yield member.name, tar.extractfile(member).read()

def _intact(archive: Path, tree: Path) -> bool:
    """The extracted tree holds exactly the archive's files, byte for byte (a test may not have written there)."""
    expected = dict(_members(archive))
    present = {str(p.relative_to(tree)) for p in tree.rglob('*') if p.is_file() and '__pycache__' not in p.parts}
    return present == set(expected) and all((tree / n).read_bytes() == data for n, data in expected.items())

def _extract(archive: Path, into: Path):
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        if any(n.startswith(('/', '..')) or '/../' in n for n in names):
            raise UpstreamError(f'{archive}: member paths leave the extraction folder')
        if hasattr(tarfile, 'data_filter'):
            tar.extractall(into, filter='data')
        else:
            tar.extractall(into)    # pylint: disable=unsafe-tarfile-extraction

def cache_root() -> Path:
    uid = os.getuid() if hasattr(os, 'getuid') else os.environ.get('USERNAME', 'user')
    return Path(tempfile.gettempdir()) / f'rtm-upstream-{uid}'

def check_private(root: Path):
    """The tests run the trees' code: a cache folder (in the shared temporary folder, by a name anyone can guess)
    that is a link, another user's, or writable by others could hold anything. UpstreamError then."""
    if not hasattr(os, 'getuid'):
        return
    info = os.lstat(root)
    if stat.S_ISLNK(info.st_mode):
        problem = 'it is a symbolic link'
    elif info.st_uid != os.getuid():
        problem = f'it belongs to uid {info.st_uid}'
    elif info.st_mode & 0o022:
        problem = f'others can write to it (mode {stat.S_IMODE(info.st_mode):o})'
    else:
        return
    raise UpstreamError(f'{root}: {problem}; the extracted upstream trees cannot be trusted there: remove it')

def extracted(archive: Path, digest: str, root: Optional[Path] = None) -> Path:
    """The folder that holds `archive` extracted, made once per checksum and reused while intact."""
    root = root or cache_root()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private(root)
    home = root / f'{archive.name[:-len(".tar.gz")]}-{digest[:16]}'
    if home.is_dir() and _intact(archive, home):
        return home
    fresh = Path(tempfile.mkdtemp(prefix='.extract-', dir=root))
    try:
        _extract(archive, fresh)
        if home.is_dir() and _intact(archive, home):
            return home             # another session extracted it meanwhile and may be running tests in it
        if home.exists():           # damaged: moved aside in one step, so no one sees it half deleted
            stale = Path(tempfile.mkdtemp(prefix='.stale-', dir=root))
            try:
                os.rename(home, stale / home.name)
            except FileNotFoundError:   # another session moved it first
                pass
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(fresh, home)
        except OSError:             # another session put its tree there first: keep that one
            if not home.is_dir():
                raise
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return home

def provide(folder: Optional[Path] = None, environ=os.environ, cache: Optional[Path] = None):
    """Sets the checkout variables from the snapshots in `folder` [default: ../shared/upstream] and returns one line
    that says what was done. Variables already set are kept. UpstreamError when the snapshots fail their check."""
    folder = Path(folder or DEFAULT_FOLDER)
    wanted = {name: var for name, var in ARCHIVES.items() if not environ.get(var)}
    if not wanted:
        return 'upstream trees: all from the environment (' + ', '.join(ARCHIVES.values()) + ')'
    if not folder.is_dir():
        return (f'upstream trees: no snapshots at {folder}; the integration tests of '
                + ', '.join(wanted.values()) + ' skip')
    sums = verify(folder)
    done = []
    for archive_name, digest in sorted(sums.items()):
        project = archive_name.rsplit('-', 1)[0]
        if archive_name.endswith('.tar.gz') and project in wanted:
            home = extracted(folder / archive_name, digest, cache)
            tops = [p for p in home.iterdir() if p.is_dir()]
            if len(tops) != 1:
                raise UpstreamError(f'{folder / archive_name} must hold one top folder, not {len(tops)}')
            environ[wanted.pop(project)] = str(tops[0])
            done.append(archive_name)
    line = f'upstream trees: {", ".join(done) or "none"} checked against {folder / SUMS}'
    if wanted:
        line += '; no snapshot for ' + ', '.join(wanted.values()) + ' (their tests skip)'
    return line

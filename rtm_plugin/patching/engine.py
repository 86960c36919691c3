"""Apply, check and revert a Target's edits in a checkout: all or nothing, byte-exact revert.

- Every anchor of every file is matched against the pristine text before anything is written.
- The original bytes and modes go into <checkout>/.rtm-patch/ (record.json + originals/) before any file is
  replaced; each file is replaced atomically (temp file + os.replace), and a failure midway rolls back.
- UTF-8 BOMs, CRLF line endings and file modes are kept; `revert` restores the original bytes exactly.
- Re-applying the same spec is a no-op. A tree that is patched in part, by another spec version, or edited
  since, is reported as such and never written over.
- Nothing is read or written through a symbolic link, or outside the checkout: every path (from the spec or from
  the record, which anyone can edit) must be relative, without '..', and no component of it may be a link. A file
  that is itself a link is refused, never replaced by a regular file.
- apply and revert hold an exclusive lock on the checkout (<checkout>/.rtm-patch.lock) while they run.
- Every error is one line that names the problem and what to do about it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import textwrap
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import List, Optional

from rtm_plugin.files import atomic_write
from rtm_plugin.patching import yaml_overlay
from rtm_plugin.patching.spec import MARKER, NEW_FILES, AddFile, ComposeYAML, FilePatch, Insert, Target

try:
    import fcntl
except ImportError:     # Windows
    fcntl = None
    import msvcrt       # pylint: disable=import-error

RECORD_DIR = '.rtm-patch'
RECORD_FILE = 'record.json'
RECORD_FORMAT = 1
LOCK_FILE = '.rtm-patch.lock'
BOM = b'\xef\xbb\xbf'
SHA256 = re.compile(r'[0-9a-f]{64}')

class PatchError(Exception):
    """Bad input or a refused operation. The message names the file and the problem; nothing was changed."""

class PatchUsageError(PatchError):
    """The command was pointed at the wrong thing: no such folder, not a checkout of the target, unknown target."""

#----------------------------------------------------------------------------
# Paths: inside the checkout, never through a symbolic link.

def checked_relpath(rel, what='path') -> str:
    """`rel` if it is a plain relative path inside the checkout, else PatchError. Paths come from the spec and from
    .rtm-patch/record.json, which anyone can edit: an absolute path or '..' would read, write or delete outside."""
    if not isinstance(rel, str) or not rel:
        raise PatchError(f'{what} {rel!r} is not a path')
    pure = PurePosixPath(rel)
    if pure.is_absolute() or '..' in pure.parts or '\\' in rel or '\0' in rel or str(pure) != rel:
        raise PatchError(f'{what} {rel!r} is not a plain relative path inside the checkout')
    if pure.parts[0] in (RECORD_DIR, LOCK_FILE) or '.git' in pure.parts:
        raise PatchError(f'{what} {rel!r} points into rtm-patch\'s own files or .git')
    return rel

def check_no_link(root: Path, rel: str) -> Path:
    """root/rel, after checking that neither it nor a folder on the way to it is a symbolic link (lstat, one
    component at a time; a missing component ends the walk). Links are refused even when they stay inside the
    checkout: writing through a folder link changes another tree, and replacing a file link turns it into a file."""
    path = root
    for part in PurePosixPath(rel).parts:
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            break
        except OSError as err:
            raise PatchError(f'{path.relative_to(root)}: {err.strerror}; fix it and run again') from None
        if stat.S_ISLNK(mode):
            raise PatchError(f'{path.relative_to(root)} is a symbolic link (-> {os.readlink(path)}), and rtm-patch '
                             f'never reads or writes {rel} through a link; replace the link with the real '
                             f'{"file" if path == root / rel else "folder"} (a copy), or restore the checkout with '
                             f'git, and run again')
    return root / rel

def safe_path(root: Path, rel, what='path') -> Path:
    return check_no_link(root, checked_relpath(rel, what))

#----------------------------------------------------------------------------
# Rendering one file: pure functions on bytes.

def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

def _decode(data: bytes, path: str):
    """-> (has_bom, crlf, text with \\n endings)."""
    bom = data.startswith(BOM)
    try:
        text = data[len(BOM) if bom else 0:].decode('utf-8')
    except UnicodeDecodeError as err:
        raise PatchError(f'{path}: not UTF-8 text ({err})') from None
    crlf = '\r\n' in text and text.count('\r\n') == text.count('\n')
    return bom, crlf, text.replace('\r\n', '\n') if crlf else text

def _encode(bom: bool, crlf: bool, text: str) -> bytes:
    return (BOM if bom else b'') + (text.replace('\n', '\r\n') if crlf else text).encode('utf-8')

def _line_start(text, pos):
    return text.rfind('\n', 0, pos) + 1

def _splice(text, match, edit):
    """-> (start, end, new text) for one matched edit."""
    if not isinstance(edit, Insert):
        return match.start(), match.end(), edit.text
    if edit.after:
        newline = text.find('\n', max(match.start(), match.end() - 1))
        pos = len(text) if newline < 0 else newline + 1
    else:
        pos = _line_start(text, match.start())
    indent = edit.indent
    if indent is None:
        indent = re.match(r'[ \t]*', text[_line_start(text, match.start()):]).group()
    body = textwrap.dedent(edit.text)
    body = (body[1:] if body.startswith('\n') else body).rstrip(' \t')     # the newline after an opening '''
    lines = (body if body.endswith('\n') else body + '\n')[:-1].split('\n')
    block = ''.join((indent + line if line.strip() else '') + '\n' for line in lines)
    if pos == len(text) and text and not text.endswith('\n'):
        block = '\n' + block
    return pos, pos, block

def render(data: bytes, patch: FilePatch) -> bytes:
    """The patched bytes of one file, or PatchError naming every anchor that does not match exactly once."""
    bom, crlf, text = _decode(data, patch.path)
    problems, splices = [], []
    for index, edit in enumerate(patch.edits):
        matches = list(re.finditer(edit.anchor, text, re.MULTILINE))
        if len(matches) != 1:
            why = f' ({edit.why})' if edit.why else ''
            problems.append(f'{patch.path}: anchor #{index + 1} {edit.anchor!r}{why} matches {len(matches)} times, '
                            f'expected exactly once')
            continue
        splices.append(_splice(text, matches[0], edit) + (index,))
    if problems:
        raise PatchError('; '.join(problems))
    splices.sort(key=lambda s: (s[0], s[3]))
    out, cursor = [], 0
    for start, end, new, index in splices:
        if start < cursor:
            raise PatchError(f'{patch.path}: anchor #{index + 1} overlaps an earlier edit (a bug in the spec)')
        out += [text[cursor:start], new]
        cursor = end
    out.append(text[cursor:])
    return _encode(bom, crlf, ''.join(out))

#----------------------------------------------------------------------------
# State of a checkout.

@dataclass
class FileState:
    path: str
    status: str     # unpatched | absent | patched | added | reverted | modified | foreign | mismatch | missing
    detail: str = ''
    new: Optional[bytes] = field(default=None, repr=False)      # the bytes apply would write
    new_mode: Optional[int] = None                              # and the mode of a file it adds

READY = ('unpatched', 'absent')
DONE = ('patched', 'added')

@dataclass
class Report:
    root: Path
    target: str
    state: str      # unpatched | patched | outdated | partial | unknown-version
    files: List[FileState]
    record: Optional[dict] = field(default=None, repr=False)

    def summary(self) -> str:
        width = max(len(f.status) for f in self.files) if self.files else 0
        lines = [f'{self.target} checkout at {self.root}: {self.state}']
        lines += [f'  {f.status:<{width}}  {f.path}' + (f'  ({f.detail})' if f.detail else '') for f in self.files]
        return '\n'.join(lines)

def read_record(root: Path) -> Optional[dict]:
    """The checked record of root's patch, or None. A record whose paths leave the checkout, or that is malformed,
    is refused as a whole: revert deletes and overwrites what it names."""
    path = check_no_link(root, f'{RECORD_DIR}/{RECORD_FILE}')
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding='utf-8'))
        if not isinstance(record, dict) or record.get('format') != RECORD_FORMAT:
            raise ValueError(f'unsupported format {record.get("format") if isinstance(record, dict) else record!r}')
        _check_record(record)
    except (ValueError, OSError, PatchError) as err:
        raise PatchError(f'{path}: unusable patch record ({err}); nothing was changed; restore the checkout with git '
                         f'and delete {RECORD_DIR}/') from None
    return record

def _check_record(record: dict) -> None:
    """ValueError or PatchError unless every field revert acts on has the shape apply writes."""
    if not isinstance(record.get('target'), str) or not isinstance(record.get('files'), dict):
        raise ValueError('no target or files')
    for rel, entry in record['files'].items():
        checked_relpath(rel, 'recorded path')
        if not isinstance(entry, dict) or entry.get('op') not in ('add', 'edit'):
            raise ValueError(f'{rel}: no op add|edit')
        for key in ['patched_sha256'] + (['original_sha256'] if entry['op'] == 'edit' else []):
            if not isinstance(entry.get(key), str) or not SHA256.fullmatch(entry[key]):
                raise ValueError(f'{rel}: {key} is not a SHA-256')
        mode = entry.get('mode')
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
            raise ValueError(f'{rel}: mode {mode!r} is not a permission mode')
    folders = record.get('created_folders', [])
    if not isinstance(folders, list):
        raise ValueError('created_folders is not a list')
    for rel in folders:
        checked_relpath(rel, 'recorded folder')

def composed_yaml(root: Path, target: Target, change: ComposeYAML) -> bytes:
    """The bytes of a ComposeYAML file: the checkout's base (its BOM and line endings kept) with the overlays."""
    bom, crlf, text = _decode((root / change.base).read_bytes(), change.base)
    overlays = [(name, target.spec_file(change.path, name).read_text(encoding='utf-8')) for name in change.overlays]
    header = [f'{MARKER}: written by rtm-patch: this checkout\'s {change.base},',
              f'with the keys of {" and ".join(f"patches/{target.name}/{name}" for name in change.overlays)} set:']
    for _, overlay in overlays:
        header += ['- ' + line for line in yaml_overlay.leading_comment(overlay)]
    try:
        return _encode(bom, crlf, yaml_overlay.compose(text, overlays, header, base_name=change.base))
    except ValueError as err:
        raise PatchError(f'{change.path}: {err}') from None

def _new_file_state(root: Path, target: Target, change) -> FileState:
    """The file an AddFile or ComposeYAML would create, with its mode (a composed file takes its base's)."""
    if isinstance(change, AddFile):
        source = target.source_path(change)
        return FileState(change.path, 'absent', new=source.read_bytes(), new_mode=stat.S_IMODE(source.stat().st_mode))
    base = root / change.base
    check_no_link(root, change.base)
    if not base.is_file():
        return FileState(change.path, 'missing', f'its base {change.base} is not in the checkout')
    try:
        new = composed_yaml(root, target, change)
    except PatchError as err:
        return FileState(change.path, 'mismatch', str(err).replace(f'{change.path}: ', ''))
    return FileState(change.path, 'absent', new=new, new_mode=stat.S_IMODE(base.stat().st_mode))

def _state_of(root: Path, target: Target, change, entry: Optional[dict]) -> FileState:
    path = safe_path(root, change.path)
    if isinstance(change, NEW_FILES):
        if not path.exists():
            return _new_file_state(root, target, change)
        if path.is_file() and entry is not None and _sha(path.read_bytes()) == entry['patched_sha256']:
            return FileState(change.path, 'added')
        if entry is not None:
            return FileState(change.path, 'modified', 'changed since rtm-patch added it')
        return FileState(change.path, 'foreign', 'exists already; rtm-patch did not add it')
    if not path.is_file():
        return FileState(change.path, 'missing', 'no such file in the checkout')
    data = path.read_bytes()
    if entry is not None:
        sha = _sha(data)
        if sha == entry['patched_sha256']:
            return FileState(change.path, 'patched')
        if sha != entry['original_sha256']:
            return FileState(change.path, 'modified', 'changed since rtm-patch wrote it')
    if MARKER.encode() in data:
        return FileState(change.path, 'foreign', f'carries {MARKER} edits that the record does not know')
    try:
        new = render(data, change)
    except PatchError as err:
        return FileState(change.path, 'mismatch', str(err).replace(f'{change.path}: ', '').replace('\n', '; '))
    return FileState(change.path, 'unpatched' if entry is None else 'reverted', new=new)

def inspect_checkout(root, target: Target) -> Report:
    """The state of every file `target` changes, without writing anything."""
    root = checkout_root(root)
    record = read_record(root)
    if record is not None and record.get('target') != target.name:
        raise PatchUsageError(f'{root} was patched for target {record.get("target")!r}, not {target.name!r}; pass '
                              f'--target {record.get("target")}, or run `rtm-patch revert` first')
    entries = record['files'] if record else {}
    files = [_state_of(root, target, change, entries.get(change.path)) for change in target.changes]
    statuses = {f.status for f in files}
    if record is None and statuses <= set(READY):
        state = 'unpatched'
    elif record is not None and statuses <= set(DONE) and record.get('complete'):
        state = 'patched' if record.get('spec_digest') == target.digest() else 'outdated'
    elif record is None and statuses & {'mismatch', 'missing'} and not statuses & {'foreign'}:
        state = 'unknown-version'
    else:
        state = 'partial'
    return Report(root, target.name, state, files, record)

def checkout_root(root) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise PatchUsageError(f'{root}: no such folder; give the path of the upstream checkout')
    if not root.is_dir():
        raise PatchUsageError(f'{root}: not a folder; give the checkout\'s top folder')
    return root.resolve()

#----------------------------------------------------------------------------
# One writer at a time.

def _try_lock(fd, path) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except (BlockingIOError, PermissionError):  # flock / msvcrt: held by another process
        return False
    except OSError as err:      # a file system without locks (ENOLCK): not "another rtm-patch"
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)     # nobody can hold a lock here, so nobody else uses the file
        raise PatchError(f'{path}: cannot lock the checkout ({err.strerror}); run rtm-patch on a file system that '
                         f'supports file locks (a local disk)') from None

@contextlib.contextmanager
def checkout_lock(root: Path):
    """Holds the exclusive lock of a checkout: an flock on <checkout>/LOCK_FILE, which holds the holder's pid.
    The kernel releases an flock when its process ends, however it ends, so the file a killed run leaves behind is
    stale and is simply taken over. The holder deletes the file while still holding the lock, and a process that
    locked a file deleted under it (it opened the old one) sees another inode at the path and tries again."""
    path = root / LOCK_FILE
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, 'O_NOFOLLOW', 0), 0o644)
        except OSError as err:
            raise PatchError(f'{path}: cannot create the lock file ({err.strerror}); make {root} writable (and '
                             f'{LOCK_FILE} a plain file, if it is a link) and run again') from None
        if not _try_lock(fd, path):
            try:
                holder = os.read(fd, 32).decode('ascii', 'replace').strip() or 'unknown'
            except OSError:     # msvcrt's lock also blocks reads
                holder = 'unknown'
            os.close(fd)
            raise PatchError(f'another rtm-patch (pid {holder}) is changing {root} right now; wait until it has '
                             f'finished, then run this again')
        try:
            current = os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f'{os.getpid()}\n'.encode('ascii'))
        yield
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass        # Windows cannot delete an open file; the next run takes the stale file over
        os.close(fd)

#----------------------------------------------------------------------------
# Writing.

def _read_only(path: Path) -> bool:
    """Read-only by its mode bits too: as root, os.access says yes to a chmod 444 file."""
    return not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222

def _check_writable(root: Path, paths) -> None:
    problems = []
    for rel in paths:
        path = root / rel
        if path.exists() and _read_only(path):
            problems.append(f'{rel}: read-only (mode {stat.S_IMODE(path.stat().st_mode):o}); make it writable first')
        folder = next(p for p in [path.parent, *path.parent.parents] if p.exists())
        if not os.access(folder, os.W_OK | os.X_OK):
            problems.append(f'{folder.relative_to(root) if folder != root else "."}: folder is not writable; '
                            f'make it writable first')
    if problems:
        raise PatchError('; '.join(problems) + '; nothing was changed')

def _write_record(root: Path, record: dict) -> None:
    atomic_write(root / RECORD_DIR / RECORD_FILE, (json.dumps(record, indent=2) + '\n').encode('utf-8'), 0o644)

def _make_parents(root: Path, path: Path, created: list) -> None:
    missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir()
        created.append(str(folder.relative_to(root)))

def _remove_folders(root: Path, folders) -> None:
    for rel in sorted(folders, key=len, reverse=True):
        try:
            safe_path(root, rel).rmdir()
        except (OSError, PatchError):
            pass    # not empty (the user put something there), or no longer ours to remove

class _Transaction:
    """Writes files one by one; on failure, puts back what was there before and re-raises as PatchError."""

    def __init__(self, root: Path, verb: str):
        self.root, self.verb, self.undo, self.created = root, verb, [], []

    def write(self, rel: str, data: Optional[bytes], mode: int = 0o644) -> None:
        path = safe_path(self.root, rel)        # again, right before the write
        before = (path.read_bytes(), stat.S_IMODE(path.stat().st_mode)) if path.exists() else None
        if data is None:
            path.unlink()
        else:
            _make_parents(self.root, path, self.created)
            write_file(path, data, mode)
        self.undo.append((rel, before))

    def rollback(self, err):
        """-> (PatchError to raise, whether everything was put back)."""
        failed = []
        for rel, before in reversed(self.undo):
            try:
                if before is None:
                    (self.root / rel).unlink(missing_ok=True)
                else:
                    atomic_write(self.root / rel, *before)
            except OSError:
                failed.append(rel)
        _remove_folders(self.root, self.created)
        if failed:
            return PatchError(f'{self.verb} failed ({err}), and putting back {", ".join(failed)} failed too; '
                              f'restore them with git (the originals are in {RECORD_DIR}/originals/)'), False
        return PatchError(f'{self.verb} failed ({err}); every file was put back, nothing was changed'), True

write_file = atomic_write      # one seam for tests that make a write fail midway

#----------------------------------------------------------------------------
# The three operations.

@dataclass
class Outcome:
    changed: bool
    message: str
    report: Report

def apply(root, target: Target) -> Outcome:
    root = checkout_root(root)
    with checkout_lock(root):
        return _apply(root, target)

def _apply(root: Path, target: Target) -> Outcome:
    report = inspect_checkout(root, target)
    if report.state == 'patched':
        return Outcome(False, f'{root} is already patched for {target.name}; nothing to do', report)
    if report.state != 'unpatched':
        raise PatchError(_refusal('apply', report))
    _check_writable(root, [f.path for f in report.files] + [RECORD_DIR])
    if os.path.lexists(root / RECORD_DIR):
        raise PatchError(f'{root / RECORD_DIR} exists without a record; delete it (after restoring the checkout '
                         f'with git) and run again')

    record = dict(format=RECORD_FORMAT, target=target.name, spec_digest=target.digest(), complete=False,
                  files={}, created_folders=[])
    changes = {change.path: change for change in target.changes}
    try:
        for f in report.files:
            path = root / f.path
            if isinstance(changes[f.path], NEW_FILES):
                record['files'][f.path] = dict(op='add', patched_sha256=_sha(f.new), mode=f.new_mode)
                continue
            original = path.read_bytes()
            backup = root / RECORD_DIR / 'originals' / f.path
            backup.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(backup, original, 0o644)
            record['files'][f.path] = dict(op='edit', original_sha256=_sha(original), patched_sha256=_sha(f.new),
                                           mode=stat.S_IMODE(path.stat().st_mode))
        _write_record(root, record)
    except OSError as err:
        shutil.rmtree(root / RECORD_DIR, ignore_errors=True)
        raise PatchError(f'could not save the originals in {root / RECORD_DIR} ({err}); nothing was changed; '
                         f'free some space or fix the permissions and run again') from None

    tx = _Transaction(root, 'apply')
    try:
        for f in report.files:
            tx.write(f.path, f.new, record['files'][f.path]['mode'])
        record.update(complete=True, created_folders=tx.created)
        _write_record(root, record)
    except Exception as err:
        error, clean = tx.rollback(err)
        if clean:
            shutil.rmtree(root / RECORD_DIR, ignore_errors=True)
        raise error from err
    edited = sum(isinstance(changes[f.path], FilePatch) for f in report.files)
    added = len(report.files) - edited
    return Outcome(True, f'patched {root} for {target.name}: {edited} files edited, {added} added; '
                         f'originals kept in {RECORD_DIR}/', inspect_checkout(root, target))

def check(root, target: Target) -> Report:
    return inspect_checkout(root, target)

def revert(root, target: Optional[Target] = None) -> Outcome:
    """Restore every file from the record (the target spec is not needed: it may have changed since). `target`,
    when given, must be the recorded one; without a record it says which files to look at for our edits (by
    default, the known target the checkout looks like)."""
    root = checkout_root(root)
    with checkout_lock(root):
        return _revert(root, target)

def _revert(root: Path, target: Optional[Target]) -> Outcome:
    record = read_record(root)
    if record is None:
        return _revert_without_record(root, target)
    if target is not None and record['target'] != target.name:
        raise PatchUsageError(f'{root} was patched for target {record["target"]!r}, not {target.name!r}; run '
                              f'revert without --target')

    plan, problems = [], []
    for rel, entry in record['files'].items():
        path = safe_path(root, rel, 'recorded path')
        current = _sha(path.read_bytes()) if path.is_file() else None
        if entry['op'] == 'add':
            if current == entry['patched_sha256']:
                plan.append((rel, None, 0))
            elif current is not None:
                problems.append(f'{rel}: changed since rtm-patch added it')
            continue
        if current == entry['original_sha256']:
            continue    # never written (an interrupted apply) or restored by hand
        if current != entry['patched_sha256']:
            problems.append(f'{rel}: ' + ('missing' if current is None else 'changed since rtm-patch wrote it'))
            continue
        saved = check_no_link(root, f'{RECORD_DIR}/originals/{rel}')
        original = saved.read_bytes() if saved.is_file() else None
        if original is None:
            problems.append(f'{rel}: its saved original {RECORD_DIR}/originals/{rel} is missing')
        elif _sha(original) != entry['original_sha256']:
            problems.append(f'{rel}: its saved original in {RECORD_DIR}/originals/ is damaged')
        else:
            plan.append((rel, original, entry['mode']))
    for rel in record.get('created_folders', []):
        safe_path(root, rel, 'recorded folder')
    if problems:
        raise PatchError('revert refused, nothing was changed: ' + '; '.join(problems) +
                         '; restore these files with git (or undo your edits), then run revert again')
    _check_writable(root, [rel for rel, _, _ in plan])

    tx = _Transaction(root, 'revert')
    try:
        for rel, data, mode in plan:
            tx.write(rel, data, mode)
    except Exception as err:
        raise tx.rollback(err)[0] from err
    _remove_folders(root, record.get('created_folders', []))
    shutil.rmtree(root / RECORD_DIR)
    return Outcome(True, f'reverted {root}: {len(plan)} files restored to their original bytes', None)

def _revert_without_record(root: Path, target: Optional[Target]) -> Outcome:
    """No record: fine on a pristine tree; a refusal when our edits are there (the originals went with the record)."""
    if target is None:
        from rtm_plugin.patching.targets import resolve_target  # pylint: disable=import-outside-toplevel,cyclic-import
        target = resolve_target(root)
    ours = [f.path for f in inspect_checkout(root, target).files if f.status == 'foreign']
    if ours:
        raise PatchError(f'{root} has rtm-patch edits or files ({", ".join(ours)}) but no {RECORD_DIR}/ record '
                         f'(deleted?), so their original bytes are gone; restore these files with git (git checkout '
                         f'-- <edited files>; delete the added ones), then apply again if you want the patch')
    return Outcome(False, f'{root} has no {RECORD_DIR} record and no rtm-patch edits; nothing to do', None)

def _refusal(verb, report: Report) -> str:
    advice = {
        'outdated': 'it was patched by another version of rtm-plugin: run `rtm-patch revert` with that version '
                    'or this one (revert needs only the record), then apply',
        'partial': 'the tree is partially patched or was edited since: run `rtm-patch revert`, or restore the '
                   'files with git',
        'unknown-version': 'this is not the upstream version the spec was written for, and nothing was changed: '
                           'check out the upstream commit that rtm-plugin\'s README names and run again',
    }[report.state]
    bad = [f'{f.path}: {f.status}' + (f' ({f.detail})' if f.detail else '') for f in report.files
           if f.status not in READY]
    return f'cannot {verb} {report.target} edits in {report.root}: {report.state} ({"; ".join(bad)}); {advice}'

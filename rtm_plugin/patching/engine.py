"""Apply, check and revert a Target's edits in a checkout: all or nothing, byte-exact revert.

- Every anchor of every file is matched against the pristine text before anything is written.
- The original bytes and modes go into <checkout>/.rtm-patch/ (record.json + originals/) before any file is
  replaced; each file is replaced atomically (temp file + os.replace), and a failure midway rolls back.
- UTF-8 BOMs, CRLF line endings and file modes are kept; `revert` restores the original bytes exactly.
- Re-applying the same spec is a no-op. A tree that is patched in part, by another spec version, or edited
  since, is reported as such and never written over.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from rtm_plugin.cache import atomic_write_bytes
from rtm_plugin.patching import yaml_overlay
from rtm_plugin.patching.spec import MARKER, NEW_FILES, AddFile, ComposeYAML, FilePatch, Insert, Target

RECORD_DIR = '.rtm-patch'
RECORD_FILE = 'record.json'
RECORD_FORMAT = 1
BOM = b'\xef\xbb\xbf'

class PatchError(Exception):
    """Bad input or a refused operation. The message names the file and the problem; nothing was changed."""

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
        raise PatchError('\n'.join(problems))
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
    path = root / RECORD_DIR / RECORD_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding='utf-8'))
        if record.get('format') != RECORD_FORMAT or not isinstance(record.get('files'), dict):
            raise ValueError(f'unsupported format {record.get("format")!r}')
    except (ValueError, OSError) as err:
        raise PatchError(f'{path}: unreadable patch record ({err}); restore the checkout with git and delete '
                         f'{RECORD_DIR}/') from None
    return record

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
    if not base.is_file():
        return FileState(change.path, 'missing', f'its base {change.base} is not in the checkout')
    try:
        new = composed_yaml(root, target, change)
    except PatchError as err:
        return FileState(change.path, 'mismatch', str(err).replace(f'{change.path}: ', ''))
    return FileState(change.path, 'absent', new=new, new_mode=stat.S_IMODE(base.stat().st_mode))

def _state_of(root: Path, target: Target, change, entry: Optional[dict]) -> FileState:
    path = root / change.path
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
        raise PatchError(f'{root} was patched for target {record.get("target")!r}, not {target.name!r}')
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
        raise PatchError(f'{root}: no such folder')
    if not root.is_dir():
        raise PatchError(f'{root}: not a folder (give the checkout\'s top folder)')
    return root.resolve()

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
            problems.append(f'{folder.relative_to(root) if folder != root else "."}: folder is not writable')
    if problems:
        raise PatchError('nothing was changed:\n' + '\n'.join(problems))

def atomic_write(path: Path, data: bytes, mode: int) -> None:
    atomic_write_bytes(path, data, mode)

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
            (root / rel).rmdir()
        except OSError:
            pass    # not empty: the user put something there

class _Transaction:
    """Writes files one by one; on failure, puts back what was there before and re-raises as PatchError."""

    def __init__(self, root: Path, verb: str):
        self.root, self.verb, self.undo, self.created = root, verb, [], []

    def write(self, rel: str, data: Optional[bytes], mode: int = 0o644) -> None:
        path = self.root / rel
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
                              f'restore them with git (originals are in {RECORD_DIR}/originals/)'), False
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
    report = inspect_checkout(root, target)
    root = report.root
    if report.state == 'patched':
        return Outcome(False, f'{root} is already patched for {target.name}; nothing to do', report)
    if report.state != 'unpatched':
        raise PatchError(_refusal('apply', report))
    _check_writable(root, [f.path for f in report.files] + [RECORD_DIR])
    if (root / RECORD_DIR).exists():
        raise PatchError(f'{root / RECORD_DIR} exists without a record; delete it (after restoring the checkout)')

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
        raise PatchError(f'could not save the originals in {root / RECORD_DIR} ({err}); nothing was changed') from None

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

def revert(root, target_name: Optional[str] = None) -> Outcome:
    """Restore every file from the record (the target spec is not needed: it may have changed since)."""
    root = checkout_root(root)
    record = read_record(root)
    if record is None:
        return Outcome(False, f'{root} has no {RECORD_DIR} record: not patched by rtm-patch; nothing to do', None)
    if target_name is not None and record['target'] != target_name:
        raise PatchError(f'{root} was patched for target {record["target"]!r}, not {target_name!r}')

    plan, problems = [], []
    for rel, entry in record['files'].items():
        path = root / rel
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
        original = (root / RECORD_DIR / 'originals' / rel).read_bytes()
        if _sha(original) != entry['original_sha256']:
            problems.append(f'{rel}: the saved original in {RECORD_DIR}/originals/ is damaged')
            continue
        plan.append((rel, original, entry['mode']))
    if problems:
        raise PatchError('revert refused, nothing was changed:\n' + '\n'.join(problems) +
                         '\nrestore these files with git (or undo your edits), then run revert again')
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

def _refusal(verb, report: Report) -> str:
    advice = {
        'outdated': 'it was patched by another version of rtm-plugin: run `rtm-patch revert` with that version '
                    'or this one (revert needs only the record), then apply',
        'partial': 'the tree is partially patched or was edited since: run `rtm-patch revert`, or restore the '
                   'files with git',
        'unknown-version': 'this is not the upstream version the spec was written for; nothing was changed',
    }[report.state]
    bad = [f for f in report.files if f.status not in READY]
    lines = [f'cannot {verb} {report.target} edits in {report.root}: {report.state}; {advice}']
    lines += [f'  {f.path}: {f.status}' + (f' ({f.detail})' if f.detail else '') for f in bad]
    return '\n'.join(lines)

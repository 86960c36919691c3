"""The edit vocabulary of `rtm-patch`: anchored edits and added files, written as data in patches/<target>/target.py.

An anchor is a regular expression (re.MULTILINE) that must match exactly once in the pristine file. Edits carry
only our own lines; upstream text appears at most inside an anchor. Every patched file carries the MARKER in at
least one edit, so a patched file is recognisable even without the record `rtm-patch` keeps in the checkout.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Optional, Tuple, Union

MARKER = 'rtm-plugin'

class SpecError(ValueError):
    """A malformed patch spec (a bug in patches/, not in the user's checkout)."""

def _compile(anchor):
    try:
        return re.compile(anchor, re.MULTILINE)
    except re.error as err:
        raise SpecError(f'anchor {anchor!r} is not a valid regular expression: {err}') from None

def _check_text(kind, text):
    if not isinstance(text, str):
        raise SpecError(f'{kind} text must be a string, got {type(text).__name__}')
    if '\r' in text:
        raise SpecError(f'{kind} text must use \\n line endings (the file\'s own endings are restored on write)')

@dataclass(frozen=True)
class Insert:
    """Insert whole lines before the line where the anchor match starts, or after the line where it ends.

    `text` is dedented, loses the newline right after an opening triple quote, and is indented like the
    anchor's line (or by `indent`). Blank lines inside or at the end are kept.
    """
    anchor: str
    text: str
    after: bool = False
    indent: Optional[str] = None
    why: str = ''

    def __post_init__(self):
        _compile(self.anchor)
        _check_text('Insert', self.text)
        if self.indent is not None and self.indent.strip(' \t'):
            raise SpecError(f'Insert indent must be spaces or tabs, got {self.indent!r}')

@dataclass(frozen=True)
class Replace:
    """Replace the matched span with `text`, verbatim. A zero-width anchor inserts `text` at that point."""
    anchor: str
    text: str
    why: str = ''

    def __post_init__(self):
        _compile(self.anchor)
        _check_text('Replace', self.text)

Edit = Union[Insert, Replace]

def _check_path(path):
    p = PurePosixPath(path)
    if not path or p.is_absolute() or '..' in p.parts or '\\' in path or str(p) != path:
        raise SpecError(f'{path!r} must be a normalised relative path inside the checkout, with / separators')

@dataclass(frozen=True)
class FilePatch:
    """Anchored edits of one existing file of the checkout."""
    path: str
    edits: Tuple[Edit, ...]

    def __post_init__(self):
        _check_path(self.path)
        object.__setattr__(self, 'edits', tuple(self.edits))
        if not self.edits:
            raise SpecError(f'{self.path}: a FilePatch needs at least one edit')
        for edit in self.edits:
            if not isinstance(edit, (Insert, Replace)):
                raise SpecError(f'{self.path}: edits must be Insert or Replace, got {type(edit).__name__}')
        if not any(MARKER in edit.text for edit in self.edits):
            raise SpecError(f'{self.path}: at least one edit must carry the marker {MARKER!r} (e.g. in a comment)')

@dataclass(frozen=True)
class AddFile:
    """Copy `source` (relative to the target's folder in patches/) to `path` in the checkout."""
    path: str
    source: str
    why: str = ''

    def __post_init__(self):
        _check_path(self.path)
        _check_path(self.source)

@dataclass(frozen=True)
class ComposeYAML:
    """A new YAML file: the checkout's `base` YAML with the keys of each overlay (files in the target's folder)
    set, in order (rtm_plugin.patching.yaml_overlay). No upstream text is stored: it is read at apply time."""
    path: str
    base: str
    overlays: Tuple[str, ...]
    why: str = ''

    def __post_init__(self):
        _check_path(self.path)
        _check_path(self.base)
        object.__setattr__(self, 'overlays', tuple(self.overlays))
        if not self.overlays:
            raise SpecError(f'{self.path}: a ComposeYAML needs at least one overlay')
        for overlay in self.overlays:
            _check_path(overlay)

Change = Union[FilePatch, AddFile, ComposeYAML]
NEW_FILES = (AddFile, ComposeYAML)          # changes that create a file rather than edit one

@dataclass(frozen=True)
class Target:
    """One upstream project: how to recognise a checkout of it, and what to change there."""
    name: str
    identify: Tuple[str, ...]           # files that every checkout of this project has
    changes: Tuple[Change, ...]
    home: Optional[Path] = field(default=None, compare=False)   # the spec's folder; set by the loader

    def __post_init__(self):
        object.__setattr__(self, 'identify', tuple(self.identify))
        object.__setattr__(self, 'changes', tuple(self.changes))
        if not re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9._-]*', self.name or ''):
            raise SpecError(f'target name {self.name!r} must be a plain folder name')
        if not self.identify:
            raise SpecError(f'target {self.name}: identify must name at least one file')
        for path in self.identify:
            _check_path(path)
        seen = set()
        for change in self.changes:
            if not isinstance(change, (FilePatch, *NEW_FILES)):
                raise SpecError(f'target {self.name}: changes must be FilePatch, AddFile or ComposeYAML, got '
                                f'{type(change).__name__}')
            if change.path in seen:
                raise SpecError(f'target {self.name}: {change.path} is changed twice; merge its edits')
            seen.add(change.path)

    def source_path(self, add: AddFile) -> Path:
        return self.spec_file(add.path, add.source)

    def spec_file(self, path: str, source: str) -> Path:
        """A file shipped in the target's folder (an AddFile's source, a ComposeYAML's overlay)."""
        if self.home is None:
            raise SpecError(f'target {self.name}: {path} needs the spec folder (Target.home)')
        return self.home / source

    def digest(self) -> str:
        """Identifies this version of the spec, so a checkout patched by another version is recognised."""
        h = hashlib.sha256(repr((self.name, self.changes)).encode('utf-8'))
        for change in self.changes:
            if isinstance(change, AddFile):
                h.update(self.source_path(change).read_bytes())
            elif isinstance(change, ComposeYAML):
                for overlay in change.overlays:
                    h.update(self.spec_file(change.path, overlay).read_bytes())
        return h.hexdigest()

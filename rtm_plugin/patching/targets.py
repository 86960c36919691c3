"""Where the patch specs live (patches/<target>/target.py) and which one fits a checkout."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path
from typing import Dict, Optional

from rtm_plugin.patching.engine import PatchError, PatchUsageError, checkout_root
from rtm_plugin.patching.spec import SpecError, Target

SPEC_FILE = 'target.py'

def patches_dir() -> Path:
    """RTM_PATCHES_DIR when set; else the copy a wheel installs as rtm_plugin/_patches; else patches/ of the source
    tree (a checkout, an editable install)."""
    package = Path(__file__).resolve().parents[1]
    folder = os.environ.get('RTM_PATCHES_DIR')
    if folder is None:
        folder = next((p for p in (package / '_patches', package.parent / 'patches') if p.is_dir()), None)
        if folder is None:
            raise PatchError(f'patch specs not found in {package / "_patches"} or {package.parent / "patches"}: '
                             f'reinstall rtm-plugin, or set RTM_PATCHES_DIR')
    folder = Path(folder)
    if not folder.is_dir():
        raise PatchError(f'patch specs not found at {folder} (RTM_PATCHES_DIR)')
    return folder

def known_targets() -> Dict[str, Path]:
    return {p.parent.name: p for p in sorted(patches_dir().glob(f'*/{SPEC_FILE}'))}

def load_target(name: str) -> Target:
    specs = known_targets()
    if name not in specs:
        raise PatchUsageError(f'unknown target {name!r}; pass one of the known targets: {", ".join(specs) or "none"}')
    module_spec = importlib.util.spec_from_file_location(f'rtm_patch_spec_{name.replace("-", "_")}', specs[name])
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    target = getattr(module, 'TARGET', None)
    if not isinstance(target, Target) or target.name != name:
        raise SpecError(f'{specs[name]} must define TARGET = Target(name={name!r}, ...)')
    return dataclasses.replace(target, home=specs[name].parent)

def missing_files(root: Path, target: Target):
    return [path for path in target.identify if not (root / path).is_file()]

def resolve_target(root, name: Optional[str] = None) -> Target:
    """The named target, checked against the checkout; or the one known target the checkout looks like."""
    root = checkout_root(root)
    if name is not None:
        target = load_target(name)
        missing = missing_files(root, target)
        if missing:
            raise PatchUsageError(f'{root} is not a {name} checkout: it lacks {", ".join(missing)}; give the '
                                  f'checkout\'s top folder, or another --target')
        return target
    targets = [load_target(n) for n in known_targets()]
    fits = [t for t in targets if not missing_files(root, t)]
    if len(fits) == 1:
        return fits[0]
    if not fits:
        needs = '; '.join(f'{t.name} has {", ".join(t.identify)}' for t in targets)
        raise PatchUsageError(f'{root} does not look like a checkout of any known target ({needs}); give the '
                              f'checkout\'s top folder')
    raise PatchUsageError(f'{root} looks like several targets ({", ".join(t.name for t in fits)}); pass --target')

"""Network snapshots on disk (StyleGAN's network-snapshot-<number>.pkl): finding and loading them, for the
trainer's --resume and the analysis tools alike. What a snapshot must hold to resume is rtm_plugin.imle.checkpoint's
business; here a snapshot is any pickled dict with a 'G_ema'."""

import glob
import os
import pickle
import re

SNAPSHOT_RE = re.compile(r'network-snapshot-(\d+)\.pkl$')

def load_snapshot(path):
    """The dict of a snapshot. Needs rtm_plugin importable (classes are pickled by reference)."""
    if os.path.getsize(path) == 0:
        raise ValueError(f'{path}: empty file (0 bytes)')
    try:
        with open(path, 'rb') as f:
            data = pickle.load(f)
    except ImportError:                 # a pickle of classes that are not importable here (an upstream checkout)
        raise
    except Exception as e:              # garbage makes pickle raise almost anything
        raise ValueError(f'{path}: not a network pickle, or truncated ({type(e).__name__}: {e})') from None
    if not isinstance(data, dict) or 'G_ema' not in data:
        raise ValueError(f'{path}: not an RS-IMLE or StyleGAN snapshot (no G_ema)')
    return data

def snapshot_files(folder):
    """[(number in the name, path)], highest first."""
    found = [(int(m.group(1)), p) for p in glob.glob(os.path.join(glob.escape(folder), 'network-snapshot-*.pkl'))
             if (m := SNAPSHOT_RE.search(p))]
    return sorted(found, reverse=True)

def latest_snapshot(folder):
    """The snapshot with the highest number in folder, or None (nothing is loaded)."""
    found = snapshot_files(folder)
    return found[0][1] if found else None

def resolve_snapshot(path):
    """A snapshot path as a file: itself, or the highest-numbered snapshot of a run folder (not loaded)."""
    if os.path.isdir(path):
        found = latest_snapshot(path)
        if found is None:
            raise FileNotFoundError(f'{path}: no network-snapshot-*.pkl in that folder')
        return found
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: no such file or folder')
    return path

"""Snapshots like StyleGAN's network-snapshot-<kimg>.pkl: a pickled dict with 'G', 'G_ema' and 'D'
(a stand-in, so stylegan2-ada's legacy.load_network_pkl accepts it), 'training_set_kwargs', and under
'rs_imle' everything --resume needs (optimizer, matched latents, step, RNG states, config).

Writes are atomic: a temp file in the same folder, fsync, os.replace. A killed run never leaves a torn file."""

import glob
import os
import pickle
import random
import re

import numpy as np
import torch

from rtm_plugin.cache import atomic_write_bytes

SNAPSHOT_RE = re.compile(r'network-snapshot-(\d+)\.pkl$')

def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode('utf-8'))

def snapshot_name(step):
    """Named by the training step, so snapshots sort in training order and never overwrite each other."""
    return f'network-snapshot-{step:06d}.pkl'

def rng_state():
    return dict(torch=torch.get_rng_state(), numpy=np.random.get_state(), python=random.getstate())

def set_rng_state(state):
    torch.set_rng_state(state['torch'])
    np.random.set_state(state['numpy'])
    random.setstate(state['python'])

def save_snapshot(path, data):
    atomic_write_bytes(path, pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))

def load_snapshot(path):
    """The dict of a snapshot. Needs rtm_plugin importable (classes are pickled by reference)."""
    with open(path, 'rb') as f:
        data = pickle.load(f)
    if not isinstance(data, dict) or 'G_ema' not in data:
        raise ValueError(f'{path}: not an RS-IMLE or StyleGAN snapshot (no G_ema)')
    return data

def latest_snapshot(folder):
    """The snapshot of the highest step in folder, or None."""
    found = [(int(m.group(1)), p) for p in glob.glob(os.path.join(folder, 'network-snapshot-*.pkl'))
             if (m := SNAPSHOT_RE.search(p))]
    return max(found)[1] if found else None

def resolve_resume(path):
    """--resume accepts a snapshot file or a run folder (its latest snapshot)."""
    if os.path.isdir(path):
        found = latest_snapshot(path)
        if found is None:
            raise FileNotFoundError(f'--resume {path}: no network-snapshot-*.pkl in that folder')
        return found
    if not os.path.isfile(path):
        raise FileNotFoundError(f'--resume {path}: no such file or folder')
    return path

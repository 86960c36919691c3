"""Snapshots like StyleGAN's network-snapshot-<kimg>.pkl: a pickled dict with 'G', 'G_ema' and 'D'
(a stand-in, so stylegan2-ada's legacy.load_network_pkl accepts it), 'training_set_kwargs', and under
'rs_imle' everything --resume needs (optimizer, matched latents, step, RNG states, config, the run's id and
the run options that affect the numbers).

Writes are atomic: a temp file in the same folder, fsync, os.replace. A killed run never leaves a torn file,
only (at worst) a stale temporary `.network-snapshot-*.pkl.*.tmp`, which resume deletes.

Naming: new runs name snapshots by kimg, as upstream (`network-snapshot-{kimg:06d}.pkl`; two snapshots in the
same kimg replace each other). Runs started by earlier versions named them by step; such a run keeps step
names when resumed, so the numbers in one folder always sort in training order.
"""

import json
import os
import pickle
import random
from dataclasses import dataclass

import numpy as np
import torch

from rtm_plugin.files import TEMP_RE, atomic_write
from rtm_plugin.snapshots import load_snapshot, snapshot_files

OPTIONS_FILE = 'training_options.json'

def snapshot_name(step, batch=None, unit='kimg'):
    """kimg = images seen // 1000 (upstream's name); unit='step' names by step (runs of earlier versions)."""
    if unit == 'step' or batch is None:
        return f'network-snapshot-{step:06d}.pkl'
    return f'network-snapshot-{step * batch // 1000:06d}.pkl'

def rng_state():
    return dict(torch=torch.get_rng_state(), numpy=np.random.get_state(), python=random.getstate())

def set_rng_state(state):
    torch.set_rng_state(state['torch'])
    np.random.set_state(state['numpy'])
    random.setstate(state['python'])

def save_snapshot(path, data):
    atomic_write(path, lambda f: pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL))

@dataclass
class Snapshot:
    """A loaded snapshot and where it came from."""
    path: str
    data: dict

    @property
    def state(self):
        return self.data.get('rs_imle')

    @property
    def options(self):
        """The run options it was trained with ({} for snapshots of earlier versions)."""
        return dict((self.state or {}).get('options') or {})

def read_options(folder):
    """folder's training_options.json as a dict ({} for a run of an earlier version, or no readable file)."""
    try:
        with open(os.path.join(folder, OPTIONS_FILE)) as f:
            found = json.load(f)
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}

def remove_stale_temporaries(folder):
    """Delete the temporaries of writes that a kill interrupted; returns their names."""
    removed = []
    for name in sorted(os.listdir(folder)):
        if TEMP_RE.match(name) and os.path.isfile(os.path.join(folder, name)):
            os.remove(os.path.join(folder, name))
            removed.append(name)
    return removed

def find_resume(path, log=lambda m: None):
    """The Snapshot to continue from, loaded once.

    A file is taken as it is. A run folder gives its newest snapshot that loads, has RS-IMLE training state and
    belongs to this run (the run id in training_options.json); each one passed over is reported with the reason.
    """
    if os.path.isfile(path):
        data = load_snapshot(path)
        if data.get('rs_imle') is None:
            raise ValueError(f'{path}: a generator pickle without RS-IMLE training state; cannot resume from it')
        return Snapshot(path, data)
    if not os.path.isdir(path):
        raise FileNotFoundError(f'--resume {path}: no such file or folder')
    folder = read_options(path)
    run_id = folder.get('run_id')
    legacy_ok = folder.get('snapshot_unit') == 'step'       # a run of an earlier version, continued: no ids before
    skipped = []
    for _, candidate in snapshot_files(path):
        try:
            data = load_snapshot(candidate)
        except (ValueError, OSError, ImportError) as e:
            skipped.append(f'{os.path.basename(candidate)} ({str(e).replace(candidate + ": ", "")})')
            continue
        state = data.get('rs_imle')
        if state is None:
            skipped.append(f'{os.path.basename(candidate)} (no RS-IMLE training state)')
        elif run_id is not None and state.get('run_id') != run_id and not (legacy_ok and 'run_id' not in state):
            skipped.append(f'{os.path.basename(candidate)} (belongs to run {state.get("run_id")}, '
                           f'not to this folder\'s run {run_id})')
        else:
            for s in skipped:
                log(f'resume: skipped {s}')
            return Snapshot(candidate, data)
    detail = f'; skipped {"; ".join(skipped)}' if skipped else ''
    raise FileNotFoundError(f'--resume {path}: no usable network-snapshot-*.pkl in that folder{detail}')

"""The run folder's logs: JSON-lines files a kill cannot tear, upstream's per-tick statistics, and log.txt.

Each JSON line goes to disk in ONE os.write on a file opened with O_APPEND, so a process killed between two
writes leaves whole lines, and concurrent appends do not interleave. A line can still be cut by a full disk or
a crash of the machine itself; `repair` (run on resume) drops any line that does not parse.
Non-finite floats are written as null: NaN and Infinity are not JSON, and readers of the logs choke on them.
"""

import errno
import json
import math
import os
import sys

import numpy as np

from rtm_plugin.files import atomic_write

def jsonable(value):
    """value with numpy scalars made Python numbers and non-finite floats made None, recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value

def append_line(path, text):
    """Append text + newline in a single write (O_APPEND)."""
    data = (text.rstrip('\n') + '\n').encode('utf-8')
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        written = os.write(fd, data)
    except OSError as e:
        raise OSError(e.errno, e.strerror, path) from e     # name the file, as open() errors do
    finally:
        os.close(fd)
    if written != len(data):            # only a full disk does this to a regular file
        raise OSError(errno.ENOSPC, f'short write ({written} of {len(data)} bytes)', path)

def append_json(path, record):
    append_line(path, json.dumps(jsonable(record), allow_nan=False))

def read_jsonl(path):
    """The records of a JSON-lines file, skipping torn or garbage lines."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path, 'rb') as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out

def repair(path, keep=lambda record: True):
    """Rewrite path (atomically) without torn lines, unparsable lines and records keep() rejects.
    Returns how many lines were dropped."""
    if not os.path.exists(path):
        return 0
    with open(path, 'rb') as f:
        lines = f.read().split(b'\n')
    tail = lines.pop()                  # after the last newline: '' or a torn line
    kept, dropped = [], int(bool(tail.strip()))
    for line in lines:
        if not line.strip():
            continue
        try:
            ok = keep(json.loads(line))
        except ValueError:
            ok = False
        if ok:
            kept.append(line + b'\n')
        else:
            dropped += 1
    if dropped:
        atomic_write(path, b''.join(kept))
    return dropped

class TickStats:
    """Per-tick statistics in upstream's training_stats format: {name: {num, mean, std}}.

    report(name, values) adds scalars or tensors (every element counts); as_dict() gives the tick's summary and
    starts the next tick. Anyone may report a new name: it simply appears in stats.jsonl and TensorBoard."""

    def __init__(self):
        self._acc = {}

    def report(self, name, values):
        x = np.asarray(values.detach().cpu() if hasattr(values, 'detach') else values, dtype=np.float64).ravel()
        num, total, sq = self._acc.get(name, (0, 0.0, 0.0))
        self._acc[name] = (num + x.size, total + float(x.sum()), sq + float(np.square(x).sum()))
        return values

    def as_dict(self):
        out = {}
        for name, (num, total, sq) in sorted(self._acc.items()):
            mean = total / num if num else float('nan')
            std = math.sqrt(max(sq / num - mean ** 2, 0.0)) if num else float('nan')
            out[name] = dict(num=num, mean=mean, std=std)
        self._acc = {}
        return out

class TensorBoard:
    """Upstream's stats_tfevents: each statistic's mean as a scalar at global_step = kimg, when tensorboard is
    installed (the `tensorboard` extra); otherwise nothing."""

    def __init__(self, run_dir, start_time):
        self.writer, self.start_time = None, start_time
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        self.writer = SummaryWriter(run_dir)

    def write(self, stats, metrics, kimg, timestamp):
        if self.writer is None:
            return
        walltime = timestamp - self.start_time
        for name, value in stats.items():
            if math.isfinite(value['mean']):
                self.writer.add_scalar(name, value['mean'], global_step=int(kimg), walltime=walltime)
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f'Metrics/{name}', value, global_step=int(kimg), walltime=walltime)
        self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()

class Tee:
    """Copies stdout and stderr to log.txt (as upstream's dnnlib.util.Logger), leaving out progress-bar
    redraws (text with a carriage return). Use as a context manager; the streams are restored on exit."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        self.file = open(self.path, 'a', encoding='utf-8')
        self.streams = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _TeeStream(sys.stdout, self.file), _TeeStream(sys.stderr, self.file)
        return self

    def __exit__(self, exc_type, exc, tb):
        sys.stdout, sys.stderr = self.streams
        if hasattr(exc, 'format_message'):     # a click error ends the run: keep its line in the log too
            self.file.write(f'Error: {exc.format_message()}\n')
        self.file.close()

class _TeeStream:
    def __init__(self, stream, file):
        self.stream, self.file = stream, file

    def write(self, text):
        if '\r' not in text and not self.file.closed:
            self.file.write(text)
            self.file.flush()
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)

"""Where rtm_plugin keeps downloaded and self-trained files, and the one way it writes a file: atomically.

The cache root is `$RTM_CACHE_DIR` when set, else `~/.cache/rtm_plugin`. Every write goes to a temporary file in
the target's own directory (`.<name>.<random>.tmp`, see TEMP_RE) and is renamed into place with os.replace, so a
killed process leaves either the old file or the new one, never a truncated one.
"""

import os
import re
import tempfile
from pathlib import Path

TEMP_RE = re.compile(r'^\..+\.[a-z0-9_]{8}\.tmp$')     # the temporaries atomic_write leaves when it is killed

def cache_dir(*parts, root=None):
    """The cache root (or `root` when given) joined with `parts`; nothing is created."""
    if root is None:
        root = os.environ.get('RTM_CACHE_DIR') or os.path.join(os.path.expanduser('~'), '.cache', 'rtm_plugin')
    return Path(root, *parts)

def _default_mode():
    """What open(path, 'w') would give: 0o666 less the umask (mkstemp's files are 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask

def atomic_write(path, data, mode=None):
    """Create `path` atomically and return it (a Path). `data`: bytes, a str (written as UTF-8), or a callable
    that fills the binary file object it is given. The file gets permission bits `mode`, by default those a
    plain open() would give."""
    if isinstance(data, str):
        data = data.encode('utf-8')
    write = data if callable(data) else (lambda f: f.write(data))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode() if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path

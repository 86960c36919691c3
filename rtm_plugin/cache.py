"""Where rtm_plugin keeps downloaded and self-trained files, and how it writes them without leaving half a file.

The cache root is `$RTM_CACHE_DIR` when set, else `~/.cache/rtm_plugin`. Every write goes to a temporary file in
the target's own directory and is renamed into place with os.replace, so a killed process leaves either the old
file or the new one, never a truncated one.
"""

import os
import tempfile
from pathlib import Path

def cache_dir(*parts, root=None):
    """The cache root (or `root` when given) joined with `parts`; nothing is created."""
    if root is None:
        root = os.environ.get('RTM_CACHE_DIR') or os.path.join(os.path.expanduser('~'), '.cache', 'rtm_plugin')
    return Path(root, *parts)

def atomic_write(path, write_fn):
    """Create `path` atomically: write_fn(file_object) fills a temporary sibling, which then replaces `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path

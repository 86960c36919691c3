"""Build-once loading of C++/CUDA extensions, after upstream's torch_utils/custom_ops.py.

As upstream, each version of the sources builds in its own folder (TORCH_EXTENSIONS_DIR/<py>_<cpu|cuXY>/<name>-<digest
of the sources and the headers beside them>): with one folder per name, two processes running different versions
(two checkouts, or an upgrade while a run goes on) rebuild over each other and one imports the other's module.

Two things differ from upstream, both found on current stacks:
- The module that torch.utils.cpp_extension.load() returns is used as is. With pybind11 3 the built module is
  not placed in sys.modules, so upstream's importlib.import_module() fails after a good build.
- CUDA_HOME is resolved from the real nvcc. When the `nvcc` on PATH is a wrapper script or a symlink, torch
  takes its grandparent directory as the toolkit root, and linking then fails on -lcudart.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys

import torch
import torch.utils.cpp_extension

verbosity = 'brief'             # 'none', 'brief' ("Setting up ... Done."), or 'full' (the compiler's output)

_cached_plugins = dict()

#----------------------------------------------------------------------------

def _is_toolkit(root):
    return root is not None and os.path.isfile(os.path.join(root, 'bin', 'nvcc'))

def find_cuda_home():
    """The CUDA toolkit root: $CUDA_HOME or $CUDA_PATH when set, else the root of the nvcc that really runs.

    nvcc's driver reports the directory its real binary runs from (`_HERE_` in `nvcc -dryrun`), whatever
    wrapper script or symlink stands on PATH in front of it.
    """
    for var in ('CUDA_HOME', 'CUDA_PATH'):
        if os.environ.get(var):
            return os.environ[var]
    nvcc = shutil.which('nvcc')
    if nvcc is not None:
        try:
            probe = subprocess.run([nvcc, '-dryrun', '-x', 'cu', '-E', os.devnull], capture_output=True,
                                   text=True, timeout=60)
            match = re.search(r'^#\$ _HERE_=(.+)$', probe.stdout + probe.stderr, re.MULTILINE)
            if match and _is_toolkit(os.path.dirname(match.group(1).strip())):
                return os.path.dirname(os.path.realpath(match.group(1).strip()))
        except (OSError, subprocess.SubprocessError):
            pass
        root = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        if _is_toolkit(root):
            return root
    return '/usr/local/cuda' if _is_toolkit('/usr/local/cuda') else None

def _use_cuda_home():
    root = find_cuda_home()
    if not _is_toolkit(root):
        raise RuntimeError(f'No CUDA toolkit found (looked for bin/nvcc under {root!r}); set CUDA_HOME')
    # cpp_extension computed its CUDA_HOME when it was imported; point it at the real toolkit.
    torch.utils.cpp_extension.CUDA_HOME = root
    os.environ.setdefault('CUDA_HOME', root)

#----------------------------------------------------------------------------

SOURCE_EXTENSIONS = ('.c', '.cc', '.cpp', '.cu', '.cuh', '.h', '.hpp')

def build_directory(module_name, sources, with_cuda=False):
    """The build folder of this version of the sources: keyed by a digest of their bytes and of the headers in
    their folders (what they may include)."""
    folders = sorted({os.path.dirname(os.path.abspath(s)) for s in sources})
    files = sorted({os.path.abspath(s) for s in sources} |
                   {os.path.join(d, f) for d in folders for f in os.listdir(d) if f.endswith(SOURCE_EXTENSIONS)})
    digest = hashlib.md5()
    for path in files:
        digest.update(os.path.basename(path).encode() + b'\0')
        with open(path, 'rb') as f:
            digest.update(f.read())
    root = os.environ.get('TORCH_EXTENSIONS_DIR') or torch.utils.cpp_extension.get_default_build_root()
    flavour = f'cu{torch.version.cuda.replace(".", "")}' if with_cuda and torch.version.cuda else 'cpu'
    path = os.path.join(root, f'py{sys.version_info.major}{sys.version_info.minor}_{flavour}',
                        f'{module_name}-{digest.hexdigest()[:16]}')
    os.makedirs(path, exist_ok=True)
    return path

def get_plugin(module_name, sources, with_cuda=False, **build_kwargs):
    """Builds (or loads from TORCH_EXTENSIONS_DIR) the extension once per process and returns its module."""
    assert verbosity in ['none', 'brief', 'full']
    if module_name in _cached_plugins:
        return _cached_plugins[module_name]
    if verbosity == 'full':
        print(f'Setting up PyTorch plugin "{module_name}"...')
    elif verbosity == 'brief':
        print(f'Setting up PyTorch plugin "{module_name}"... ', end='', flush=True)
    try:
        torch.utils.cpp_extension.verify_ninja_availability()
        if with_cuda:
            _use_cuda_home()
        build_kwargs.setdefault('build_directory', build_directory(module_name, sources, with_cuda))
        module = torch.utils.cpp_extension.load(name=module_name, sources=sources, with_cuda=with_cuda,
                                                verbose=(verbosity == 'full'), **build_kwargs)
    except BaseException:
        if verbosity == 'brief':
            print('Failed!')
        raise
    if verbosity == 'full':
        print(f'Done setting up PyTorch plugin "{module_name}".')
    elif verbosity == 'brief':
        print('Done.')
    _cached_plugins[module_name] = module
    return module

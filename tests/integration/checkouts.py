"""Shared by the integration tests on real upstream checkouts and by their drivers: temporary copies, byte
snapshots, the rtm-patch CLI, and a tiny C++ op for the custom-op loaders that NVIDIA's repositories pass on."""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The variable naming each upstream checkout -> what it must point at (the commit the patches are written for).
CHECKOUT_VARIABLES = {'RTM_SG2ADA_DIR': 'a stylegan2-ada-pytorch checkout (NVlabs, d72cc7d)',
                      'RTM_SG3_DIR': 'a stylegan3 checkout (NVlabs, c233a91)',
                      'RTM_STUDIOGAN_DIR': 'a PyTorch-StudioGAN checkout (POSTECH-CVLab, 947b35e)'}

def upstream_checkout(variable):
    """(the checkout's path or None, a skip marker for the module's pytestmark when the variable is not set)."""
    import pytest                   # pylint: disable=import-outside-toplevel  (the drivers import this module too)
    path = os.environ.get(variable)
    reason = f'set {variable} to {CHECKOUT_VARIABLES[variable]} to run these integration tests'
    return path, pytest.mark.skipif(not path, reason=reason)

def copy_checkout(src, dst: Path, skip=()) -> Path:
    """A copy of the checkout at `src`, without .git, caches and the folders in `skip`."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns('.git', '__pycache__', *skip), symlinks=True)
    return dst

def write_dataset(folder: Path, n=8, resolution=16):
    """n random RGB PNGs with two classes in dataset.json, as NVlabs' ImageFolderDataset reads them."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import PIL.Image    # pylint: disable=import-outside-toplevel
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    labels = []
    for i in range(n):
        PIL.Image.fromarray(rng.randint(0, 256, (resolution, resolution, 3), dtype=np.uint8)).save(folder / f'img{i}.png')
        labels.append([f'img{i}.png', i % 2])
    (folder / 'dataset.json').write_text(json.dumps({'labels': labels}))
    return folder

def nvlabs_work(base: Path, request, target, copy):
    """For the suites on an NVlabs checkout: a dataset, a copy patched for `target` and a pristine copy
    (`copy(dst)` copies the checkout), and the environment for their scripts: this rtm_plugin, the dnnlib cache in
    `base`, and built torch extensions cached in .pytest_cache."""
    from rtm_plugin.patching import engine  # pylint: disable=import-outside-toplevel
    from rtm_plugin.patching.targets import load_target  # pylint: disable=import-outside-toplevel
    patched = copy(base / 'patched')
    engine.apply(patched, load_target(target))
    env = dict(os.environ, PYTHONPATH=str(REPO), DNNLIB_CACHE_DIR=str(base / 'dnnlib-cache'),
               TORCH_EXTENSIONS_DIR=str(request.config.cache.mkdir('torch_extensions')))
    return dict(base=base, data=write_dataset(base / 'data'), patched=patched, pristine=copy(base / 'pristine'),
                env=env)

def run_python(checkout: Path, env, *args, expect=0, timeout=600):
    """`python ARGS` in the checkout; `.output` is stdout + stderr (dnnlib's Logger sends errors to stdout too)."""
    result = subprocess.run([sys.executable, *map(str, args)], cwd=checkout, env=env, capture_output=True,
                            text=True, timeout=timeout)
    result.output = result.stdout + result.stderr
    if expect is not None and result.returncode != expect:
        raise AssertionError(f'exit {result.returncode} (expected {expect}) from {args}:\n{result.stdout[-3000:]}\n'
                             f'{result.stderr[-3000:]}')
    return result

def run_driver(driver: Path, base: Path, checkout: Path, env, *commands, flags=()):
    """A driver's commands in the checkout: {command: result} from its last output line."""
    result = run_python(checkout, env, driver, base, *commands, *flags)
    return json.loads(result.stdout.strip().splitlines()[-1])

def snapshot(root: Path):
    """Every file's bytes and mode, and every folder, below root."""
    return {str(p.relative_to(root)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) if p.is_file() else None
            for p in sorted(root.rglob('*'))}

def assert_reapply_is_a_no_op_and_revert_restores(root: Path, target, before):
    """On a patched checkout: apply again changes nothing, and revert gives back the `before` snapshot."""
    from rtm_plugin.patching import engine  # pylint: disable=import-outside-toplevel
    patched = snapshot(root)
    assert not engine.apply(root, target).changed
    assert snapshot(root) == patched
    assert engine.revert(root).changed
    assert snapshot(root) == before

def apply_detected_target(root: Path, name):
    """Apply the target detected for `root` (no --target), which must be `name`; it reports every file patched.
    Returns (target, snapshot before)."""
    from rtm_plugin.patching import engine  # pylint: disable=import-outside-toplevel
    from rtm_plugin.patching.targets import resolve_target  # pylint: disable=import-outside-toplevel
    before = snapshot(root)
    target = resolve_target(root)
    assert target.name == name
    assert engine.apply(root, target).changed
    report = engine.check(root, target)
    assert report.state == 'patched' and {f.status for f in report.files} == {'patched'}
    for change in target.changes:
        assert (root / change.path).read_bytes() != before[change.path][0]
        assert b'rtm-plugin' in (root / change.path).read_bytes()
    return target, before

def assert_other_version_refused(root: Path, name, networks):
    """A checkout whose Generator builds its mapper otherwise (`networks`, edited here) is another upstream
    version: apply names the file and the anchor, and changes nothing."""
    from rtm_plugin.patching import engine  # pylint: disable=import-outside-toplevel
    from rtm_plugin.patching.engine import PatchError  # pylint: disable=import-outside-toplevel
    from rtm_plugin.patching.targets import load_target  # pylint: disable=import-outside-toplevel
    path = root / networks
    path.write_bytes(path.read_bytes().replace(b'num_ws=self.num_ws, **mapping_kwargs)',
                                               b'num_ws=self.num_ws, **self.mapping_kwargs)'))
    before = snapshot(root)
    try:
        engine.apply(root, load_target(name))
        raise AssertionError('apply accepted another upstream version')
    except PatchError as err:
        assert 'unknown-version' in str(err) and f'{networks}: mismatch (anchor #1' in str(err), str(err)
    assert snapshot(root) == before

def assert_cli_round_trip(root: Path, name, listed):
    """By the rtm-patch command: check (unpatched), apply --target NAME, check -v (which lists `listed`), apply
    again (a no-op), revert (the original bytes)."""
    before = snapshot(root)
    cli = lambda *a: patch_cli(root, *a)
    assert cli('check').stdout.splitlines()[0].endswith(': unpatched')
    assert cli('apply', '--target', name).returncode == 0
    result = cli('check', '-v')
    assert result.returncode == 0 and ': patched' in result.stdout and listed in result.stdout
    assert 'already patched' in cli('apply').stdout
    assert cli('revert').returncode == 0
    assert snapshot(root) == before

def patch_cli(root: Path, *args):
    """`python -m rtm_plugin.patching ARGS ROOT` with this source tree's rtm_plugin."""
    return subprocess.run([sys.executable, '-m', 'rtm_plugin.patching', *args, str(root)],
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=300)

PROBE_OP = ('#include <torch/extension.h>\n'
            'torch::Tensor twice(torch::Tensor x) { return x * 2; }\n'
            'PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("twice", &twice); }\n')

def probe_custom_ops(custom_ops, work, name):
    """custom_ops.get_plugin(name) on a tiny C++ op in WORK/op: dict(ok=True), or ok=False and the error. Upstream
    re-imports the built module by name, which fails with pybind11 3."""
    import torch  # pylint: disable=import-outside-toplevel
    os.makedirs(os.path.join(work, 'op'), exist_ok=True)    # its own folder: get_plugin hashes the whole folder
    source = os.path.join(work, 'op', 'rtm_probe_op.cpp')
    with open(source, 'w') as f:
        f.write(PROBE_OP)
    custom_ops.verbosity = 'none'
    try:
        module = custom_ops.get_plugin(name, sources=[source])
        return dict(ok=bool(torch.equal(module.twice(torch.ones(3)), torch.full([3], 2.0))))
    except Exception as err:    # pylint: disable=broad-except
        return dict(ok=False, error=f'{type(err).__name__}: {err}')

"""The wheel, installed into a fresh virtual environment that holds only what it declares.

`pip wheel` builds rtm-plugin from a copy of this source tree; a new venv (no system site-packages) gets the wheel
through pip, and, as symlinks into this test environment's site-packages, exactly the distributions its
Requires-Dist names, transitively, with the versions checked. So nothing is downloaded, and an import that works
there works because rtm-plugin declares it. Then: the console scripts, `rtm-patch targets` (the specs ship inside the
wheel), and with RTM_SG2ADA_DIR the README's StyleGAN2-ADA flow: `rtm-patch apply`, train.py --dry-run --map=rtm,
generate.py and calc_metrics.py (their module-level imports: requests, psutil, ...).
"""

import email.parser
import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path, PurePosixPath

import numpy as np
import PIL.Image
import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
SG2ADA = os.environ.get('RTM_SG2ADA_DIR')
# Written by builds, runs and tests, or made beside the code (.gitignore): never part of what a user builds the
# wheel from. Virtual environments (the README's venv-cuda holds a CUDA torch) would make each copy gigabytes.
LOCAL_OUTPUTS = {'.git', 'build', 'dist', '.pytest_cache', 'imle-runs', 'analysis', 'runs', 'out', '.venv', '.whl',
                 '.gl', '.gpu_stage'}

def run(*args, cwd=None, env=None, timeout=600):
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f'exit {result.returncode} from {args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}')
    return result.stdout + result.stderr

def local_outputs(folder, names):
    """shutil.copytree's ignore: what a copy of the source tree leaves out."""
    top = Path(folder) == REPO
    return [n for n in names if n == '__pycache__' or (top and (n in LOCAL_OUTPUTS or n.startswith('venv')
                                                                or n.endswith(('.egg-info', '.whl'))))]

def build_wheel(dst: Path) -> Path:
    """`pip wheel` of a clean copy of the source tree, offline (no build isolation)."""
    src = dst / 'src'
    shutil.copytree(REPO, src, ignore=local_outputs)
    run(sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index', '-q',
        '-w', dst / 'dist', src)
    wheels = list((dst / 'dist').glob('rtm_plugin-*.whl'))
    assert len(wheels) == 1, wheels
    return wheels[0]

def wheel_metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))
        return email.parser.Parser().parsestr(z.read(name).decode())

def wanted(req: Requirement, extras) -> bool:
    return req.marker is None or any(req.marker.evaluate({'extra': e}) for e in (extras or {''}))

def dependency_closure(requires):
    """The installed distributions that `requires` (Requires-Dist lines) pulls in, transitively."""
    found = {}                                  # name: (distribution, the extras followed)
    todo = [r for r in map(Requirement, requires) if wanted(r, ())]
    while todo:
        req = todo.pop()
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise AssertionError(f'{req} is declared but not installed in the test environment') from None
        assert req.specifier.contains(dist.version, prereleases=True), \
            f'{req}: the test environment has {dist.version}'
        key = dist.metadata['Name'].lower()
        followed = found[key][1] if key in found else None
        if followed is not None and set(req.extras) <= followed:
            continue
        extras = (followed or set()) | set(req.extras)
        found[key] = (dist, extras)
        todo += [r for r in map(Requirement, dist.requires or []) if wanted(r, extras)]
    return [dist for dist, _ in found.values()]

def link_distribution(dist, site: Path):
    """Symlinks in `site` to the top-level files and folders of `dist` (its RECORD), its metadata included."""
    assert dist.files is not None, f'{dist.metadata["Name"]} has no RECORD: cannot tell its files'
    home = Path(dist.locate_file(''))
    for top in sorted({PurePosixPath(f).parts[0] for f in dist.files} - {'..', '/', '__pycache__'}):
        if (home / top).exists() and not (site / top).exists():
            (site / top).symlink_to(home / top)

def test_the_wheel_is_built_without_local_environments_and_outputs():
    names = ['rtm_plugin', 'patches', 'README.md', 'venv-cuda', 'venv', '.venv', 'rtm_plugin-0.1.0-py3-none-any.whl',
             'imle-runs', '.pytest_cache', 'rtm_plugin.egg-info', '__pycache__']
    assert sorted(local_outputs(REPO, names)) == sorted(names[3:])
    assert local_outputs(REPO / 'rtm_plugin', ['venv', 'imle', '__pycache__']) == ['__pycache__']   # top level only

@pytest.fixture(scope='module')
def venv(tmp_path_factory):
    """A fresh venv with the wheel installed by pip and only its declared dependencies beside it."""
    base = tmp_path_factory.mktemp('install')
    wheel = build_wheel(base)
    root = base / 'venv'
    run(sys.executable, '-m', 'venv', '--without-pip', root)
    python = root / 'bin' / 'python'
    site = Path(run(python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])').strip())
    for dist in dependency_closure(wheel_metadata(wheel).get_all('Requires-Dist') or []):
        link_distribution(dist, site)
    # No PYTHONPATH (a source tree there would pass for an installed rtm-plugin), no user site-packages.
    env = {k: v for k, v in os.environ.items() if not k.startswith('PYTHON') and k != 'VIRTUAL_ENV'}
    env.update(PATH=f'{root / "bin"}{os.pathsep}{env.get("PATH", "")}', PYTHONNOUSERSITE='1')
    pip = [sys.executable, '-m', 'pip', '--python', python]
    run(*pip, 'install', '--no-deps', '--no-index', '-q', wheel, env=env)
    assert (site / 'rtm_plugin' / '_patches').is_dir() and (root / 'bin' / 'rtm-patch').is_file()
    return dict(base=base, root=root, python=python, site=site, pip=pip, env=env, wheel=wheel)

def test_the_wheel_declares_what_it_needs(venv):
    assert 'No broken requirements found' in run(*venv['pip'], 'check', env=venv['env'])
    meta = wheel_metadata(venv['wheel'])
    assert meta['Requires-Python'] == '>=3.10'
    assert meta['License'] == 'MIT' or meta['License-Expression'] == 'MIT'
    with zipfile.ZipFile(venv['wheel']) as z:
        names = z.namelist()
    assert any(n.endswith('.dist-info/licenses/LICENSE') for n in names)
    assert not [n for n in names if n.endswith('.pyc') or '__pycache__' in n]
    assert [n for n in names if n.startswith('rtm_plugin/imle/presets/') and n.endswith('.yaml')]
    # Nothing of this test environment leaks in: pytest is installed here, not declared.
    probe = subprocess.run([venv['python'], '-c', 'import pytest'], env=venv['env'], capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'pytest'" in probe.stderr

def test_the_wheel_carries_the_patch_specs(venv):
    from rtm_plugin import __version__   # pylint: disable=import-outside-toplevel
    out = run(venv['root'] / 'bin' / 'rtm-patch', 'targets', env=venv['env'], cwd=venv['base'])
    installed = venv['site'] / 'rtm_plugin' / '_patches'
    for name in ('stylegan2-ada-pytorch', 'stylegan3', 'studiogan'):
        assert f'{name}  ({installed / name / "target.py"})' in out
    assert __version__ in run(venv['root'] / 'bin' / 'rtm-patch', '--version', env=venv['env'])
    with zipfile.ZipFile(venv['wheel']) as z:                   # their options: test_cli_options.py
        entry_points = z.read(next(n for n in z.namelist() if n.endswith('.dist-info/entry_points.txt'))).decode()
    scripts = [line.split('=')[0].strip() for line in entry_points.split('[console_scripts]')[1].splitlines()
               if '=' in line]
    assert 'rtm-imle' in scripts and all((venv['root'] / 'bin' / s).is_file() for s in scripts)

@pytest.mark.skipif(not SG2ADA, reason='set RTM_SG2ADA_DIR to a stylegan2-ada-pytorch checkout (NVlabs, d72cc7d) to '
                                       'run the README flow from the installed wheel')
def test_readme_stylegan2_ada_flow_needs_no_other_install(venv):
    base, env = venv['base'], venv['env']
    checkout = base / 'stylegan2-ada-pytorch'
    shutil.copytree(SG2ADA, checkout, ignore=shutil.ignore_patterns('.git', '__pycache__'))
    bin_dir = venv['root'] / 'bin'
    assert 'patched' in run(bin_dir / 'rtm-patch', 'apply', checkout, env=env)
    data = base / 'data'
    data.mkdir()
    rng = np.random.RandomState(0)
    for i in range(4):
        PIL.Image.fromarray(rng.randint(0, 256, (16, 16, 3), dtype=np.uint8)).save(data / f'img{i}.png')
    out = run(venv['python'], 'train.py', f'--outdir={base / "runs"}', f'--data={data}', '--cfg=stylegan2',
              '--map=rtm', '--dry-run', cwd=checkout, env=env)
    options = json.loads(out[out.index('{'):out.index('\nOutput directory:')])
    assert options['G_kwargs']['mapping_kwargs']['map'] == 'rtm'
    assert 'Mapping network:    rtm' in out
    for script in ('generate.py', 'calc_metrics.py'):       # their module-level imports, then --rtm-steps
        assert '--rtm-steps' in run(venv['python'], script, '--help', cwd=checkout, env=env)

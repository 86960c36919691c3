"""Every console script and subcommand answers -h, --help and --version; the folders they write by default are
git-ignored; no tracked file names a path of the machine it was written on."""

import importlib
import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from rtm_plugin import __version__

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = re.findall(r"'(rtm-[a-z-]+)=([\w.]+):(\w+)'", (REPO / 'setup.py').read_text())

def commands():
    """(script, subcommand path, click command) for every console script in setup.py and its subcommands."""
    for script, module, attr in SCRIPTS:
        main = getattr(importlib.import_module(module), attr)
        yield script, [], main
        for name, sub in sorted(getattr(main, 'commands', {}).items()):
            yield script, [name], sub

def git(*args):
    if not (REPO / '.git').exists():
        pytest.skip('not a git checkout')
    return subprocess.run(['git', '-C', str(REPO), *args], capture_output=True, text=True, check=False)

def test_setup_py_declares_the_console_scripts():
    assert {s for s, _, _ in SCRIPTS} == {'rtm-eval', 'rtm-summary', 'rtm-patch', 'rtm-imle',
                                             'rtm-imle-prepare', 'rtm-analyze'}

@pytest.mark.parametrize('script, path', [(s, p) for s, p, _ in commands()],
                         ids=lambda v: ' '.join(v) if isinstance(v, list) else v)
def test_h_and_help_on_every_command(script, path):
    main = next(m for s, _, m in commands() if s == script)
    runner = CliRunner()
    short = runner.invoke(main, [*path, '-h'], prog_name=script)
    long = runner.invoke(main, [*path, '--help'], prog_name=script)
    assert short.exit_code == 0 and long.exit_code == 0, short.output
    assert short.output == long.output and short.output.startswith(f'Usage: {" ".join([script, *path])} ')

@pytest.mark.parametrize('script', [s for s, _, _ in SCRIPTS])
def test_version_on_every_script(script):
    main = next(m for s, _, m in commands() if s == script)
    result = CliRunner().invoke(main, ['--version'], prog_name=script)
    assert result.exit_code == 0 and result.output == f'{script}, version {__version__}\n'

def test_one_version_source():
    setup_py = (REPO / 'setup.py').read_text()
    assert not re.search(r"version\s*=\s*['\"]", setup_py), 'setup.py must read rtm_plugin.__version__'
    assert re.search(r"^__version__ = '([^']+)'", (REPO / 'rtm_plugin' / '__init__.py').read_text(), re.M)

def test_default_output_folders_are_ignored():
    defaults = {p.default for _, _, cmd in commands() for p in cmd.params if p.name == 'outdir' and p.default}
    assert {'imle-runs', 'analysis'} <= defaults
    for folder in defaults:
        assert git('check-ignore', '-q', f'{folder}/00000-run/file.png').returncode == 0, f'{folder}/ is not ignored'
    for tracked in ('rtm_plugin/analysis/cli.py', 'docs/analysis', 'patches/README.md'):   # only the top level
        assert git('check-ignore', '-q', tracked).returncode == 1, tracked

def test_no_machine_paths_in_tracked_files():
    files = git('ls-files', '-z').stdout.split('\0')
    roots = ('work', 'farm', 'tmp/rtm', 'opt/wheels', 'root', r'home/\w+')     # as ../shared/hooks/before-stop
    machine = re.compile(r'(^|[^A-Za-z0-9_.])/(' + '|'.join(roots) + ')/')
    found = []
    for name in filter(None, files):
        path = REPO / name
        if path.is_file():
            try:
                text = path.read_text(encoding='utf-8')
            except UnicodeDecodeError:
                continue
            found += [f'{name}:{i}: {line.strip()}' for i, line in enumerate(text.splitlines(), 1) if machine.search(line)]
    assert not found, '\n'.join(found)

def test_ci_runs_the_readme_test_command():
    command = (REPO / '.ci' / 'run').read_text().strip().splitlines()[-1]
    assert command == 'pip install torch==2.13.0 -e ".[test]" && python -m pytest -q'
    readme = (REPO / 'README.md').read_text()
    assert readme.count(f'{command}') >= 2           # "Two commands" and "Tests and CI"

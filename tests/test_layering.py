"""The package's layering, read from the import statements (ast, nothing is imported):

- the top-level modules of rtm_plugin are the shared layer (sampling, files, image_reader, image_grid, snapshots,
  ...): they import none of imle/, analysis/ and metrics/ (gpu_check, a command that exercises everything, aside);
- metrics/ is a library of image metrics: it imports neither imle/ nor analysis/;
- imle/ and analysis/ may use metrics/ and the shared layer, never each other;
- only imle/ itself (its CLI) imports the trainer, rtm_plugin.imle.train, which brings DDP and signal handling."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / 'rtm_plugin'
AREAS = ('imle', 'analysis', 'metrics')
SHARED_EXCEPTIONS = ('gpu_check.py',)
FORBIDDEN = {'metrics': {'imle', 'analysis'}, 'imle': {'analysis'}, 'analysis': {'imle'}}

def imported_modules(path, root):
    """Every module a file of the package at `root` imports, at any depth (lazy imports in functions too), as
    dotted absolute names; `from a import b` counts as a and a.b (b may be a module)."""
    tree = ast.parse(path.read_text(encoding='utf-8'))
    package = ['rtm_plugin', *path.relative_to(root).parts[:-1]]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = '.'.join(base + ([node.module] if node.module else []))
            yield module
            yield from (f'{module}.{alias.name}' for alias in node.names)

def edges(root=PACKAGE):
    """[(file relative to rtm_plugin, imported rtm_plugin module)]."""
    return [(path.relative_to(root), module) for path in sorted(root.rglob('*.py'))
            for module in imported_modules(path, root) if module.split('.')[0] == 'rtm_plugin']

def area(module):
    parts = module.split('.')
    return parts[1] if len(parts) > 1 and parts[1] in AREAS else None

def test_the_walker_sees_relative_and_lazy_imports(tmp_path):
    pkg = tmp_path / 'rtm_plugin'
    (pkg / 'metrics').mkdir(parents=True)
    (pkg / 'metrics' / 'x.py').write_text('def f():\n    from ..imle import train\n    import rtm_plugin.analysis.view\n')
    found = {m for _, m in edges(pkg)}
    assert {'rtm_plugin.imle.train', 'rtm_plugin.analysis.view'} <= found

def test_areas_import_only_what_the_layering_allows():
    bad = [f'{path} imports {module}' for path, module in edges()
           if len(path.parts) > 1 and area(module) in FORBIDDEN.get(path.parts[0], ())]
    assert not bad, 'imports against the layering:\n' + '\n'.join(bad)

def test_the_shared_layer_imports_no_area():
    bad = [f'{path} imports {module}' for path, module in edges()
           if len(path.parts) == 1 and path.name not in SHARED_EXCEPTIONS and area(module)]
    assert not bad, 'the shared layer depends on an area:\n' + '\n'.join(bad)

def test_only_imle_imports_the_trainer():
    bad = [f'{path} imports {module}' for path, module in edges()
           if (module == 'rtm_plugin.imle.train' or module.startswith('rtm_plugin.imle.train.'))
           and path.parts[0] != 'imle']
    assert not bad, 'the trainer (DDP, signal handling) imported outside imle/:\n' + '\n'.join(bad)

def test_the_architecture_page_names_every_module():
    """ARCHITECTURE.md's module map stays true: every module of the shared layer, the glue and the fused op is
    named there (the areas' own modules are listed by name too, except their __init__/__main__)."""
    text = (PACKAGE.parent / 'ARCHITECTURE.md').read_text(encoding='utf-8')
    folders = [PACKAGE, *(PACKAGE / area for area in ('integrations', 'patching', *AREAS)), PACKAGE.parent / 'torch_utils_ext']
    names = [p.stem for folder in folders for p in folder.glob('*.py') if p.stem not in ('__init__', '__main__')]
    missing = sorted(name for name in names if name not in text)
    assert not missing, f'ARCHITECTURE.md does not name: {", ".join(missing)}'

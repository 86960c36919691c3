"""custom_ops.get_plugin builds each version of an extension's sources in its own folder.

With one folder per module name, 8 processes of two checkouts at once rebuilt over each other: one imported the
other's module (`module 'rtm_fused_cpu_...' has no attribute 'pack'`). The builds themselves are mocked here:
what matters is where they go."""

import os

import torch.utils.cpp_extension

from torch_utils_ext import custom_ops

def test_each_version_of_the_sources_builds_in_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_EXTENSIONS_DIR', str(tmp_path / 'ext'))
    folders = []
    monkeypatch.setattr(torch.utils.cpp_extension, 'load', lambda **kw: folders.append(kw['build_directory']) or
                        type('Module', (), {})())
    monkeypatch.setattr(torch.utils.cpp_extension, 'verify_ninja_availability', lambda: None)
    monkeypatch.setattr(custom_ops, 'verbosity', 'none')
    src = tmp_path / 'src'
    src.mkdir()
    (src / 'op.cpp').write_text('#include "op.h"\n')
    (src / 'op.h').write_text('int f();\n')
    (src / 'notes.txt').write_text('not a source')

    def build():
        custom_ops._cached_plugins.pop('op_test', None)         # a new process
        custom_ops.get_plugin('op_test', sources=[str(src / 'op.cpp')])
        return folders[-1]

    first = build()
    assert build() == first and os.path.isdir(first)            # same sources: the same folder, rebuilt by ninja
    assert first.startswith(str(tmp_path / 'ext')) and os.path.basename(first).startswith('op_test-')
    (src / 'notes.txt').write_text('edited')
    assert build() == first                                     # not a source
    (src / 'op.h').write_text('int f(int);\n')
    second = build()
    assert second != first                                      # a header changed: another version, another folder
    (src / 'op.h').write_text('int f();\n')
    assert build() == first

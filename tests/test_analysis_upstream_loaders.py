"""rtm-analyze's loaders for upstream generators, without the upstream checkouts: which NVlabs tree a pickle needs
and which StudioGAN checkpoint a run folder gives (the checkouts themselves: tests/integration/)."""

import pickle

import click
import pytest

from rtm_plugin.analysis.loader import load_network, nvlabs_tree
from rtm_plugin.analysis.options import open_view
from rtm_plugin.analysis.studiogan_loader import generator_checkpoint, is_studiogan_run

SG3_SOURCE = 'class Generator(torch.nn.Module):\n    def forward(self, z, c, truncation_psi=1, update_emas=False): pass\n'
SG2ADA_SOURCE = 'class Generator(torch.nn.Module):\n    def forward(self, z, c, truncation_psi=1): pass\n'

def nvlabs_pickle(path, source):
    """A pickle shaped like an NVlabs one: a persistent object (module source + class name) rebuilt by
    torch_utils.persistence, which is not importable here."""
    meta = pickle.dumps(dict(type='class', version=4, module_src=source, class_name='Generator'), protocol=2)
    path.write_bytes(b'ctorch_utils.persistence\n_reconstruct_persistent_obj\n' + meta[2:-1] + b'\x85R.')
    return path

def test_nvlabs_pickle_names_the_checkout_of_its_tree(tmp_path, monkeypatch):
    sg3 = nvlabs_pickle(tmp_path / 'sg3.pkl', SG3_SOURCE)
    sg2 = nvlabs_pickle(tmp_path / 'sg2.pkl', SG2ADA_SOURCE)
    assert (nvlabs_tree(sg3), nvlabs_tree(sg2)) == ('stylegan3', 'stylegan2-ada-pytorch')
    monkeypatch.delenv('RTM_SG3_DIR', raising=False)
    monkeypatch.setenv('RTM_SG2ADA_DIR', str(tmp_path))     # the other tree's checkout does not help
    with pytest.raises(ValueError, match=r'sg3\.pkl is a stylegan3 pickle: set RTM_SG3_DIR to a stylegan3 checkout'):
        load_network(sg3)

def touch(folder, *names):
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b'')
    return folder

def test_studiogan_run_gives_g_ema_of_the_best_checkpoint_else_the_latest(tmp_path):
    both = touch(tmp_path / 'both', 'model=G-best-weights-step=40.pth', 'model=G_ema-best-weights-step=40.pth',
                 'model=G_ema-current-weights-step=90.pth', 'model=D-best-weights-step=40.pth')
    assert generator_checkpoint(str(both)) == ('G_ema', str(both / 'model=G_ema-best-weights-step=40.pth'))
    latest = touch(tmp_path / 'latest', 'model=G_ema-current-weights-step=100.pth',
                   'model=G_ema-current-weights-step=90.pth')
    assert generator_checkpoint(str(latest)) == ('G_ema', str(latest / 'model=G_ema-current-weights-step=100.pth'))
    no_ema = touch(tmp_path / 'no-ema', 'model=G-current-weights-step=7.pth', 'model=D-current-weights-step=7.pth')
    assert generator_checkpoint(str(no_ema)) == ('G', str(no_ema / 'model=G-current-weights-step=7.pth'))
    empty = touch(tmp_path / 'empty', 'model=D-best-weights-step=40.pth')
    assert not is_studiogan_run(str(empty)) and is_studiogan_run(str(both))
    with pytest.raises(ValueError, match='no StudioGAN checkpoint here'):
        generator_checkpoint(str(empty))

def test_studiogan_run_without_its_yaml_is_a_usage_error(tmp_path):
    run = touch(tmp_path / 'run', 'model=G_ema-best-weights-step=40.pth')
    with pytest.raises(click.UsageError, match='is a StudioGAN run: pass --studiogan-cfg'):
        open_view(str(run), 'cpu')

def test_studiogan_run_needs_the_checkout(tmp_path, monkeypatch):
    run = touch(tmp_path / 'run', 'model=G_ema-best-weights-step=40.pth')
    monkeypatch.delenv('RTM_STUDIOGAN_DIR', raising=False)
    with pytest.raises(ValueError, match='set RTM_STUDIOGAN_DIR to a PyTorch-StudioGAN checkout'):
        load_network(str(run), studiogan_cfg=['StyleGAN2-RTM.yaml'])
    monkeypatch.setenv('RTM_STUDIOGAN_DIR', str(tmp_path))
    with pytest.raises(ValueError, match='is not a PyTorch-StudioGAN checkout'):
        load_network(str(run), studiogan_cfg=['StyleGAN2-RTM.yaml'])

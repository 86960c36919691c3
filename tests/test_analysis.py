"""rtm-analyze on tiny RS-IMLE generators (few-shot decoder at 16 px): files, values against direct calls, CLI."""

import csv
import json
import pickle
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from imle_tiny import TINY
from rtm_plugin.analysis.cli import main
from rtm_plugin.analysis.loader import load_network, real_images
from rtm_plugin.analysis.neighbours import k_nearest
from rtm_plugin.analysis.progression import step_images
from rtm_plugin.analysis.slerp import slerp
from rtm_plugin.analysis.stability import trajectory_stats
from rtm_plugin.analysis.view import GeneratorView
from rtm_plugin.datasets.stacked_digits import make_stacked_digits
from rtm_plugin.imle.checkpoint import save_snapshot, snapshot_name
from rtm_plugin.imle.generator import NoDiscriminator, build_generator
from rtm_plugin.metrics.evaluate import evaluate_images
from rtm_plugin.sampling import EVAL, seeded, to_uint8

RTM_H, MLP_DEPTH = 4, 3
TSK = dict(name='stacked_digits', num_images=100, resolution=16, seed=0)

def write_snapshot(folder, cfg, step=10):
    torch.manual_seed(1)
    G = build_generator(cfg).eval().requires_grad_(False)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / snapshot_name(step)
    save_snapshot(path, dict(G=G, G_ema=G, D=NoDiscriminator(), training_set_kwargs=TSK))
    return path

@pytest.fixture(scope='module')
def nets(tmp_path_factory):
    root = tmp_path_factory.mktemp('analysis-nets')
    return dict(rtm=write_snapshot(root / 'rtm', replace(TINY, rtm_h=RTM_H)),
                mlp=write_snapshot(root / 'mlp', replace(TINY, map='mlp', mlp_layers=MLP_DEPTH)))

@pytest.fixture
def cli(digits_cache, monkeypatch, tmp_path):
    """Run rtm-analyze in-process; the digit classifier comes from the session's cache."""
    monkeypatch.setenv('RTM_CACHE_DIR', str(digits_cache))

    def run(*args):
        result = CliRunner().invoke(main, [*map(str, args), '--outdir', str(tmp_path / 'out')])
        assert result.exit_code == 0, result.output + repr(result.exception)
        return result.output
    run.out = tmp_path / 'out'
    return run

def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))

def view_of(path):
    return GeneratorView(load_network(path).G)

# ---------------------------------------------------------------- loader and view

def test_loader_takes_a_run_folder_and_rejects_foreign_files(nets, tmp_path, monkeypatch):
    net = load_network(nets['rtm'].parent)                      # the folder: its latest snapshot
    assert net.path == str(nets['rtm']) and net.training_set_kwargs == TSK and not net.G.training
    (tmp_path / 'junk.pkl').write_bytes(b'not a pickle')
    with pytest.raises(ValueError, match='not a network pickle'):
        load_network(tmp_path / 'junk.pkl')
    (tmp_path / 'no_g.pkl').write_bytes(pickle.dumps(dict(G=None)))
    with pytest.raises(ValueError, match='G_ema'):
        load_network(tmp_path / 'no_g.pkl')
    # A StyleGAN2-ADA pickle refers to upstream modules; without RTM_SG2ADA_DIR the error says what to set.
    (tmp_path / 'sg.pkl').write_bytes(b'ctorch_utils.persistence\n_reconstruct_persistent_obj\n.')
    monkeypatch.delenv('RTM_SG2ADA_DIR', raising=False)
    for name in ('torch_utils', 'torch_utils.persistence'):    # unimportable, whatever an earlier test imported
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ValueError, match='RTM_SG2ADA_DIR'):
        load_network(tmp_path / 'sg.pkl')

def test_reals_are_the_held_out_stacked_digits_draw(nets):
    net = load_network(nets['rtm'])
    assert np.array_equal(real_images(net, num=20), make_stacked_digits(20, 16, seed=1)[0])

def test_trace_last_frame_equals_the_normal_output(nets):
    for name, depth in (('rtm', RTM_H), ('mlp', MLP_DEPTH)):
        view = view_of(nets[name])
        assert view.kind == name and view.depth == depth
        z, c = view.latents(5, seed=3)
        with torch.no_grad():
            x = view.trunk_input(z, c)
            trace = view.trace(x)
            assert trace.shape == (depth, 5, TINY.w_dim)
            assert torch.equal(trace[-1], view.w(x))
            frames = step_images(view, z, c)
        assert frames.shape == (depth, 5, 3, 16, 16)
        assert torch.equal(frames[-1], to_uint8(view.G(z)))      # decoding the last step = the generator's sample

def test_view_latents_are_the_trainers_evaluation_latents(nets):
    """So an H sweep at the trained H scores the very samples rtm-imle's final metrics scored."""
    view = view_of(nets['rtm'])
    z, c = view.latents(7, seed=5)
    assert c is None and torch.equal(z, torch.randn([7, TINY.z_dim], generator=seeded(5, EVAL)))

# ---------------------------------------------------------------- hsweep

def test_hsweep_files_and_values_equal_direct_metric_calls(nets, cli):
    cli('hsweep', '--network', nets['rtm'], '--steps', '1,4', '--num-samples', 40, '--num-real', 40)
    for name in ('hsweep.md', 'hsweep.csv', 'hsweep.json', 'hsweep.png'):
        assert (cli.out / name).stat().st_size > 0
    assert Image.open(cli.out / 'hsweep.png').format == 'PNG'
    rows = read_csv(cli.out / 'hsweep.csv')
    assert [int(r['H']) for r in rows] == [1, 4]
    G = load_network(nets['rtm']).G
    reals = make_stacked_digits(40, 16, seed=1)[0]
    z = torch.randn([40, TINY.z_dim], generator=seeded(0, EVAL))
    for row in rows:
        with torch.no_grad():
            fakes = to_uint8(G(z, mapping_kwargs=dict(H=int(row['H']))))
        direct = evaluate_images(reals, fakes, detector='digits')
        assert set(direct) == set(row) - {'H'}
        for k, v in direct.items():
            assert float(row[k]) == pytest.approx(float(v), rel=1e-12, abs=1e-12), k
    md = (cli.out / 'hsweep.md').read_text()
    assert md.count('\n| ') == 3 and 'trained H = 4' in md

def test_hsweep_refuses_an_mlp_generator(nets, digits_cache, monkeypatch):
    monkeypatch.setenv('RTM_CACHE_DIR', str(digits_cache))
    result = CliRunner().invoke(main, ['hsweep', '--network', str(nets['mlp']), '--num-samples', '10'])
    assert result.exit_code != 0 and 'needs an RTM mapper' in result.output

# ---------------------------------------------------------------- progression

def test_progression_gif_frame_count_size_and_strip(nets, cli):
    cli('progression', '--rtm', nets['rtm'], '--mlp', nets['mlp'], '--num', 4, '--cols', 2, '--scale', 2)
    gif = Image.open(cli.out / 'progression.gif')
    panel_w, panel_h = 2 * 32 + 2, 14 + 2 * 32 + 2               # 2x2 tiles of 32 px, 2 px gaps, a label line
    assert gif.n_frames == max(RTM_H, MLP_DEPTH)
    assert gif.size == (2 * panel_w + 12, panel_h)
    strip = Image.open(cli.out / 'progression.png')
    assert strip.size == (RTM_H * 34 - 2, 2 * (14 + 4 * 34 - 2) + 12)      # rows = samples, columns = steps
    try:
        import imageio_ffmpeg  # noqa: F401
        assert (cli.out / 'progression.mp4').stat().st_size > 0
    except ImportError:
        assert not (cli.out / 'progression.mp4').exists()

# ---------------------------------------------------------------- stability and slerp

def test_stability_rows_are_the_trace_step_norms(nets, cli):
    view = view_of(nets['rtm'])
    z, _ = view.latents(16, 0)
    rows = trajectory_stats(view, z, trace_len=6)
    with torch.no_grad():
        x = view.trunk_input(z)
        trace = torch.cat([view.initial_w(x)[None], view.trace(x, 6)])
    means = (trace[1:] - trace[:-1]).norm(dim=2).mean(dim=1)
    assert [r['step'] for r in rows] == list(range(1, 7)) and rows[0]['ratio'] is None
    for h, r in enumerate(rows):
        assert r['mean_step'] == pytest.approx(float(means[h]), rel=1e-6)
        if h:
            assert r['ratio'] == pytest.approx(float(means[h] / means[h - 1]), rel=1e-6)
    cli('stability', '--network', nets['rtm'], '--steps', 6, '--num', 16)
    assert len(read_csv(cli.out / 'stability.csv')) == 6 and (cli.out / 'stability.png').exists()

def test_slerp_endpoints_norms_and_grid(nets, cli):
    z0, z1 = torch.randn(3, 16), torch.randn(3, 16)
    z1 = z1 / z1.norm(dim=1, keepdim=True) * z0.norm(dim=1, keepdim=True)
    path = slerp(z0, z1, torch.linspace(0, 1, 5))
    assert torch.allclose(path[:, 0], z0, atol=1e-5) and torch.allclose(path[:, -1], z1, atol=1e-5)
    assert torch.allclose(path.norm(dim=2), z0.norm(dim=1, keepdim=True).expand(3, 5), rtol=1e-4)
    assert torch.allclose(slerp(z0, z0, [0.5])[:, 0], z0, atol=1e-5)         # parallel: no division by zero
    cli('slerp', '--network', nets['rtm'], '--network', nets['mlp'], '--rows', 2, '--cols', 3, '--scale', 1)
    assert Image.open(cli.out / 'slerp.png').size == (3 * 18 - 2, 2 * (14 + 2 * 18 - 2) + 12)

# ---------------------------------------------------------------- nearest neighbours and latency

def test_k_nearest_and_nn_sheet(nets, cli):
    points = torch.tensor([[0.0, 0], [1, 0], [5, 0], [2, 0]])
    dist, idx = k_nearest(torch.tensor([[1.9, 0.0]]), points, 3)
    assert idx.tolist() == [[3, 1, 0]] and torch.allclose(dist, torch.tensor([[0.1, 0.9, 1.9]]), atol=1e-3)
    cli('nn', '--baseline', nets['mlp'], '--rtm', nets['rtm'], '--queries', 3, '--pool', 20, '--k', 2,
        '--scale', 1)
    assert Image.open(cli.out / 'nn.png').size == (16 + 2 * (2 * 18 - 2) + 2 * 10, 14 + 3 * 18 - 2)
    assert [r['generator'] for r in read_csv(cli.out / 'nn.csv')] == [f'MLP-{MLP_DEPTH}', f'RTM (H={RTM_H}, L=1)']

def test_latency_rows(nets, cli):
    output = cli('latency', '--rtm', nets['rtm'], '--mlp', nets['mlp'], '--batch', 4, '--warmup', 1, '--repeats', 2)
    rows = json.loads((cli.out / 'latency.json').read_text())['rows']
    assert [(r['mapper'], r['path'].split()[0]) for r in rows] == [
        (f'RTM (H={RTM_H}, L=1)', 'fused'), (f'RTM (H={RTM_H}, L=1)', 'reference'), (f'MLP-{MLP_DEPTH}', '-')]
    for r in rows:
        if 'mapper_us' in r:
            assert 0 < r['mapper_us'] < r['generator_us'] and r['mapper_share'] == r['mapper_us'] / r['generator_us']
    assert rows[-1]['mapper_vs_mlp'] == 1.0 and 'median of 2' in output

# ---------------------------------------------------------------- adaptive halting

def test_sample_with_halting_tol_zero_equals_fixed_H_max_and_huge_tol_uses_H_min(nets, cli):
    def sample(*args):
        cli('sample', '--network', nets['rtm'], '--num', 12, '--npy', *args)
        return np.load(cli.out / 'samples.npy'), (cli.out / 'samples-steps.txt')
    fixed, _ = sample('--steps', 6)
    halted, steps = sample('--steps', 6, '--halt-tol', 0)
    assert steps.read_text().split() == ['6'] * 12
    assert np.abs(halted.astype(int) - fixed).max() <= 1          # fused op: one call vs per step, float rounding
    at_min, _ = sample('--steps', 2)
    halted, steps = sample('--steps', 6, '--halt-tol', 1e9, '--h-min', 2)
    assert steps.read_text().split() == ['2'] * 12 and np.abs(halted.astype(int) - at_min).max() <= 1

def test_halting_an_mlp_generator_is_refused_by_name(nets):
    view = view_of(nets['mlp'])
    z, c = view.latents(2, seed=0)
    with pytest.raises(ValueError, match='adaptive halting needs an RTM mapper; this generator has MLP-'):
        view.images(z, c, halt_tol=0.1)

def test_halted_images_match_fixed_H_at_their_own_step_count(nets):
    view = view_of(nets['rtm'])
    z, _ = view.latents(24, seed=2)
    images, steps = view.images(z, H=12, halt_tol=0.02, use_fused=False)
    assert len(steps.unique()) > 1
    for h in steps.unique().tolist():
        fixed, _ = view.images(z, H=h, use_fused=False)
        rows = steps == h
        assert (images[rows].int() - fixed[rows].int()).abs().max() <= 1

def test_halt_report(nets, cli):
    cli('halt', '--network', nets['rtm'], '--tol', 0, '--tol', 1e9, '--h-max', 5, '--h-min', 2,
        '--num-samples', 30, '--num-real', 30)
    report = json.loads((cli.out / 'halt.json').read_text())
    fixed, zero, huge = report['rows']
    assert fixed['tol'] == 'fixed' and fixed['mean_steps'] == 5
    assert zero['mean_steps'] == 5 and zero['saved'] == 0 and zero['pixel_diff'] < 0.5
    assert huge['mean_steps'] == 2 and huge['saved'] == pytest.approx(0.6)
    assert report['histograms'] == {'0.0': [0, 0, 0, 0, 30], '1000000000.0': [0, 30, 0, 0, 0]}
    assert huge['fid_change'] == pytest.approx(huge['fid'] - fixed['fid'])
    assert (cli.out / 'halt.png').exists() and (cli.out / 'halt.md').read_text().count('\n| ') == 4

def test_module_entry_point_lists_every_tool():
    output = CliRunner().invoke(main, ['--help']).output
    for tool in ('hsweep', 'progression', 'stability', 'slerp', 'nn', 'latency', 'halt', 'sample'):
        assert f'  {tool} ' in output

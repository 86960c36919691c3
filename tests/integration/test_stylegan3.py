"""NVlabs' stylegan3 with rtm-patch, on CPU, on temporary copies of a real checkout (RTM_SG3_DIR).

Everything upstream runs in subprocesses with the copy as working directory; sg3_driver.py does the in-checkout
work. Pickles go to temporary folders only: they embed upstream source.

What runs on CPU: every network op of the three configs has a reference path that runs where CUDA does not
(bias_act, upfirdn2d, filtered_lrelu's _filtered_lrelu_ref, conv2d_gradfix falls back to torch's conv2d), so the
networks, the loss step, pickles and gen_images.py / gen_video.py run here. What does not: train.py's training loop
and calc_metrics.py fix the device to torch.device('cuda', rank), so they are run up to that point; and the CUDA
kernels themselves (filtered_lrelu.cu, bias_act.cu, upfirdn2d.cu) compile with nvcc but need a GPU to run.
"""

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import checkouts
import stylegan_checks as checks
from checkouts import assert_reapply_is_a_no_op_and_revert_restores, patch_cli

DRIVER = Path(__file__).with_name('sg3_driver.py')
UPSTREAM = os.environ.get('RTM_SG3_DIR')
CONFIGS = ('stylegan2', 'stylegan3-t')
MAPPERS = ('RTMMappingNetwork', 'RTMMappingNetworkSG3')

pytestmark = pytest.mark.skipif(not UPSTREAM, reason='set RTM_SG3_DIR to a stylegan3 checkout (NVlabs, c233a91) '
                                                     'to run these integration tests')

def copy_checkout(dst: Path) -> Path:
    return checkouts.copy_checkout(UPSTREAM, dst, skip=('docs',))

@pytest.fixture(scope='module')
def work(tmp_path_factory, request):
    """A dataset, a patched copy and a pristine copy of the checkout, and the environment to run them."""
    return checkouts.nvlabs_work(tmp_path_factory.mktemp('sg3'), request, 'stylegan3', copy_checkout)

def run(work, checkout, *args, expect=0, timeout=600):
    return checkouts.run_python(checkout, work['env'], *args, expect=expect, timeout=timeout)

def drive(work, checkout, *commands, flags=()):
    return checkouts.run_driver(DRIVER, work['base'], checkout, work['env'], *commands, flags=flags)

@pytest.fixture(scope='module')
def built(work):
    return drive(work, work['patched'], 'build')['build']

def train_args(work, cfg='stylegan3-t'):
    return ['train.py', f'--outdir={work["base"] / "runs"}', f'--data={work["data"]}', f'--cfg={cfg}', '--gpus=1',
            '--batch=4', '--gamma=1']

#----------------------------------------------------------------------------
# rtm-patch on the real checkout.

def test_apply_check_reapply_revert_byte_identical(tmp_path):
    root = copy_checkout(tmp_path / 'sg3')
    target, before = checkouts.apply_detected_target(root, 'stylegan3')
    assert {c.path for c in target.changes} >= {'training/networks_stylegan2.py', 'training/networks_stylegan3.py',
                                                 'gen_images.py', 'gen_video.py', 'calc_metrics.py'}
    assert_reapply_is_a_no_op_and_revert_restores(root, target, before)

def test_cli_round_trip(tmp_path):
    root = copy_checkout(tmp_path / 'sg3')
    checkouts.assert_cli_round_trip(root, 'stylegan3', 'pkg_resources')
    result = patch_cli(root, 'apply', '--target', 'stylegan2-ada-pytorch')
    assert result.returncode == 2 and 'is not a stylegan2-ada-pytorch checkout: it lacks training/networks.py' in result.stderr

def test_other_upstream_version_is_refused_naming_file_and_anchor(tmp_path):
    checkouts.assert_other_version_refused(copy_checkout(tmp_path / 'sg3'), 'stylegan3', 'training/networks_stylegan3.py')

#----------------------------------------------------------------------------
# train.py options.

@pytest.mark.parametrize('cfg', ['stylegan2', 'stylegan3-t', 'stylegan3-r'])
def test_train_dry_run_shows_rtm_options(work, cfg):
    args = [*train_args(work, cfg), '--map=rtm', '--rtm-h=8', '--rtm-l=2', '--rtm-tokens=8', '--rtm-dim=64',
            '--rtm-block=attention', '--desc=x']
    out = run(work, work['patched'], *args, '--dry-run').stdout
    options = json.loads(out[out.index('{'):out.index('\nOutput directory:')])
    assert options['G_kwargs']['mapping_kwargs'] == dict(map='rtm', H=8, L=2, tokens=8, token_dim=64, block='attention')
    assert options['D_kwargs']['mapping_kwargs'] == {}
    assert options['run_dir'].endswith(f'00000-{cfg}-data-gpus1-batch4-gamma1-rtm-h8l2-t8x64-attention-x')
    assert 'Mapping network:     rtm (H=8, L=2, tokens=8, token_dim=64, block=attention)' in out
    assert not (work['base'] / 'runs').exists()

def test_train_real_start_builds_the_rtm_generator_and_stops_at_cuda(work):
    """Past InfiniteSampler (fixed), the networks are built with the RTM mapper; then .to('cuda') stops it."""
    result = run(work, work['patched'], *train_args(work), '--map=rtm', '--workers=1', '--metrics=none',
                 '--cbase=256', '--cmax=32', expect=None)
    assert result.returncode != 0
    run_dir = next((work['base'] / 'runs').iterdir())
    written = json.loads((run_dir / 'training_options.json').read_text())
    assert written['G_kwargs']['mapping_kwargs']['map'] == 'rtm'
    assert 'InfiniteSampler' not in result.output and 'Num images:  8' in result.output
    assert 'Constructing networks...' in result.output and 'Torch not compiled with CUDA enabled' in result.output
    shutil.rmtree(work['base'] / 'runs')

def test_rtm_options_without_map_rtm_and_map_depth_with_it_are_errors(work):
    result = run(work, work['patched'], *train_args(work), '--map=mlp', '--rtm-h=4', '--dry-run', expect=2)
    assert '--rtm-h: RTM options, but the mapper is mlp; add --map=rtm' in result.output
    result = run(work, work['patched'], *train_args(work), '--map=rtm', '--map-depth=4', '--dry-run', expect=2)
    assert '--map-depth is the depth of the MLP mapper' in result.output
    out = run(work, work['patched'], *train_args(work), '--map-depth=3', '--dry-run').stdout
    assert '"num_layers": 3' in out and '"map"' not in out and 'Mapping network:     mlp (3 layers)' in out

#----------------------------------------------------------------------------
# Networks, loss, pickles.

@pytest.mark.parametrize('cfg, module, mapper, phases', [
    ('stylegan2', 'networks_stylegan2', 'RTMMappingNetwork', ['Gmain', 'Greg', 'Dmain', 'Dreg']),
    ('stylegan3-t', 'networks_stylegan3', 'RTMMappingNetworkSG3', ['Gboth', 'Dmain', 'Dreg']),
])
def test_generator_and_one_loss_step(built, cfg, module, mapper, phases):
    out = built[cfg]
    checks.check_loss_step(out, phases)                                 # w_avg moved on update_emas
    assert out['desc'] == f'{cfg}-data-gpus1-batch4-gamma1-rtm-h3l2-t4x16'
    assert out['G_class'] == f'training.{module}.Generator' and out['G_mapping'] == mapper
    assert out['mapping_subclass_of'] == [module]
    assert (out['pl_mean'] > 0) == (cfg == 'stylegan2')                 # path length: stylegan2 only

def test_stylegan3_r_builds_and_samples(work):
    out = drive(work, work['patched'], 'build_r')['build_r']
    assert out['G_mapping'] == 'RTMMappingNetworkSG3' and out['shape'] == [3, 3, 16, 16] and out['finite']
    assert out['desc'].startswith('stylegan3-r-') and out['desc'].endswith('-rtm-h3l2-t4x16')

@pytest.mark.parametrize('cfg, mlp_layers', [('stylegan2', 8), ('stylegan3-t', 2)])
def test_resume_from_mlp_pickle_keeps_synthesis_and_starts_a_fresh_mapper(built, cfg, mlp_layers):
    assert built[cfg]['mlp_layers'] == mlp_layers           # upstream's own MLP for the config
    checks.check_resume(built[cfg]['resume'])

def test_training_loop_calls_the_resume_guard_before_copying(work):
    checks.check_resume_guard(work['patched'])

def test_pickle_round_trip_in_patched_checkout(work, built):
    result = drive(work, work['patched'], 'load', 'steps', 'metric')
    for cfg, mapper in zip(CONFIGS, MAPPERS):
        checks.check_load(result['load'][cfg], mapper)
        checks.check_steps(result['steps'][cfg])
    checks.check_metric(result['metric'], 'stylegan3')

@pytest.mark.parametrize('checkout', ['patched', 'pristine'])
def test_pickle_loads_without_rtm_plugin(work, built, checkout):
    # An unpatched stylegan3 imports pkg_resources, which this environment's setuptools (>= 81) no longer has:
    # the pristine copy gets parse_version as older setuptools had it (the test below shows it needs it).
    flags = ['--block-plugin'] + (['--pkg-resources'] if checkout == 'pristine' else [])
    load = drive(work, work[checkout], 'load', flags=flags)['load']
    for cfg, mapper in zip(CONFIGS, MAPPERS):
        checks.check_load(load[cfg], mapper, plugin=False)

@pytest.mark.skipif(importlib.util.find_spec('pkg_resources') is not None,
                    reason='this setuptools still has pkg_resources (< 81): the pristine checkout imports')
def test_pristine_checkout_does_not_import_without_pkg_resources(work):
    result = run(work, work['pristine'], '-c', 'import training.training_loop', expect=1)
    assert "No module named 'pkg_resources'" in result.output       # the bug the gradfix edits fix
    run(work, work['patched'], '-c', 'import training.training_loop')

def test_rtm_analyze_reads_stylegan3_pickles(work, built):
    """Through the checkout named by RTM_SG3_DIR (the pickle's Generator source says which tree wrote it)."""
    base, out = work['base'], work['base'] / 'analysis'
    env = dict(work['env'], RTM_SG3_DIR=str(work['patched']), RTM_SG2ADA_DIR='')
    analyze = lambda *args: checkouts.run_python(base, env, '-m', 'rtm_plugin.analysis', *args, '--outdir', out)
    analyze('sample', '--network', base / 'stylegan3-t.pkl', '--num', 2, '--steps', 2)
    analyze('progression', '--rtm', base / 'stylegan3-t.pkl', '--mlp', base / 'stylegan3-t-mlp.pkl', '--num', 1,
            '--cols', 1)
    analyze('stability', '--network', base / 'stylegan2.pkl', '--steps', 3, '--num', 4)
    for name in ('samples.png', 'progression.gif', 'stability.png'):
        assert (out / name).stat().st_size > 0

#----------------------------------------------------------------------------
# Generation and metrics with --rtm-steps.

def test_gen_images_with_rtm_steps(work, built):
    expected = work['base'] / 'stylegan3-t_steps2_seeds01.npy'
    if not expected.exists():
        drive(work, work['patched'], 'steps')
    checks.check_image_script(lambda *a, **k: run(work, work['patched'], *a, **k), 'gen_images.py',
                              work['base'] / 'stylegan3-t.pkl', work['base'] / 'stylegan3-t-mlp.pkl', expected,
                              work['base'] / 'generated')

def test_gen_video_with_rtm_steps(work, built):
    pytest.importorskip('imageio_ffmpeg', reason='gen_video.py writes MP4 through imageio-ffmpeg (pip install imageio-ffmpeg)')
    import imageio  # pylint: disable=import-outside-toplevel
    network = f'--network={work["base"] / "stylegan2-uncond.pkl"}'       # gen_video.py renders unconditional nets
    result = run(work, work['patched'], 'gen_video.py', network, '--seeds=0,1', '--w-frames=2', '--rtm-steps=0',
                 f'--output={work["base"] / "bad.mp4"}', expect=2)
    assert 'H must be a positive integer, got 0' in result.output
    videos = {}
    for steps in (1, 3):
        video = work['base'] / f'lerp-h{steps}.mp4'
        run(work, work['patched'], 'gen_video.py', network, '--seeds=0,1', '--w-frames=2', f'--rtm-steps={steps}',
            f'--output={video}')
        videos[steps] = np.stack(imageio.mimread(video)).astype(np.int16)
    assert videos[1].shape == (4, 16, 16, 3)                # 2 keyframes x 2 frames, on the CPU
    assert np.abs(videos[1] - videos[3]).mean() > 1         # H=1 and H=3 (as trained) render other frames

def test_calc_metrics_knows_dc50k5_full_and_rtm_steps(work, built):
    checks.check_calc_metrics(lambda *a, **k: run(work, work['patched'], *a, **k), work['base'] / 'stylegan3-t.pkl')

#----------------------------------------------------------------------------
# The custom-op loader (a real ninja build of a tiny C++ op; cached in .pytest_cache after the first run).

def test_custom_op_loader_works_after_a_build(work):
    checks.check_custom_op(drive(work, work['patched'], 'custom_op')['custom_op'],
                           drive(work, work['pristine'], 'custom_op')['custom_op'])

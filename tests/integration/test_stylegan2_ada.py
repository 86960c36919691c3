"""stylegan2-ada-pytorch with rtm-patch, on CPU, on temporary copies of a real checkout (RTM_SG2ADA_DIR).

Everything upstream runs in subprocesses with the copy as working directory (its top-level packages would clash
between a patched and a pristine copy in one process); sg2ada_driver.py does the in-checkout work. Pickles go to
temporary folders only: they embed upstream source.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

import checkouts
from checkouts import assert_reapply_is_a_no_op_and_revert_restores, patch_cli, snapshot
from rtm_plugin.patching import engine
from rtm_plugin.patching.engine import BOM, PatchError
from rtm_plugin.patching.targets import load_target, resolve_target

DRIVER = Path(__file__).with_name('sg2ada_driver.py')
UPSTREAM = os.environ.get('RTM_SG2ADA_DIR')

pytestmark = pytest.mark.skipif(not UPSTREAM, reason='set RTM_SG2ADA_DIR to a stylegan2-ada-pytorch checkout '
                                                     '(NVlabs, d72cc7d) to run these integration tests')

def copy_checkout(dst: Path) -> Path:
    return checkouts.copy_checkout(UPSTREAM, dst)

@pytest.fixture(scope='module')
def work(tmp_path_factory, request):
    """A dataset, a patched copy and a pristine copy of the checkout, and the environment to run them."""
    base = tmp_path_factory.mktemp('sg2ada')
    data = base / 'data'
    data.mkdir()
    rng = np.random.RandomState(0)
    labels = []
    for i in range(8):
        PIL.Image.fromarray(rng.randint(0, 256, (16, 16, 3), dtype=np.uint8)).save(data / f'img{i}.png')
        labels.append([f'img{i}.png', i % 2])
    (data / 'dataset.json').write_text(json.dumps({'labels': labels}))
    patched = copy_checkout(base / 'patched')
    engine.apply(patched, load_target('stylegan2-ada-pytorch'))
    env = dict(os.environ, PYTHONPATH=str(checkouts.REPO), DNNLIB_CACHE_DIR=str(base / 'dnnlib-cache'),
               TORCH_EXTENSIONS_DIR=str(request.config.cache.mkdir('torch_extensions')))
    return dict(base=base, data=data, patched=patched, pristine=copy_checkout(base / 'pristine'), env=env)

def run(work, checkout, *args, expect=0, timeout=600):
    result = subprocess.run([sys.executable, *map(str, args)], cwd=checkout, env=work['env'], capture_output=True,
                            text=True, timeout=timeout)
    result.output = result.stdout + result.stderr       # dnnlib's Logger sends errors to stdout too
    if expect is not None and result.returncode != expect:
        raise AssertionError(f'exit {result.returncode} (expected {expect}) from {args}:\n{result.stdout[-3000:]}\n'
                             f'{result.stderr[-3000:]}')
    return result

def drive(work, checkout, *commands, block_plugin=False):
    flags = ['--block-plugin'] if block_plugin else []
    result = run(work, checkout, DRIVER, work['base'], *commands, *flags)
    return json.loads(result.stdout.strip().splitlines()[-1])

@pytest.fixture(scope='module')
def built(work):
    return drive(work, work['patched'], 'build')['build']

#----------------------------------------------------------------------------
# rtm-patch on the real checkout.

def test_apply_check_reapply_revert_byte_identical(tmp_path):
    root = copy_checkout(tmp_path / 'sg2')
    before = snapshot(root)
    target = resolve_target(root)                  # detected, no --target
    assert target.name == 'stylegan2-ada-pytorch'
    assert engine.apply(root, target).changed
    report = engine.check(root, target)
    assert report.state == 'patched' and {f.status for f in report.files} == {'patched'}
    for change in target.changes:
        old, new = before[change.path], (root / change.path).read_bytes()
        assert new != old[0] and b'rtm-plugin' in new
        assert new.startswith(BOM) == old[0].startswith(BOM)          # networks.py has one, train.py not
        assert stat.S_IMODE((root / change.path).stat().st_mode) == old[1]
    assert (root / 'training' / 'networks.py').read_bytes().startswith(BOM)

    assert_reapply_is_a_no_op_and_revert_restores(root, target, before)

def test_cli_round_trip(tmp_path):
    root = copy_checkout(tmp_path / 'sg2')
    before = snapshot(root)
    cli = lambda *a: patch_cli(root, *a)
    assert cli('check').stdout.splitlines()[0].endswith(': unpatched')
    assert cli('apply', '--target', 'stylegan2-ada-pytorch').returncode == 0
    result = cli('check', '-v')
    assert result.returncode == 0 and ': patched' in result.stdout and 'InfiniteSampler' in result.stdout
    assert 'already patched' in cli('apply').stdout
    assert cli('revert').returncode == 0
    assert snapshot(root) == before

def test_unknown_upstream_version_names_file_and_anchor(tmp_path):
    root = copy_checkout(tmp_path / 'sg2')
    networks = root / 'training' / 'networks.py'
    networks.write_bytes(networks.read_bytes().replace(b'num_ws=self.num_ws, **mapping_kwargs)',
                                                       b'num_ws=self.num_ws, **self.mapping_kwargs)'))
    before = snapshot(root)
    with pytest.raises(PatchError) as err:
        engine.apply(root, load_target('stylegan2-ada-pytorch'))
    assert 'unknown-version' in str(err.value) and 'training/networks.py: mismatch (anchor #1' in str(err.value)
    assert snapshot(root) == before

def test_partially_patched_tree_is_refused(tmp_path):
    root = copy_checkout(tmp_path / 'sg2')
    before = snapshot(root)
    target = load_target('stylegan2-ada-pytorch')
    engine.apply(root, target)
    shutil.copy2(Path(UPSTREAM) / 'train.py', root / 'train.py')          # one file restored by hand
    partial = snapshot(root)
    with pytest.raises(PatchError, match=r'partial(.|\n)*train\.py: reverted'):
        engine.apply(root, target)
    assert snapshot(root) == partial
    engine.revert(root)
    assert snapshot(root) == before

def test_read_only_file_wrong_path_and_foreign_folder(tmp_path):
    root = copy_checkout(tmp_path / 'sg2')
    os.chmod(root / 'training' / 'loss.py', 0o444)                     # not ours: no effect
    os.chmod(root / 'train.py', 0o444)
    before = snapshot(root)
    with pytest.raises(PatchError, match=r'train\.py: read-only'):
        engine.apply(root, load_target('stylegan2-ada-pytorch'))
    assert snapshot(root) == before
    with pytest.raises(PatchError, match='no such folder'):
        resolve_target(tmp_path / 'nope')
    (tmp_path / 'other' / 'src').mkdir(parents=True)
    (tmp_path / 'other' / 'train.py').write_text('print(1)\n')
    with pytest.raises(PatchError, match='does not look like a checkout'):
        resolve_target(tmp_path / 'other')

#----------------------------------------------------------------------------
# train.py options.

def test_train_dry_run_shows_rtm_options(work):
    args = ['train.py', f'--outdir={work["base"] / "runs"}', f'--data={work["data"]}', '--cfg=stylegan2', '--map=rtm',
            '--rtm-h=8', '--rtm-l=2', '--rtm-tokens=8', '--rtm-dim=64', '--rtm-block=attention']
    out = run(work, work['patched'], *args, '--dry-run').stdout
    options = json.loads(out[out.index('{'):out.index('\nOutput directory:')])
    assert options['G_kwargs']['mapping_kwargs'] == dict(map='rtm', H=8, L=2, tokens=8, token_dim=64, block='attention')
    assert options['D_kwargs']['mapping_kwargs'] == {}
    assert options['run_dir'].endswith('00000-data-stylegan2-rtm-h8l2-t8x64-attention')
    assert 'Mapping network:    rtm (H=8, L=2, tokens=8, token_dim=64, block=attention)' in out
    assert not (work['base'] / 'runs').exists()

    # A real start writes training_options.json, gets past InfiniteSampler (fixed) and stops at the CUDA device.
    result = run(work, work['patched'], *args, '--workers=1', expect=None)
    assert result.returncode != 0
    written = json.loads((Path(options['run_dir']) / 'training_options.json').read_text())
    assert written['G_kwargs']['mapping_kwargs'] == options['G_kwargs']['mapping_kwargs']
    assert 'InfiniteSampler' not in result.output and 'Num images:  8' in result.output
    assert 'Torch not compiled with CUDA enabled' in result.output

def test_rtm_option_without_map_rtm_is_an_error(work):
    result = run(work, work['patched'], 'train.py', f'--outdir={work["base"] / "runs-mlp"}', f'--data={work["data"]}',
                 '--cfg=stylegan2', '--map=mlp', '--rtm-h=4', '--rtm-block=mlp', '--dry-run', expect=2)
    assert '--rtm-h, --rtm-block: RTM options, but the mapper is mlp; add --map=rtm' in result.output
    out = run(work, work['patched'], 'train.py', f'--outdir={work["base"] / "runs-mlp"}', f'--data={work["data"]}',
              '--cfg=stylegan2', '--dry-run').stdout
    assert '"num_layers": 8' in out and out.count('"map"') == 0 and 'Mapping network:    mlp (8 layers)' in out

#----------------------------------------------------------------------------
# Networks, loss, pickles.

def test_generator_and_one_loss_step(built):
    assert built['mapping_kwargs'] == dict(map='rtm', H=3, L=2, tokens=4, token_dim=16, block='mlp')
    assert built['desc'].endswith('-cond-stylegan2-rtm-h3l2-t4x16-batch4')
    assert built['G_mapping'] == 'RTMMappingNetwork' and built['D_mapping_is_upstream']
    assert built['G_init_mapping_kwargs']['map'] == 'rtm'               # init_kwargs keep 'map'
    assert not any(n.startswith('fc') for n in built['mapper_names'])
    assert {'embed.weight', 'trunk.lift.weight', 'trunk.readout.weight'} <= set(built['mapper_names'])
    for phase in ('Gmain', 'Greg'):
        assert built['grads'][phase] and all(built['grads'][phase].values()), (phase, built['grads'][phase])
    for phase in ('Dmain', 'Dreg'):
        assert any(built['grads'][phase].values())
    assert built['pl_mean'] > 0 and built['w_avg_norm'] > 0 and built['fixed_buffers_unchanged']

def test_resume_from_mlp_pickle_keeps_synthesis_and_starts_a_fresh_mapper(built):
    resume = built['resume']
    # The trap: these names exist in both mappers, and upstream would copy them into the RTM mapper.
    assert {'mapping.w_avg', 'mapping.embed.weight', 'mapping.embed.bias'} <= set(resume['same_name_mapper_tensors'])
    assert resume['dropped'] and len(resume['log']) == 1
    assert "mapping network is mlp (MappingNetwork" in resume['log'][0] and 'start fresh' in resume['log'][0]
    assert resume['synthesis_from_pickle'] and resume['ema_synthesis_from_pickle'] and resume['D_from_pickle']
    assert resume['mapper_fresh'] and resume['ema_mapper_fresh']
    assert not resume['same_kind_dropped']

def test_training_loop_calls_the_resume_guard_before_copying(work):
    source = (work['patched'] / 'training' / 'training_loop.py').read_text(encoding='utf-8-sig')
    guard = source.index('rtm_options.keep_compatible_mapper(resume_data, G)')
    assert source.index('resume_data = legacy.load_network_pkl(f)') < guard < source.index('misc.copy_params_and_buffers(resume_data[name]')

def test_pickle_round_trip_in_patched_checkout(work, built):
    result = drive(work, work['patched'], 'load', 'steps', 'metric')
    load = result['load']
    assert load['identical'], load
    assert load['mapping_class'] == 'RTMMappingNetwork' and load['mapping_module'].startswith('_imported_module_')
    assert load['trunk_module'].startswith('_imported_module_') and load['H'] == 3
    steps = result['steps']
    assert steps['override_differs'] and steps['set_equals_override'] and steps['contiguous']
    assert steps['halt_tol0_is_fixed_H'] and steps['halt_huge_is_H_min']          # halt_tol on the mapper itself
    assert set(steps['halt_steps']) == {1}
    metric = result['metric']
    assert metric['registered']
    assert metric['density'] == pytest.approx(metric['prdc_density'], abs=1e-9)
    assert metric['coverage'] == pytest.approx(metric['prdc_coverage'], abs=1e-9)

@pytest.mark.parametrize('checkout', ['patched', 'pristine'])
def test_pickle_loads_without_rtm_plugin(work, built, checkout):
    load = drive(work, work[checkout], 'load', block_plugin=True)['load']
    assert load['identical'], load
    assert load['plugin_imported'] == []
    assert load['mapping_class'] == 'RTMMappingNetwork'

@pytest.mark.parametrize('checkout', ['patched', 'pristine'])
def test_pickled_mapper_w_avg_survives_bad_rows_and_trains_in_half(work, built, checkout):
    out = drive(work, work[checkout], 'w_avg', block_plugin=checkout == 'pristine')['w_avg']
    assert out['nan_row_kept_finite'] and out['nan_row_moved'] and out['empty_batch_unchanged'], out
    for dtype in ('float16', 'bfloat16'):
        assert all(out[dtype].values()), (dtype, out[dtype])

def test_generate_with_rtm_steps(work, built):
    expected_file = work['base'] / 'steps2_seeds01.npy'
    if not expected_file.exists():
        drive(work, work['patched'], 'steps')
    out = work['base'] / 'generated'
    result = run(work, work['patched'], 'generate.py', f'--network={work["base"] / "rtm.pkl"}', '--seeds=0,1',
                 '--class=1', '--trunc=1', '--rtm-steps=2', f'--outdir={out}')
    assert 'Generating image for seed 1' in result.stdout
    images = np.stack([np.array(PIL.Image.open(out / f'seed{s:04d}.png')) for s in (0, 1)])
    assert np.array_equal(images, np.load(expected_file))

    result = run(work, work['patched'], 'generate.py', f'--network={work["base"] / "mlp.pkl"}', '--seeds=0',
                 '--class=1', '--rtm-steps=2', f'--outdir={out}', expect=2)
    assert 'Invalid value for' in result.output and '--rtm-steps needs an RTM mapper' in result.output
    assert "this network's mapper is mlp (MappingNetwork" in result.output

def test_calc_metrics_knows_dc50k5_full_and_rtm_steps(work, built):
    result = run(work, work['patched'], 'calc_metrics.py', '--metrics=dc50k5_full,pr50k3_full', '--rtm-steps=0',
                 f'--network={work["base"] / "rtm.pkl"}', expect=2)
    assert 'H must be a positive integer, got 0' in result.output     # metrics validated, G loaded
    result = run(work, work['patched'], 'calc_metrics.py', '--metrics=dc50k5_fullx',
                 f'--network={work["base"] / "rtm.pkl"}', expect=2)
    assert 'dc50k5_full' in result.output

#----------------------------------------------------------------------------
# The custom-op loader (a real ninja build of a tiny C++ op; cached in .pytest_cache after the first run).

def test_custom_op_loader_works_after_a_build(work):
    patched = drive(work, work['patched'], 'custom_op')['custom_op']
    assert patched == {'ok': True}
    pristine = drive(work, work['pristine'], 'custom_op')['custom_op']
    assert not pristine['ok'] and 'ModuleNotFoundError' in pristine['error']      # the bug the edit fixes

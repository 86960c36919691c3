"""stylegan2-ada-pytorch with rtm-patch, on CPU, on temporary copies of a real checkout (RTM_SG2ADA_DIR).

Everything upstream runs in subprocesses with the copy as working directory (its top-level packages would clash
between a patched and a pristine copy in one process); sg2ada_driver.py does the in-checkout work. Pickles go to
temporary folders only: they embed upstream source.
"""

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

import checkouts
import stylegan_checks as checks
from checkouts import assert_reapply_is_a_no_op_and_revert_restores, snapshot
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
    return checkouts.nvlabs_work(tmp_path_factory.mktemp('sg2ada'), request, 'stylegan2-ada-pytorch', copy_checkout)

def run(work, checkout, *args, expect=0, timeout=600):
    return checkouts.run_python(checkout, work['env'], *args, expect=expect, timeout=timeout)

def drive(work, checkout, *commands, block_plugin=False):
    return checkouts.run_driver(DRIVER, work['base'], checkout, work['env'], *commands,
                                flags=['--block-plugin'] if block_plugin else [])

@pytest.fixture(scope='module')
def built(work):
    return drive(work, work['patched'], 'build')['build']

#----------------------------------------------------------------------------
# rtm-patch on the real checkout.

def test_apply_check_reapply_revert_byte_identical(tmp_path):
    root = copy_checkout(tmp_path / 'sg2')
    target, before = checkouts.apply_detected_target(root, 'stylegan2-ada-pytorch')
    for change in target.changes:
        old, new = before[change.path], (root / change.path).read_bytes()
        assert new.startswith(BOM) == old[0].startswith(BOM)          # networks.py has one, train.py not
        assert stat.S_IMODE((root / change.path).stat().st_mode) == old[1]
    assert (root / 'training' / 'networks.py').read_bytes().startswith(BOM)

    assert_reapply_is_a_no_op_and_revert_restores(root, target, before)

def test_cli_round_trip(tmp_path):
    checkouts.assert_cli_round_trip(copy_checkout(tmp_path / 'sg2'), 'stylegan2-ada-pytorch', 'InfiniteSampler')

def test_unknown_upstream_version_names_file_and_anchor(tmp_path):
    checkouts.assert_other_version_refused(copy_checkout(tmp_path / 'sg2'), 'stylegan2-ada-pytorch', 'training/networks.py')

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
    checks.check_loss_step(built, ['Gmain', 'Greg', 'Dmain', 'Dreg'])
    assert built['desc'].endswith('-cond-stylegan2-rtm-h3l2-t4x16-batch4')
    assert built['G_mapping'] == 'RTMMappingNetwork' and built['pl_mean'] > 0

def test_resume_from_mlp_pickle_keeps_synthesis_and_starts_a_fresh_mapper(built):
    checks.check_resume(built['resume'])

def test_training_loop_calls_the_resume_guard_before_copying(work):
    checks.check_resume_guard(work['patched'])

def test_pickle_round_trip_in_patched_checkout(work, built):
    result = drive(work, work['patched'], 'load', 'steps', 'metric')
    checks.check_load(result['load'], 'RTMMappingNetwork')
    checks.check_steps(result['steps'])
    checks.check_metric(result['metric'], 'stylegan2-ada-pytorch')

@pytest.mark.parametrize('checkout', ['patched', 'pristine'])
def test_pickle_loads_without_rtm_plugin(work, built, checkout):
    load = drive(work, work[checkout], 'load', block_plugin=True)['load']
    checks.check_load(load, 'RTMMappingNetwork', plugin=False)

@pytest.mark.parametrize('checkout', ['patched', 'pristine'])
def test_pickled_mapper_w_avg_survives_bad_rows_and_trains_in_half(work, built, checkout):
    out = drive(work, work[checkout], 'w_avg', block_plugin=checkout == 'pristine')['w_avg']
    assert out['nan_row_kept_finite'] and out['nan_row_moved'] and out['empty_batch_unchanged'], out
    for dtype in ('float16', 'bfloat16'):
        assert all(out[dtype].values()), (dtype, out[dtype])

@pytest.fixture(scope='module')
def legacy_pickle(work):
    """legacy.pkl, written by the mapper layout before the shared head (tests/data/legacy_676eb91)."""
    assert drive(work, work['patched'], 'legacy_write')['legacy_write']['written']

@pytest.mark.parametrize('checkout', ['patched', 'pristine'])
def test_pickle_of_the_old_mapper_layout_loads_and_runs_its_own_source(work, legacy_pickle, checkout):
    load = drive(work, work[checkout], 'legacy_load', block_plugin=checkout == 'pristine')['legacy_load']
    checks.check_load(load, 'RTMMappingNetwork', plugin=checkout == 'patched')
    assert load['old_layout'] and load['old_halting'], load

def test_resume_from_a_pickle_of_the_old_mapper_layout(work, legacy_pickle):
    resume = drive(work, work['patched'], 'legacy_resume')['legacy_resume']
    assert not resume['dropped'] and resume['log'] == []           # same kind and shapes: the mapper resumes too
    assert resume['new_layout'] and resume['same_names'] and resume['all_copied'], resume
    assert resume['identical'], resume

def test_generate_with_rtm_steps(work, built):
    expected = work['base'] / 'rtm_steps2_seeds01.npy'
    if not expected.exists():
        drive(work, work['patched'], 'steps')
    checks.check_image_script(lambda *a, **k: run(work, work['patched'], *a, **k), 'generate.py',
                              work['base'] / 'rtm.pkl', work['base'] / 'rtm-mlp.pkl', expected, work['base'] / 'generated')

def test_calc_metrics_knows_dc50k5_full_and_rtm_steps(work, built):
    checks.check_calc_metrics(lambda *a, **k: run(work, work['patched'], *a, **k), work['base'] / 'rtm.pkl')

#----------------------------------------------------------------------------
# The custom-op loader (a real ninja build of a tiny C++ op; cached in .pytest_cache after the first run).

def test_custom_op_loader_works_after_a_build(work):
    checks.check_custom_op(drive(work, work['patched'], 'custom_op')['custom_op'],
                           drive(work, work['pristine'], 'custom_op')['custom_op'])

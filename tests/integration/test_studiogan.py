"""PyTorch-StudioGAN with rtm-patch, on CPU, on temporary copies of a real checkout (RTM_STUDIOGAN_DIR).

StudioGAN runs in subprocesses with the copy's src/ as working directory (its top-level packages, config, models,
utils, would clash between a patched and a pristine copy in one process); studiogan_driver.py does the work
there. Checkpoints go to temporary folders only.
"""

import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import checkouts
from checkouts import assert_reapply_is_a_no_op_and_revert_restores, patch_cli, snapshot
from rtm_plugin.patching import engine
from rtm_plugin.patching.engine import PatchError
from rtm_plugin.patching.spec import ComposeYAML
from rtm_plugin.patching.targets import load_target, resolve_target

DRIVER = Path(__file__).with_name('studiogan_driver.py')
UPSTREAM = os.environ.get('RTM_STUDIOGAN_DIR')
MAPPER_KEYS = ['STYLEGAN.mapping_type', 'STYLEGAN.rtm_block', 'STYLEGAN.rtm_h', 'STYLEGAN.rtm_l',
               'STYLEGAN.rtm_token_dim', 'STYLEGAN.rtm_tokens']

pytestmark = pytest.mark.skipif(not UPSTREAM, reason='set RTM_STUDIOGAN_DIR to a PyTorch-StudioGAN checkout '
                                                     '(POSTECH-CVLab, 947b35e) to run these integration tests')

def copy_checkout(dst: Path) -> Path:
    """The code and configs; not docs/ and logs/ (40 MB the tests do not read)."""
    return checkouts.copy_checkout(UPSTREAM, dst, skip=('docs', 'logs'))

@pytest.fixture(scope='module')
def work(tmp_path_factory, request):
    base = tmp_path_factory.mktemp('studiogan')
    patched = copy_checkout(base / 'patched')
    engine.apply(patched, load_target('studiogan'))
    env = dict(os.environ, PYTHONPATH=str(checkouts.REPO), OMP_NUM_THREADS='1', WANDB_MODE='disabled',
               TORCH_EXTENSIONS_DIR=str(request.config.cache.mkdir('torch_extensions')))
    return dict(base=base, patched=patched, pristine=copy_checkout(base / 'pristine'), env=env)

def drive(work, checkout, command, timeout=600):
    result = subprocess.run([sys.executable, str(DRIVER), str(work['base']), command], cwd=checkout / 'src',
                            env=work['env'], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f'{command}: exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}')
    return json.loads(result.stdout.strip().splitlines()[-1])[command]

#----------------------------------------------------------------------------
# rtm-patch on the real checkout.

def test_apply_check_reapply_revert_byte_identical(tmp_path):
    root = copy_checkout(tmp_path / 'studiogan')
    before = snapshot(root)
    target = resolve_target(root)                  # detected among the known targets, no --target
    assert target.name == 'studiogan'
    assert engine.apply(root, target).changed
    report = engine.check(root, target)
    assert report.state == 'patched'
    composed = [c for c in target.changes if isinstance(c, ComposeYAML)]
    assert {f.status for f in report.files} == {'patched', 'added'} and len(composed) == 8
    for change in target.changes:
        new = (root / change.path).read_bytes()
        assert b'rtm-plugin' in new
        if isinstance(change, ComposeYAML):
            assert change.path not in before
            assert stat.S_IMODE((root / change.path).stat().st_mode) == before[change.base][1]
        else:
            assert new != before[change.path][0]
    assert not (root / 'src' / 'configs' / 'rtm.yaml').exists()

    assert_reapply_is_a_no_op_and_revert_restores(root, target, before)

def test_composed_yaml_is_the_baseline_text_plus_the_mapper_lines(work):
    configs = work['patched'] / 'src' / 'configs'
    baseline = (configs / 'CIFAR10' / 'StyleGAN2.yaml').read_text().splitlines()
    rtm = (configs / 'CIFAR10' / 'StyleGAN2-RTM.yaml').read_text().splitlines()
    body = [line for line in rtm if not line.startswith('#')]
    assert body[:len(baseline)] == baseline                 # STYLEGAN is the last section: appended at its end
    assert body[len(baseline):] == ['  mapping_type: "rtm"', '  rtm_h: 16', '  rtm_l: 1', '  rtm_tokens: 4',
                                    '  rtm_token_dim: 128', '  rtm_block: "mlp"']
    assert rtm[0].startswith('# rtm-plugin: written by rtm-patch')

def test_cli_round_trip(tmp_path):
    root = copy_checkout(tmp_path / 'studiogan')
    before = snapshot(root)
    cli = lambda *a: patch_cli(root, *a)
    assert cli('check').stdout.splitlines()[0].endswith(': unpatched')
    result = cli('apply')
    assert result.returncode == 0 and '8 files edited, 8 added' in result.stdout
    result = cli('check', '-v')
    assert result.returncode == 0 and ': patched' in result.stdout and 'pkg_resources' in result.stdout
    assert 'added    src/configs/CIFAR10/StyleGAN2-RTM.yaml' in result.stdout
    assert cli('revert').returncode == 0
    assert snapshot(root) == before

def test_other_upstream_version_is_refused_naming_file_and_anchor(tmp_path):
    root = copy_checkout(tmp_path / 'studiogan')
    (root / 'src' / 'configs' / 'AFHQv2' / 'StyleGAN2-paper.yaml').unlink()
    model = root / 'src' / 'models' / 'model.py'
    model.write_text(model.read_text().replace('Gen_mapping, Gen_synthesis = Gen.mapping, Gen.synthesis',
                                               'Gen_mapping, Gen_synthesis = Gen.mapping_network, Gen.synthesis'))
    before = snapshot(root)
    with pytest.raises(PatchError) as err:
        engine.apply(root, load_target('studiogan'))
    message = str(err.value)
    assert 'unknown-version' in message and 'src/models/model.py: mismatch' in message
    assert 'Gen_mapping, Gen_synthesis' in message and 'matches 0 times' in message
    assert 'src/configs/AFHQv2/StyleGAN2-paper-RTM.yaml: missing' in message
    assert 'its base src/configs/AFHQv2/StyleGAN2-paper.yaml is not in the checkout' in message
    assert snapshot(root) == before

#----------------------------------------------------------------------------
# The patched checkout.

def test_rtm_yamls_differ_from_their_baselines_in_the_mapper_keys_only(work):
    out = drive(work, work['patched'], 'configs')
    for name, diff in out['diffs'].items():
        if name.endswith('-RTM.yaml'):
            assert diff == MAPPER_KEYS, name
        else:                                       # the unconditional MLP baselines rtm-patch writes too
            assert diff == ['MODEL.d_cond_mtd', 'MODEL.g_cond_mtd'], name
    assert out['mappers']['CIFAR10/StyleGAN2-RTM.yaml'].startswith('rtm (rtm_h=16, rtm_l=1, rtm_tokens=4, '
                                                                   'rtm_token_dim=128, rtm_block=mlp')
    assert out['mappers']['AFHQ/StyleGAN2-ADA-Uncond.yaml'] == 'mlp (8 layers)'
    errors = out['errors']
    assert '"mlp"' in errors['unknown_type'] and "'transformer'" in errors['unknown_type']
    assert errors['rtm_keys_with_mlp'].startswith('STYLEGAN.rtm_h: RTM settings, but STYLEGAN.mapping_type is "mlp"')
    assert errors['bad_value'] == 'STYLEGAN.rtm_tokens must be a positive integer, got 0'
    assert 'divisible by heads' in errors['heads']
    assert 'needs MODEL.backbone "stylegan2"' in errors['stylegan3']
    assert "'STYLEGAN.rtm_heads'" in errors['unknown_key']      # upstream's own check still guards typos

def test_generator_with_rtm_mapper_generates_truncates_and_mixes(work):
    out = drive(work, work['patched'], 'build')
    assert out['mapper'] == out['ema_mapper'] == 'RTMMappingNetwork' and out['is_upstream_subclass']
    assert out['returned_mappers'] == [True, True]          # what DDP would wrap is the RTM
    assert out['dims'] == [512, 10, 512, 8] and out['trunk'] == [16, 1, 4, 128, 'mlp']
    assert out['mlp_layers_left'] == [] and not out['d_has_rtm'] and out['ema_equal']
    assert out['w_avg_kept_without_update_emas'] and out['w_avg_moved_with_update_emas']
    assert out['image_shape'] == out['ema_generates'] == [4, 3, 32, 32] and out['finite']
    assert out['ws_broadcast'] and out['labels_matter']
    assert out['truncation_is_lerp_to_w_avg'] and out['truncation_changes_images'] and out['cutoff_truncates_first_4']
    mixed = out['mixing_layers']                             # style_mixing_p=1: the layers from the cutoff on
    assert mixed and mixed == list(range(mixed[0], 8)) and mixed[0] >= 1 and out['mixing_changes_images']
    assert out['params_without_grad'] == [] and out['attention_params_without_grad'] == []
    assert out['uncond'] == dict(c_dim=0, has_embed=False, labels_ignored=True)
    assert out['afhq'] == dict(mapper='RTMMappingNetwork', num_ws=16, resolution=512)

def test_w_avg_survives_bad_rows_and_half_precision_mappers_train(work):
    out = drive(work, work['patched'], 'w_avg')
    assert out['nan_row_kept_finite'] and out['nan_row_moved'] and out['empty_batch_unchanged'], out
    for dtype in ('float16', 'bfloat16'):
        assert all(out[dtype].values()), (dtype, out[dtype])

def test_ddp_ranks_seeded_apart_train_one_mapper(work):
    """Two gloo ranks, seeded seed+rank as StudioGAN does, G.mapping in DDP with broadcast_buffers=False and no
    find_unused_parameters: three steps run, and both ranks end with the same tensors and outputs."""
    out = drive(work, work['patched'], 'ddp')
    assert out == dict(exit_codes=[0, 0], ranks_agree=True)

def test_checkpoints_reload_for_evaluation_and_mismatch_is_named(work):
    out = drive(work, work['patched'], 'checkpoints')
    assert len(out['files']) == 6 and 'model=G_ema-best-weights-step=40.pth' in out['files']
    assert out['default_torch_load'] == 'UnpicklingError'      # why the patch passes weights_only=False
    assert out['reloaded_equal'] == [True, True, True] and out['same_images']
    assert out['best_step'] == 40 and out['best_model_equal'] == [True, True]
    assert out['evaluated_with_H'] == [32, True]                # H is the YAML's; the weights do not change
    assert out['rtm_ckpt_baseline_yaml'].startswith('MapperMismatchError: ')
    assert 'model=G-best-weights-step=40.pth holds an RTM mapping network (tokens=4, token_dim=128, block=mlp), ' \
           'but this YAML builds an MLP mapping network (2 layers)' in out['rtm_ckpt_baseline_yaml']
    assert 'STYLEGAN.mapping_type: "rtm"' in out['rtm_ckpt_baseline_yaml']
    assert 'holds an MLP mapping network (2 layers), but this YAML builds an RTM mapping network' \
           in out['mlp_ckpt_rtm_yaml']
    assert 'Missing key' not in out['rtm_ckpt_baseline_yaml'] + out['mlp_ckpt_rtm_yaml']
    assert out['mlp_ckpt_baseline_yaml'] is None                # the baseline still loads as before

def test_fid_without_scipy_deprecation(work):
    out = drive(work, work['patched'], 'fid')
    assert out['value'] == pytest.approx(out['expected'], rel=1e-9)

def test_custom_op_loader_works_after_a_build(work):
    assert drive(work, work['patched'], 'custom_op') == dict(ok=True)
    pristine = drive(work, work['pristine'], 'custom_op')    # same op: the cached build is reused
    assert not pristine['ok'] and "No module named 'rtm_studiogan_probe_op'" in pristine['error']

@pytest.mark.skipif(importlib.util.find_spec('pkg_resources') is not None,
                    reason='this setuptools still has pkg_resources: the pristine checkout imports')
def test_pristine_checkout_does_not_import_without_pkg_resources(work):
    assert drive(work, work['pristine'], 'imports')['error'] == "ModuleNotFoundError: No module named 'pkg_resources'"
    assert drive(work, work['patched'], 'imports')['error'] is None

"""Assertions that test_stylegan2_ada.py and test_stylegan3.py share: what the drivers (stylegan_driver.py) report
and what the patched scripts print must be the same in both NVlabs trees."""

from pathlib import Path

import numpy as np
import PIL.Image
import pytest

def check_loss_step(out, phases):
    """One step of every phase: every G-mapper parameter gets a finite non-zero gradient, D learns, w_avg moved,
    the trunk's fixed carries did not."""
    assert out['mapping_kwargs'] == dict(map='rtm', H=3, L=2, tokens=4, token_dim=16, block='mlp')
    assert out['D_mapping_is_upstream'] and out['G_init_mapping_kwargs']['map'] == 'rtm'   # init_kwargs keep 'map'
    assert not any(n.startswith('fc') for n in out['mapper_names'])
    assert {'embed.weight', 'trunk.lift.weight', 'trunk.readout.weight'} <= set(out['mapper_names'])
    assert list(out['grads']) == phases
    for phase, grads in out['grads'].items():
        check = all if phase.startswith('G') else any
        assert grads and check(grads.values()), (phase, grads)
    assert out['w_avg_norm'] > 0 and out['fixed_buffers_unchanged']

def check_resume(resume):
    # The trap: these names exist in both mappers, and upstream would copy them into the RTM mapper.
    assert {'mapping.w_avg', 'mapping.embed.weight', 'mapping.embed.bias'} <= set(resume['same_name_mapper_tensors'])
    assert resume['dropped'] and len(resume['log']) == 1
    assert "mapping network is mlp (MappingNetwork" in resume['log'][0] and 'start fresh' in resume['log'][0]
    assert resume['synthesis_from_pickle'] and resume['ema_synthesis_from_pickle'] and resume['D_from_pickle']
    assert resume['mapper_fresh'] and resume['ema_mapper_fresh']
    assert not resume['same_kind_dropped']                  # same kind: everything resumes

def check_resume_guard(checkout: Path):
    source = (checkout / 'training' / 'training_loop.py').read_text(encoding='utf-8-sig')
    guard = source.index('rtm_options.keep_compatible_mapper(resume_data, G)')
    assert source.index('resume_data = legacy.load_network_pkl(f)') < guard < \
        source.index('misc.copy_params_and_buffers(resume_data[name]')

def check_load(load, mapper, plugin=True):
    assert load['identical'], load
    assert load['mapping_class'] == mapper and load['H'] == 3
    assert load['mapping_module'].startswith('_imported_module_') and load['trunk_module'].startswith('_imported_module_')
    if not plugin:
        assert load['plugin_imported'] == []

def check_steps(steps):
    assert steps['override_differs'] and steps['set_equals_override'] and steps['contiguous']
    assert steps['halt_tol0_is_fixed_H'] and steps['halt_huge_is_H_min']          # halt_tol on the mapper itself
    assert set(steps['halt_steps']) == {1}

def check_metric(metric, tree):
    assert metric['registered'] and metric['tree'] == tree
    assert metric['density'] == pytest.approx(metric['prdc_density'], abs=1e-9)
    assert metric['coverage'] == pytest.approx(metric['prdc_coverage'], abs=1e-9)

def check_image_script(run, script, rtm_pkl, mlp_pkl, expected, out):
    """`script` --rtm-steps=2 --class=1 --seeds=0,1 writes `expected` (the driver's steps command); on an MLP
    pickle --rtm-steps is a usage error. `run(*args, expect=...)` runs a script in the patched checkout."""
    result = run(script, f'--network={rtm_pkl}', '--seeds=0,1', '--class=1', '--trunc=1', '--rtm-steps=2',
                 f'--outdir={out}')
    assert 'Generating image for seed 1' in result.stdout
    images = np.stack([np.array(PIL.Image.open(out / f'seed{s:04d}.png')) for s in (0, 1)])
    assert np.array_equal(images, np.load(expected))
    result = run(script, f'--network={mlp_pkl}', '--seeds=0', '--class=1', '--rtm-steps=2', f'--outdir={out}',
                 expect=2)
    assert 'Invalid value for' in result.output and '--rtm-steps needs an RTM mapper' in result.output
    assert "this network's mapper is mlp (MappingNetwork" in result.output

def check_calc_metrics(run, rtm_pkl):
    result = run('calc_metrics.py', '--metrics=dc50k5_full,pr50k3_full', '--rtm-steps=0', f'--network={rtm_pkl}',
                 expect=2)
    assert 'H must be a positive integer, got 0' in result.output     # metrics validated, G loaded
    result = run('calc_metrics.py', '--metrics=dc50k5_fullx', f'--network={rtm_pkl}', expect=2)
    assert 'dc50k5_full' in result.output

def check_custom_op(patched, pristine):
    """The driver's custom_op in the patched and the pristine copy: the loader works only after the fix."""
    assert patched == {'ok': True}
    assert not pristine['ok'] and 'ModuleNotFoundError' in pristine['error']      # the bug the edit fixes

"""Runs inside a stylegan2-ada-pytorch checkout (cwd) for test_stylegan2_ada.py; prints one JSON line of results.

    python sg2ada_driver.py WORKDIR COMMAND [COMMAND ...] [--block-plugin]

Commands: build (options -> G/D, one StyleGAN2Loss step, pickles, resume), load (pickle round trip, identical
images), steps (--rtm-steps expectations), metric (dc50k5_full plumbing), custom_op (get_plugin after a build),
w_avg (the pickled mapper in training mode: NaN row, empty batch, fp16/bf16), legacy_write / legacy_load /
legacy_resume (a pickle of the mapper layout before the shared head: written, loaded, resumed from).
The tree-independent parts are in stylegan_driver.py.
"""

import copy
import os

import stylegan_driver as sd   # first: --block-plugin

import dnnlib  # pylint: disable=wrong-import-order
import torch   # pylint: disable=wrong-import-order

NAME = 'rtm'
SMALL = dict(channel_base=256, channel_max=32)      # CPU-sized synthesis and D; the mapper is as configured

def training_args(work, **options):
    """train.py's setup for the test dataset, CPU-sized."""
    import train
    desc, args = train.setup_training_loop_kwargs(data=os.path.join(work, 'data'), cfg='stylegan2', cond=True,
                                                  batch=4, **options)
    for kwargs in (args.G_kwargs.synthesis_kwargs, args.D_kwargs):
        kwargs.update(SMALL)
    args.G_kwargs.z_dim = args.G_kwargs.w_dim = sd.Z_W_DIM
    return desc, args

def cmd_build(work):
    from training import networks

    torch.manual_seed(0)
    desc, args = training_args(work, **sd.RTM_OPTIONS)
    training_set = dnnlib.util.construct_class_by_name(**args.training_set_kwargs)
    G, D, _ = sd.networks(args.G_kwargs, args.D_kwargs, training_set)
    out = dict(desc=desc, **sd.describe_built(G, D, args.G_kwargs.mapping_kwargs, networks.MappingNetwork))

    # One full StyleGAN2Loss step, phase by phase as the training loop runs them (style mixing forced on).
    loss = dnnlib.util.construct_class_by_name(device=torch.device('cpu'), G_mapping=G.mapping,
                                               G_synthesis=G.synthesis, D=D, augment_pipe=None,
                                               **dict(args.loss_kwargs, style_mixing_prob=1.0))
    real_img, real_c = sd.reals(training_set)
    gen_z, gen_c = torch.randn([4, G.z_dim]), real_c.flip(0)
    out.update(sd.loss_step(G, D, ['Gmain', 'Greg', 'Dmain', 'Dreg'], lambda phase: loss.accumulate_gradients(
        phase=phase, real_img=real_img, real_c=real_c, gen_z=gen_z, gen_c=gen_c, sync=True, gain=1)))
    out['pl_mean'] = float(loss.pl_mean)

    # The pickle a training run writes, an MLP pickle (upstream's own options), and --resume from it with --map=rtm.
    _, mlp_args = training_args(work)
    G_mlp, D_mlp, _ = sd.networks(mlp_args.G_kwargs, mlp_args.D_kwargs, training_set)
    sd.write_pickles(work, NAME, args.training_set_kwargs, G, D, G_mlp, D_mlp, gen_z, gen_c)
    out['resume'] = sd.check_resume(work, NAME, lambda: sd.networks(args.G_kwargs, args.D_kwargs, training_set))
    return out

def cmd_legacy_write(work):
    """legacy.pkl: a pickle of the mapper layout before the shared head (stylegan_driver.write_legacy_pickle)."""
    torch.manual_seed(0)
    _, args = training_args(work, **sd.RTM_OPTIONS)
    training_set = dnnlib.util.construct_class_by_name(**args.training_set_kwargs)
    G, D, _ = sd.networks(args.G_kwargs, args.D_kwargs, training_set)
    _, real_c = sd.reals(training_set)
    sd.write_legacy_pickle(work, args.training_set_kwargs, G, D, torch.randn([4, G.z_dim]), real_c)
    return dict(written=True)

def cmd_legacy_resume(work):
    torch.manual_seed(1)
    _, args = training_args(work, **sd.RTM_OPTIONS)
    training_set = dnnlib.util.construct_class_by_name(**args.training_set_kwargs)
    return sd.cmd_legacy_resume(work, lambda: sd.networks(args.G_kwargs, args.D_kwargs, training_set))

def save_torchscript(module, path):
    torch.jit.save(torch.jit.script(module), path)    # stylegan2-ada-pytorch loads detectors with torch.jit.load

def cmd_w_avg(work):
    """G.mapping of the pickle in training mode: a NaN row, an empty batch, fp16 and bf16 copies (rtm.update_w_avg,
    which a pickle loaded without rtm_plugin reaches through the trunk)."""
    mapping = sd.load_pickle(os.path.join(work, 'rtm.pkl'))['G'].mapping.train()
    z, c = sd.reference_inputs(mapping)
    w_avg0 = mapping.w_avg.clone()
    z_bad = z.clone()
    z_bad[0] = float('nan')
    mapping(z_bad, c)
    out = dict(nan_row_kept_finite=bool(torch.isfinite(mapping.w_avg).all()),
               nan_row_moved=not torch.equal(mapping.w_avg, w_avg0))
    w_avg1 = mapping.w_avg.clone()
    mapping(z[:0], c[:0])
    out['empty_batch_unchanged'] = torch.equal(mapping.w_avg, w_avg1)
    for dtype in (torch.float16, torch.bfloat16):
        half = copy.deepcopy(mapping).to(dtype).requires_grad_(True)
        ws = half(z.to(dtype), c.to(dtype))
        ws.square().mean().backward()
        truncated = half.eval()(z.to(dtype), c.to(dtype), truncation_psi=0.5, truncation_cutoff=2)
        out[str(dtype).split('.')[-1]] = dict(
            w_avg_dtype_kept=half.w_avg.dtype == dtype, w_avg_finite=bool(torch.isfinite(half.w_avg).all()),
            grads=all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in half.parameters()),
            truncated_finite=bool(torch.isfinite(truncated).all()))
    return out

COMMANDS = dict(build=cmd_build, load=lambda work: sd.cmd_load(work, NAME), steps=lambda work: sd.cmd_steps(work, NAME),
                metric=lambda work: sd.cmd_metric(work, NAME, save_torchscript),
                custom_op=lambda work: sd.cmd_custom_op(work, 'rtm_sg2ada_probe_op'), w_avg=cmd_w_avg,
                legacy_write=cmd_legacy_write, legacy_load=sd.cmd_legacy_load, legacy_resume=cmd_legacy_resume)

if __name__ == '__main__':
    sd.main(COMMANDS)

"""Runs inside a stylegan3 checkout (cwd) for test_stylegan3.py; prints one JSON line of results.

    python sg3_driver.py WORKDIR COMMAND [COMMAND ...] [--block-plugin]

Commands: build (train.py's options -> G/D for --cfg=stylegan2 and stylegan3-t, one StyleGAN2Loss step of every
phase the training loop runs, pickles, resume), build_r (stylegan3-r: G built and sampled), load (pickle round trip,
identical images), steps (--rtm-steps expectations), metric (dc50k5_full plumbing), custom_op (get_plugin after a
build). The tree-independent parts are in stylegan_driver.py.
"""

import os
import pickle

import stylegan_driver as sd   # first: --block-plugin

import dnnlib  # pylint: disable=wrong-import-order
import torch   # pylint: disable=wrong-import-order

CONFIGS = ('stylegan2', 'stylegan3-t')      # the loss step runs for these; stylegan3-r is built and sampled
SMALL = ['--cbase=256', '--cmax=32']        # CPU-sized synthesis and D; the mapper is as configured

def flags(options):
    return [f'--{name.replace("_", "-")}={value}' for name, value in options.items()]

def training_config(work, cfg, *args, cond=True):
    """train.py's own config (`c`) and run name for the test dataset, through its click command: launch_training
    is replaced by a function that keeps them."""
    import train
    kept = {}
    train.launch_training = lambda c, desc, outdir, dry_run: kept.update(c=c, desc=desc)
    train.main([f'--outdir={os.path.join(work, "runs")}', f'--cfg={cfg}', f'--data={os.path.join(work, "data")}',
                '--gpus=1', '--batch=4', '--gamma=1', f'--cond={int(cond)}', *SMALL, *args], standalone_mode=False)
    c = kept['c']
    c.G_kwargs.z_dim = c.G_kwargs.w_dim = sd.Z_W_DIM
    return c, kept['desc']

def phases(c):
    """The phases the training loop runs: G and D lazily regularised (main + reg) or not (both)."""
    G_reg, D_reg = c.get('G_reg_interval'), c.get('D_reg_interval', 16)
    return (['Gboth'] if G_reg is None else ['Gmain', 'Greg']) + (['Dboth'] if D_reg is None else ['Dmain', 'Dreg'])

def build(work, cfg):
    from training import networks_stylegan2, networks_stylegan3

    torch.manual_seed(0)
    c, desc = training_config(work, cfg, *flags(sd.RTM_OPTIONS))
    training_set = dnnlib.util.construct_class_by_name(**c.training_set_kwargs)
    G, D, _ = sd.networks(c.G_kwargs, c.D_kwargs, training_set)
    out = dict(desc=desc, G_class=f'{type(G).__mro__[1].__module__}.{type(G).__name__}',
               **sd.describe_built(G, D, c.G_kwargs.mapping_kwargs, networks_stylegan2.MappingNetwork))
    out['mapping_subclass_of'] = [name for name, module in [('networks_stylegan2', networks_stylegan2),
                                                             ('networks_stylegan3', networks_stylegan3)]
                                  if isinstance(G.mapping, module.MappingNetwork)]

    # One step of every phase, through upstream's StyleGAN2Loss (style mixing forced on).
    loss = dnnlib.util.construct_class_by_name(device=torch.device('cpu'), G=G, D=D, augment_pipe=None,
                                               **dict(c.loss_kwargs, style_mixing_prob=1.0))
    real_img, real_c = sd.reals(training_set)
    gen_z, gen_c = torch.randn([4, G.z_dim]), real_c.flip(0)
    out['phases'] = phases(c)
    out.update(sd.loss_step(G, D, out['phases'], lambda phase: loss.accumulate_gradients(
        phase=phase, real_img=real_img, real_c=real_c, gen_z=gen_z, gen_c=gen_c, gain=1, cur_nimg=0)))
    out['pl_mean'] = float(loss.pl_mean)

    # The pickle a training run writes, an MLP pickle (upstream's own options), and --resume from it with --map=rtm.
    c_mlp, _ = training_config(work, cfg)
    G_mlp, D_mlp, _ = sd.networks(c_mlp.G_kwargs, c_mlp.D_kwargs, training_set)
    out['mlp_layers'] = G_mlp.mapping.num_layers
    sd.write_pickles(work, cfg, c.training_set_kwargs, G, D, G_mlp, D_mlp, gen_z, gen_c, update_emas=True)
    out['resume'] = sd.check_resume(work, cfg, lambda: sd.networks(c.G_kwargs, c.D_kwargs, training_set))
    return out

def cmd_build(work):
    out = {cfg: build(work, cfg) for cfg in CONFIGS}
    # An unconditional RTM pickle: gen_video.py maps with c=None, so upstream renders unconditional networks only.
    torch.manual_seed(0)
    c, _ = training_config(work, 'stylegan2', *flags(sd.RTM_OPTIONS), cond=False)
    G, D, G_ema = sd.networks(c.G_kwargs, c.D_kwargs, dnnlib.util.construct_class_by_name(**c.training_set_kwargs))
    sd.save_pickle(os.path.join(work, 'stylegan2-uncond.pkl'), c.training_set_kwargs, G, D, G_ema)
    return out

def cmd_build_r(work):
    """--cfg=stylegan3-r --map=rtm: G builds (1x1 convolutions, radial filters) and samples."""
    torch.manual_seed(0)
    c, desc = training_config(work, 'stylegan3-r', *flags(sd.RTM_OPTIONS))
    training_set = dnnlib.util.construct_class_by_name(**c.training_set_kwargs)
    G, _, _ = sd.networks(c.G_kwargs, c.D_kwargs, training_set)
    z, label = sd.reference_inputs(G)
    with torch.no_grad():
        img = G(z, label, truncation_psi=0.7, noise_mode='const')
    return dict(desc=desc, G_mapping=type(G.mapping).__name__, shape=list(img.shape),
                finite=bool(torch.isfinite(img).all()))

def save_pickle(module, path):
    with open(path, 'wb') as f:     # stylegan3 loads detectors with pickle.load
        pickle.dump(module, f)

COMMANDS = dict(build=cmd_build, build_r=cmd_build_r,
                load=lambda work: {cfg: sd.cmd_load(work, cfg) for cfg in CONFIGS},
                steps=lambda work: {cfg: sd.cmd_steps(work, cfg) for cfg in CONFIGS},
                metric=lambda work: sd.cmd_metric(work, 'stylegan3-t', save_pickle),
                custom_op=lambda work: sd.cmd_custom_op(work, 'rtm_sg3_probe_op'))

if __name__ == '__main__':
    sd.main(COMMANDS)

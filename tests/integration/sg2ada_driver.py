"""Runs inside a stylegan2-ada-pytorch checkout (cwd) for test_stylegan2_ada.py; prints one JSON line of results.

    python sg2ada_driver.py WORKDIR COMMAND [COMMAND ...] [--block-plugin]

Commands: build (options -> G/D, one StyleGAN2Loss step, pickles, resume), load (pickle round trip, identical
images), steps (--rtm-steps expectations), metric (dc50k5_full plumbing), custom_op (get_plugin after a build),
w_avg (the pickled mapper in training mode: NaN row, empty batch, fp16/bf16).
--block-plugin makes rtm_plugin and torch_utils_ext unimportable before anything else is imported.
"""

import copy
import json
import os
import pickle
import sys

BLOCKED = ('rtm_plugin', 'torch_utils_ext')

class BlockPlugin:
    """A meta-path finder that makes the plugin unimportable, as on a machine without it."""
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ModuleNotFoundError(name)

if '--block-plugin' in sys.argv:
    sys.meta_path.insert(0, BlockPlugin())
sys.path.insert(0, os.getcwd())    # the checkout's top-level packages (dnnlib, training, torch_utils, ...)

import checkouts       # pylint: disable=wrong-import-position
import numpy as np     # pylint: disable=wrong-import-position
import torch           # pylint: disable=wrong-import-position

import dnnlib          # pylint: disable=wrong-import-position
import legacy          # pylint: disable=wrong-import-position

RTM_OPTIONS = dict(map='rtm', rtm_h=3, rtm_l=2, rtm_tokens=4, rtm_dim=16, rtm_block='mlp')
SMALL = dict(channel_base=256, channel_max=32)      # CPU-sized synthesis and D; the mapper is as configured
Z_W_DIM = 32

def reference_inputs(G, n=3):
    gen = torch.Generator().manual_seed(123)
    z = torch.randn([n, G.z_dim], generator=gen)
    c = torch.nn.functional.one_hot(torch.arange(n) % G.c_dim, G.c_dim).float() if G.c_dim else torch.zeros([n, 0])
    return z, c

def images(G, **kwargs):
    """Reference images, with the mapper on its reference path: a pickle loaded without rtm_plugin has no fused
    op, and the fused op agrees with the reference only to float32 rounding, not bit for bit."""
    z, c = reference_inputs(G)
    trunk = G.mapping.trunk
    saved, trunk.use_fused = trunk.use_fused, False
    try:
        with torch.no_grad():
            return G(z, c, truncation_psi=0.7, noise_mode='const', **kwargs).numpy()
    finally:
        trunk.use_fused = saved

def save_pickle(path, training_set_kwargs, G, D, G_ema):
    """As the training loop writes network-snapshot-*.pkl."""
    data = dict(training_set_kwargs=dict(training_set_kwargs))
    for name, module in [('G', G), ('D', D), ('G_ema', G_ema), ('augment_pipe', None)]:
        data[name] = None if module is None else copy.deepcopy(module).eval().requires_grad_(False).cpu()
    with open(path, 'wb') as f:
        pickle.dump(data, f)

def load_pickle(path):
    with dnnlib.util.open_url(path) as f:
        return legacy.load_network_pkl(f)

def defining_module(obj):
    """The module of the class persistence.persistent_class wrapped (the Decorator itself lives in persistence)."""
    return type(obj).__mro__[1].__module__

def tensors(module):
    return dict(list(module.named_parameters()) + list(module.named_buffers()))

#----------------------------------------------------------------------------

def cmd_build(work):
    import train
    from training import networks
    from rtm_plugin.integrations import stylegan2_ada_options as rtm_options

    torch.manual_seed(0)
    desc, args = train.setup_training_loop_kwargs(data=os.path.join(work, 'data'), cfg='stylegan2', cond=True,
                                                  batch=4, **RTM_OPTIONS)
    out = dict(desc=desc, mapping_kwargs=dict(args.G_kwargs.mapping_kwargs))
    for kwargs in (args.G_kwargs.synthesis_kwargs, args.D_kwargs):
        kwargs.update(SMALL)
    args.G_kwargs.z_dim = args.G_kwargs.w_dim = Z_W_DIM
    training_set = dnnlib.util.construct_class_by_name(**args.training_set_kwargs)
    common = dict(c_dim=training_set.label_dim, img_resolution=training_set.resolution,
                  img_channels=training_set.num_channels)
    G = dnnlib.util.construct_class_by_name(**args.G_kwargs, **common).train().requires_grad_(False)
    D = dnnlib.util.construct_class_by_name(**args.D_kwargs, **common).train().requires_grad_(False)
    G_ema = copy.deepcopy(G).eval()
    out.update(G_mapping=type(G.mapping).__name__, D_mapping_is_upstream=type(D.mapping) is networks.MappingNetwork,
               G_init_mapping_kwargs=dict(G.init_kwargs.mapping_kwargs),
               mapper_names=sorted(n for n, _ in G.mapping.named_parameters()))

    # One full StyleGAN2Loss step, phase by phase as the training loop runs them (style mixing forced on).
    loss_kwargs = dict(args.loss_kwargs, style_mixing_prob=1.0)
    loss = dnnlib.util.construct_class_by_name(device=torch.device('cpu'), G_mapping=G.mapping,
                                               G_synthesis=G.synthesis, D=D, augment_pipe=None, **loss_kwargs)
    real_img = torch.stack([torch.from_numpy(training_set[i][0]) for i in range(4)]).float() / 127.5 - 1
    real_c = torch.from_numpy(np.stack([training_set.get_label(i) for i in range(4)]))
    gen_z = torch.randn([4, G.z_dim])
    gen_c = real_c.flip(0)
    fixed = {n: t.clone() for n, t in G.mapping.named_buffers() if not n.endswith('w_avg')}
    grads = {}
    for phase, module in [('Gmain', G), ('Greg', G), ('Dmain', D), ('Dreg', D)]:
        module.requires_grad_(True)
        for p in module.parameters():
            p.grad = None
        loss.accumulate_gradients(phase=phase, real_img=real_img, real_c=real_c, gen_z=gen_z, gen_c=gen_c,
                                  sync=True, gain=1)
        module.requires_grad_(False)
        owner = G.mapping if module is G else D
        grads[phase] = {n: (p.grad is not None and bool(torch.isfinite(p.grad).all()) and bool(p.grad.abs().sum() > 0))
                        for n, p in owner.named_parameters()}
    out.update(grads=grads, pl_mean=float(loss.pl_mean), w_avg_norm=float(G.mapping.w_avg.norm()),
               fixed_buffers_unchanged=all(torch.equal(t, tensors(G.mapping)[n]) for n, t in fixed.items()))

    # The pickle a training run writes, and its reference images.
    G_ema = copy.deepcopy(G).eval()
    save_pickle(os.path.join(work, 'rtm.pkl'), args.training_set_kwargs, G, D, G_ema)
    np.save(os.path.join(work, 'rtm_images.npy'), images(G_ema))

    # A baseline (MLP) pickle with a trained-looking w_avg, for --resume.
    mlp_kwargs = dnnlib.EasyDict(copy.deepcopy(args.G_kwargs), mapping_kwargs=dict(num_layers=8))
    G_mlp = dnnlib.util.construct_class_by_name(**mlp_kwargs, **common).train()
    with torch.no_grad():
        G_mlp.mapping(gen_z, gen_c)                     # moves w_avg off zero
        G_mlp.synthesis.b4.const.add_(1.0)
    save_pickle(os.path.join(work, 'mlp.pkl'), args.training_set_kwargs, G_mlp, D, copy.deepcopy(G_mlp).eval())

    # --resume mlp.pkl --map=rtm: what the patched training loop does, on a freshly built RTM generator.
    resume_data = load_pickle(os.path.join(work, 'mlp.pkl'))
    src_names = set(tensors(resume_data['G']))
    G2 = dnnlib.util.construct_class_by_name(**args.G_kwargs, **common).train().requires_grad_(False)
    D2 = dnnlib.util.construct_class_by_name(**args.D_kwargs, **common).train().requires_grad_(False)
    G2_ema = copy.deepcopy(G2).eval()
    fresh_mapping = {n: t.clone() for n, t in tensors(G2.mapping).items()}
    shared = sorted(n for n in tensors(G2) if n.startswith('mapping.') and n in src_names)
    log = []
    dropped = rtm_options.keep_compatible_mapper(resume_data, G2, log=log.append)
    for name, module in [('G', G2), ('D', D2), ('G_ema', G2_ema)]:
        from torch_utils import misc
        misc.copy_params_and_buffers(resume_data[name], module, require_all=False)
    mlp = load_pickle(os.path.join(work, 'mlp.pkl'))
    out['resume'] = dict(
        dropped=dropped, log=log, same_name_mapper_tensors=shared,
        synthesis_from_pickle=all(torch.equal(t, tensors(mlp['G'].synthesis)[n]) for n, t in tensors(G2.synthesis).items()),
        ema_synthesis_from_pickle=all(torch.equal(t, tensors(mlp['G_ema'].synthesis)[n])
                                      for n, t in tensors(G2_ema.synthesis).items()),
        D_from_pickle=all(torch.equal(t, tensors(mlp['D'])[n]) for n, t in tensors(D2).items()),
        mapper_fresh=all(torch.equal(t, fresh_mapping[n]) for n, t in tensors(G2.mapping).items()),
        ema_mapper_fresh=all(torch.equal(t, fresh_mapping[n]) for n, t in tensors(G2_ema.mapping).items()),
    )
    # Same kind resumes everything, mapper included.
    same = load_pickle(os.path.join(work, 'rtm.pkl'))
    out['resume']['same_kind_dropped'] = rtm_options.keep_compatible_mapper(same, G2, log=log.append)
    return out

def cmd_load(work):
    data = load_pickle(os.path.join(work, 'rtm.pkl'))
    G = data['G_ema']
    reference = np.load(os.path.join(work, 'rtm_images.npy'))
    result = images(G)
    return dict(identical=bool(np.array_equal(result, reference)), max_abs_diff=float(np.abs(result - reference).max()),
                mapping_class=type(G.mapping).__name__, mapping_module=defining_module(G.mapping),
                trunk_module=defining_module(G.mapping.trunk), H=G.mapping.trunk.H,
                plugin_imported=sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED))

def cmd_steps(work):
    """What generate.py --rtm-steps=2 --class=1 --seeds=0,1 --trunc=1 must write, computed here."""
    from rtm_plugin.integrations import stylegan2_ada_options as rtm_options
    G = load_pickle(os.path.join(work, 'rtm.pkl'))['G_ema']
    z, c = reference_inputs(G)
    with torch.no_grad():
        default = G.mapping(z, c)
        override = G.mapping(z, c, H=2)
        halt_none = G.mapping(z, c, halt_tol=0.0)                   # tol 0: every sample runs all H steps
        halt_all = G.mapping(z, c, halt_tol=1e9, H_min=1)           # huge tol: every sample stops at H_min
        halt_steps = G.mapping.trunk.halt_steps.tolist()
        one_step = G.mapping(z, c, H=1)
        rtm_options.set_rtm_steps(G, 2)
        after_set = G.mapping(z, c)
        label = torch.zeros([1, G.c_dim])
        label[:, 1] = 1
        expected = []
        for seed in (0, 1):
            zs = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim))
            img = G(zs, label, truncation_psi=1, noise_mode='const')
            expected.append((img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy())
    np.save(os.path.join(work, 'steps2_seeds01.npy'), np.stack(expected))
    return dict(override_differs=not torch.equal(default, override), set_equals_override=torch.equal(after_set, override),
                contiguous=override.is_contiguous(), shape=list(override.shape),
                halt_tol0_is_fixed_H=torch.allclose(halt_none, default, atol=1e-5),
                halt_huge_is_H_min=torch.allclose(halt_all, one_step, atol=1e-5), halt_steps=halt_steps)

def cmd_metric(work):
    """dc50k5_full's plumbing with a local detector file: upstream's feature code, our k-NN math, vs prdc."""
    from metrics import metric_main, metric_utils
    from rtm_plugin.integrations import stylegan2_ada_metrics as rtm_metrics
    import prdc

    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer('proj', torch.randn([3 * 16 * 16, 12], generator=torch.Generator().manual_seed(5)))
        def forward(self, img, return_features: bool = False):
            x = img.to(torch.float32).flatten(1) / 255
            return x @ self.proj if return_features else (x @ self.proj).softmax(1)
    detector = os.path.join(work, 'detector.pt')
    torch.jit.save(torch.jit.script(Detector()), detector)
    torch.Tensor.pin_memory = lambda self, *a, **k: self   # CPU-only torch cannot pin; upstream pins unconditionally

    G = load_pickle(os.path.join(work, 'rtm.pkl'))['G_ema']
    opts = metric_utils.MetricOptions(G=G, dataset_kwargs=dict(class_name='training.dataset.ImageFolderDataset',
        path=os.path.join(work, 'data'), use_labels=True, xflip=False), device=torch.device('cpu'), cache=False)
    loader = dict(num_workers=0)
    np.random.seed(1); torch.manual_seed(1)
    density, coverage = rtm_metrics.compute_dc(opts, max_real=8, num_gen=16, nhood_size=5, detector_url=detector,
                                               data_loader_kwargs=loader)
    np.random.seed(1); torch.manual_seed(1)
    kwargs = dict(opts=opts, detector_url=detector, detector_kwargs=dict(return_features=True), capture_all=True)
    real = metric_utils.compute_feature_stats_for_dataset(max_items=8, data_loader_kwargs=loader, **kwargs).get_all()
    fake = metric_utils.compute_feature_stats_for_generator(max_items=16, **kwargs).get_all()
    reference = prdc.compute_prdc(real_features=real.astype(np.float64), fake_features=fake.astype(np.float64),
                                  nearest_k=5)
    return dict(registered=metric_main.is_valid_metric('dc50k5_full'), density=density, coverage=coverage,
                prdc_density=float(reference['density']), prdc_coverage=float(reference['coverage']))

def cmd_w_avg(work):
    """G.mapping of the pickle in training mode: a NaN row, an empty batch, fp16 and bf16 copies (rtm.update_w_avg,
    which a pickle loaded without rtm_plugin reaches through the trunk)."""
    mapping = load_pickle(os.path.join(work, 'rtm.pkl'))['G'].mapping.train()
    z, c = reference_inputs(mapping)
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

def cmd_custom_op(work):
    """get_plugin on a tiny C++ op: upstream re-imports the built module by name, which fails with pybind11 3."""
    from torch_utils import custom_ops
    return checkouts.probe_custom_ops(custom_ops, work, 'rtm_sg2ada_probe_op')

COMMANDS = dict(build=cmd_build, load=cmd_load, steps=cmd_steps, metric=cmd_metric, custom_op=cmd_custom_op,
                w_avg=cmd_w_avg)

if __name__ == '__main__':
    work_dir, *names = [a for a in sys.argv[1:] if a != '--block-plugin']
    print(json.dumps({name: COMMANDS[name](work_dir) for name in names}))

"""What sg2ada_driver.py and sg3_driver.py share: they run inside a checkout of NVlabs' stylegan2-ada-pytorch or
stylegan3 (cwd), whose dnnlib, legacy, torch_utils, training and metrics are the same where these helpers use them.

Import this first. Flags, applied before anything else is imported:
    --block-plugin    rtm_plugin and torch_utils_ext are unimportable, as on a machine without them;
    --pkg-resources   a `pkg_resources` with parse_version, as setuptools < 81 had: an unpatched stylegan3 imports
                      it, and this environment's setuptools no longer has it (the stylegan3 target's fix).
"""

import copy
import json
import os
import pickle
import sys
import types

BLOCKED = ('rtm_plugin', 'torch_utils_ext')

class BlockPlugin:
    """A meta-path finder that makes the plugin unimportable, as on a machine without it."""
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ModuleNotFoundError(name)

FLAGS = ('--block-plugin', '--pkg-resources')

if '--block-plugin' in sys.argv:
    sys.meta_path.insert(0, BlockPlugin())
if '--pkg-resources' in sys.argv:
    from torch.torch_version import TorchVersion    # PEP 440 ordering, as pkg_resources.parse_version
    sys.modules['pkg_resources'] = types.ModuleType('pkg_resources')
    sys.modules['pkg_resources'].parse_version = TorchVersion
sys.path.insert(0, os.getcwd())    # the checkout's top-level packages (dnnlib, training, torch_utils, ...)

import checkouts       # pylint: disable=wrong-import-position
import numpy as np     # pylint: disable=wrong-import-position
import torch           # pylint: disable=wrong-import-position

import dnnlib          # pylint: disable=wrong-import-position
import legacy          # pylint: disable=wrong-import-position

RTM_OPTIONS = dict(map='rtm', rtm_h=3, rtm_l=2, rtm_tokens=4, rtm_dim=16, rtm_block='mlp')
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

LEGACY = checkouts.REPO / 'tests' / 'data' / 'legacy_676eb91'

def legacy_mapper_module():
    """stylegan_mapper.py over rtm.py as of commit 676eb91 (tests/data/legacy_676eb91): the mapper layout before the
    shared head, as pickles of that time embed it. Registered in sys.modules under their own names, so
    persistence embeds exactly these sources."""
    import importlib.machinery  # pylint: disable=import-outside-toplevel
    import importlib.util  # pylint: disable=import-outside-toplevel
    modules = {}
    for name, file in [('legacy_rtm_676eb91', 'rtm.py.txt'), ('legacy_stylegan_mapper_676eb91', 'stylegan_mapper.py.txt')]:
        path = str(LEGACY / file)
        spec = importlib.util.spec_from_file_location(name, path, loader=importlib.machinery.SourceFileLoader(name, path))
        modules[name] = sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules[name])
    legacy = modules['legacy_stylegan_mapper_676eb91']
    legacy.rtm = modules['legacy_rtm_676eb91']          # what its `from rtm_plugin import rtm` gave it then
    return legacy

def write_legacy_pickle(work, training_set_kwargs, G, D, gen_z, gen_c):
    """legacy.pkl: G with its mapper replaced by one of the old layout (trained-looking w_avg), and its reference
    images; as the training loop of that time wrote it."""
    old = legacy_mapper_module()
    kwargs = {k: v for k, v in G.init_kwargs.mapping_kwargs.items() if k != 'map'}
    G.mapping = old.RTMMappingNetwork(z_dim=G.z_dim, c_dim=G.c_dim, w_dim=G.w_dim, num_ws=G.num_ws, **kwargs)
    with torch.no_grad():
        G.mapping.train()(gen_z, gen_c)                 # moves w_avg
    G_ema = copy.deepcopy(G).eval()
    save_pickle(os.path.join(work, 'legacy.pkl'), training_set_kwargs, G, D, G_ema)
    np.save(os.path.join(work, 'legacy_images.npy'), images(G_ema))

def cmd_legacy_load(work):
    """The old-layout pickle, loaded with whatever this process has (the new rtm_plugin, or none): same images,
    and the mapper runs the source the pickle carries (no shared head), halting included."""
    out = cmd_load(work, 'legacy')
    G = load_pickle(os.path.join(work, 'legacy.pkl'))['G_ema']
    z, c = reference_inputs(G)
    with torch.no_grad():
        ws = G.mapping(z, c, H=2, halt_tol=1e9, H_min=1)
    out.update(old_layout=not hasattr(G.mapping.trunk, 'mapper_forward') and hasattr(G.mapping, 'trunk_input'),
               old_halting=torch.is_tensor(ws) and G.mapping.trunk.halt_steps.tolist() == [1] * len(z))
    return out

def cmd_legacy_resume(work, build):
    """--resume legacy.pkl into a G of the new layout (`build()` -> G, D, G_ema), as the patched training loop does
    it: every tensor comes from the pickle, and the new G makes the old G's images."""
    from torch_utils import misc  # pylint: disable=import-outside-toplevel
    from rtm_plugin.integrations import stylegan_options as rtm_options  # pylint: disable=import-outside-toplevel
    resume_data = load_pickle(os.path.join(work, 'legacy.pkl'))
    G2, D2, G2_ema = build()
    log = []
    dropped = rtm_options.keep_compatible_mapper(resume_data, G2, log=log.append)
    for key, module in [('G', G2), ('D', D2), ('G_ema', G2_ema)]:
        misc.copy_params_and_buffers(resume_data[key], module, require_all=True)
    old = tensors(resume_data['G_ema'])
    result = images(G2_ema.eval())
    reference = np.load(os.path.join(work, 'legacy_images.npy'))
    return dict(dropped=dropped, log=log, new_layout=hasattr(G2.mapping.trunk, 'mapper_forward'),
                same_names=sorted(old) == sorted(tensors(G2_ema)),
                all_copied=all(torch.equal(t, old[n]) for n, t in tensors(G2_ema).items()),
                identical=bool(np.array_equal(result, reference)), max_abs_diff=float(np.abs(result - reference).max()))

def defining_module(obj):
    """The module of the class persistence.persistent_class wrapped (the Decorator itself lives in persistence)."""
    return type(obj).__mro__[1].__module__

def tensors(module):
    return dict(list(module.named_parameters()) + list(module.named_buffers()))

def networks(G_kwargs, D_kwargs, training_set):
    """G, D and G_ema as the training loop builds them."""
    common = dict(c_dim=training_set.label_dim, img_resolution=training_set.resolution,
                  img_channels=training_set.num_channels)
    G = dnnlib.util.construct_class_by_name(**G_kwargs, **common).train().requires_grad_(False)
    D = dnnlib.util.construct_class_by_name(**D_kwargs, **common).train().requires_grad_(False)
    return G, D, copy.deepcopy(G).eval()

def reals(training_set, n=4):
    img = torch.stack([torch.from_numpy(training_set[i][0]) for i in range(n)]).float() / 127.5 - 1
    return img, torch.from_numpy(np.stack([training_set.get_label(i) for i in range(n)]))

def loss_step(G, D, phases, accumulate):
    """One step of every phase, as the training loop runs them: `accumulate(phase)` runs the tree's loss. Returns
    {phase: {parameter: got a finite, non-zero gradient}} over G's mapper (G phases) or D, and whether the mapper's
    fixed buffers (all but w_avg) stayed as they were."""
    fixed = {n: t.clone() for n, t in G.mapping.named_buffers() if not n.endswith('w_avg')}
    grads = {}
    for phase in phases:
        module = G if phase.startswith('G') else D
        module.requires_grad_(True)
        for p in module.parameters():
            p.grad = None
        accumulate(phase)
        module.requires_grad_(False)
        owner = G.mapping if module is G else D
        grads[phase] = {n: (p.grad is not None and bool(torch.isfinite(p.grad).all()) and bool(p.grad.abs().sum() > 0))
                        for n, p in owner.named_parameters()}
    return dict(grads=grads, w_avg_norm=float(G.mapping.w_avg.norm()),
                fixed_buffers_unchanged=all(torch.equal(t, tensors(G.mapping)[n]) for n, t in fixed.items()))

def describe_built(G, D, mapping_kwargs, upstream_mapping_class):
    return dict(mapping_kwargs=dict(mapping_kwargs), G_mapping=type(G.mapping).__name__,
                D_mapping_is_upstream=type(D.mapping) is upstream_mapping_class,
                G_init_mapping_kwargs=dict(G.init_kwargs.mapping_kwargs),
                mapper_names=sorted(n for n, _ in G.mapping.named_parameters()))

def write_pickles(work, name, training_set_kwargs, G, D, G_mlp, D_mlp, gen_z, gen_c, **update_w_avg):
    """<name>.pkl (RTM) with its reference images, and <name>-mlp.pkl: an MLP pickle with a trained-looking w_avg
    and synthesis, for --resume. update_w_avg: the keyword that makes the tree's mapper move w_avg."""
    G_ema = copy.deepcopy(G).eval()
    save_pickle(os.path.join(work, f'{name}.pkl'), training_set_kwargs, G, D, G_ema)
    np.save(os.path.join(work, f'{name}_images.npy'), images(G_ema))
    G_mlp.train()
    with torch.no_grad():
        G_mlp.mapping(gen_z, gen_c, **update_w_avg)
        next(iter(G_mlp.synthesis.parameters())).add_(1.0)
    save_pickle(os.path.join(work, f'{name}-mlp.pkl'), training_set_kwargs, G_mlp, D_mlp, copy.deepcopy(G_mlp).eval())

def check_resume(work, name, build):
    """--resume <name>-mlp.pkl into a freshly built RTM generator, as the patched training loop does it (`build()`
    -> G, D, G_ema): the synthesis network and D come from the pickle, the mapper starts fresh."""
    from torch_utils import misc  # pylint: disable=import-outside-toplevel
    from rtm_plugin.integrations import stylegan_options as rtm_options  # pylint: disable=import-outside-toplevel
    resume_data = load_pickle(os.path.join(work, f'{name}-mlp.pkl'))
    src_names = set(tensors(resume_data['G']))
    G2, D2, G2_ema = build()
    fresh_mapping = {n: t.clone() for n, t in tensors(G2.mapping).items()}
    shared = sorted(n for n in tensors(G2) if n.startswith('mapping.') and n in src_names)
    log = []
    dropped = rtm_options.keep_compatible_mapper(resume_data, G2, log=log.append)
    for key, module in [('G', G2), ('D', D2), ('G_ema', G2_ema)]:
        misc.copy_params_and_buffers(resume_data[key], module, require_all=False)
    mlp = load_pickle(os.path.join(work, f'{name}-mlp.pkl'))
    same = load_pickle(os.path.join(work, f'{name}.pkl'))
    from_pickle = lambda ours, theirs: all(torch.equal(t, tensors(theirs)[n]) for n, t in tensors(ours).items())
    return dict(
        dropped=dropped, log=log, same_name_mapper_tensors=shared,
        synthesis_from_pickle=from_pickle(G2.synthesis, mlp['G'].synthesis),
        ema_synthesis_from_pickle=from_pickle(G2_ema.synthesis, mlp['G_ema'].synthesis),
        D_from_pickle=from_pickle(D2, mlp['D']),
        mapper_fresh=all(torch.equal(t, fresh_mapping[n]) for n, t in tensors(G2.mapping).items()),
        ema_mapper_fresh=all(torch.equal(t, fresh_mapping[n]) for n, t in tensors(G2_ema.mapping).items()),
        same_kind_dropped=rtm_options.keep_compatible_mapper(same, G2, log=log.append),   # same kind: all resumes
    )

#----------------------------------------------------------------------------
# Commands on a written pickle (NAME.pkl in WORKDIR).

def cmd_load(work, name):
    data = load_pickle(os.path.join(work, f'{name}.pkl'))
    G = data['G_ema']
    reference = np.load(os.path.join(work, f'{name}_images.npy'))
    result = images(G)
    return dict(identical=bool(np.array_equal(result, reference)), max_abs_diff=float(np.abs(result - reference).max()),
                mapping_class=type(G.mapping).__name__, mapping_module=defining_module(G.mapping),
                trunk_module=defining_module(G.mapping.trunk), H=G.mapping.trunk.H,
                plugin_imported=sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED))

def cmd_steps(work, name):
    """What the generation script with --rtm-steps=2 --class=1 --seeds=0,1 --trunc=1 must write, computed here."""
    from rtm_plugin.integrations import stylegan_options as rtm_options  # pylint: disable=import-outside-toplevel
    G = load_pickle(os.path.join(work, f'{name}.pkl'))['G_ema']
    z, c = reference_inputs(G)
    with torch.no_grad():
        default = G.mapping(z, c)
        override = G.mapping(z, c, H=2)
        halt_none, _ = G.mapping(z, c, halt_tol=0.0)                # tol 0: every sample runs all H steps
        halt_all, halt_steps = G.mapping(z, c, halt_tol=1e9, H_min=1)   # huge tol: every sample stops at H_min
        halt_steps = halt_steps.tolist()
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
    np.save(os.path.join(work, f'{name}_steps2_seeds01.npy'), np.stack(expected))
    return dict(override_differs=not torch.equal(default, override), set_equals_override=torch.equal(after_set, override),
                contiguous=override.is_contiguous(), shape=list(override.shape),
                halt_tol0_is_fixed_H=torch.allclose(halt_none, default, atol=1e-5),
                halt_huge_is_H_min=torch.allclose(halt_all, one_step, atol=1e-5), halt_steps=halt_steps)

class Detector(torch.nn.Module):
    """A local stand-in for the VGG16 feature detector: a fixed random projection of the pixels."""
    def __init__(self):
        super().__init__()
        self.register_buffer('proj', torch.randn([3 * 16 * 16, 12], generator=torch.Generator().manual_seed(5)))

    def forward(self, img, return_features: bool = False):
        x = img.to(torch.float32).flatten(1) / 255
        return x @ self.proj if return_features else (x @ self.proj).softmax(1)

def cmd_metric(work, name, save_detector):
    """dc50k5_full's plumbing with a local detector file (`save_detector(module, path)`, in the tree's format):
    upstream's feature code, our k-NN math, vs prdc."""
    from metrics import metric_main, metric_utils  # pylint: disable=import-outside-toplevel
    from rtm_plugin.integrations import stylegan_metrics as rtm_metrics  # pylint: disable=import-outside-toplevel
    import prdc  # pylint: disable=import-outside-toplevel

    detector = os.path.join(work, 'detector')
    save_detector(Detector(), detector)
    torch.Tensor.pin_memory = lambda self, *a, **k: self   # CPU-only torch cannot pin; upstream pins unconditionally

    G = load_pickle(os.path.join(work, f'{name}.pkl'))['G_ema']
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
                prdc_density=float(reference['density']), prdc_coverage=float(reference['coverage']),
                tree=rtm_metrics.stylegan_tree())

def cmd_custom_op(work, op_name):
    """get_plugin on a tiny C++ op: upstream re-imports the built module by name, which fails with pybind11 3."""
    from torch_utils import custom_ops  # pylint: disable=import-outside-toplevel
    if hasattr(custom_ops, '_get_mangled_gpu_name'):      # stylegan3 names the build folder after the GPU: none here
        custom_ops._get_mangled_gpu_name = lambda: 'cpu'  # pylint: disable=protected-access
    return checkouts.probe_custom_ops(custom_ops, work, op_name)

def main(commands):
    """python DRIVER WORKDIR COMMAND [COMMAND ...] [FLAGS]: prints one JSON line, {command: result}."""
    work_dir, *names = [a for a in sys.argv[1:] if a not in FLAGS]
    print(json.dumps({name: commands[name](work_dir) for name in names}))

"""Runs inside the src/ folder of a StudioGAN copy for tests/integration/test_studiogan.py, on CPU:

    python studiogan_driver.py WORKDIR COMMAND [COMMAND ...]

Commands: configs (the RTM YAMLs against their baselines, through Configurations), build (G/D/G_ema, images with
truncation and style mixing, w_avg, gradients), ddp (two gloo ranks seeded apart, G.mapping in DDP as StudioGAN
wraps it), checkpoints (StudioGAN's checkpoint format both ways, the mismatch message), analyse (rtm-analyze's
tools on those checkpoints), custom_op (get_plugin after a build), fid (the Frechet distance), imports (what a
pristine copy does), w_avg (NaN row, empty batch, fp16/bf16 mappers). Prints one JSON line.
"""

import json
import logging
import os
import sys
import warnings

STAND_IN = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'studiogan_stand_in')
sys.path.insert(0, os.getcwd())         # StudioGAN's src/: config, models, utils, metrics

def use_torchvision_or_stand_in():
    """StudioGAN imports torchvision at module level; PyPI's build does not import beside a CPU torch."""
    try:
        import torchvision  # pylint: disable=import-outside-toplevel,unused-import
    except Exception:       # pylint: disable=broad-except
        for name in [n for n in sys.modules if n.split('.')[0] == 'torchvision']:
            del sys.modules[name]
        sys.path.insert(0, STAND_IN)

use_torchvision_or_stand_in()

import checkouts        # pylint: disable=wrong-import-position
import numpy as np      # pylint: disable=wrong-import-position
import torch            # pylint: disable=wrong-import-position

LOGGER = logging.getLogger('studiogan-driver')
LOGGER.addHandler(logging.NullHandler())

# (config, its baseline) for every YAML that rtm-patch writes.
PAIRS = [
    ('CIFAR10/StyleGAN2-RTM.yaml', 'CIFAR10/StyleGAN2.yaml'),
    ('CIFAR10/StyleGAN2-Uncond-RTM.yaml', 'CIFAR10/StyleGAN2-Uncond.yaml'),
    ('CIFAR10/StyleGAN2-ADA-RTM.yaml', 'CIFAR10/StyleGAN2-ADA.yaml'),
    ('CIFAR10/StyleGAN2-ADA-Uncond-RTM.yaml', 'CIFAR10/StyleGAN2-ADA-Uncond.yaml'),
    ('CIFAR10/StyleGAN2-ADA-Uncond.yaml', 'CIFAR10/StyleGAN2-ADA.yaml'),
    ('AFHQ/StyleGAN2-ADA-Uncond-RTM.yaml', 'AFHQ/StyleGAN2-ADA-Uncond.yaml'),
    ('AFHQ/StyleGAN2-ADA-Uncond.yaml', 'AFHQ/StyleGAN2-SPD-ADA.yaml'),
    ('AFHQv2/StyleGAN2-paper-RTM.yaml', 'AFHQv2/StyleGAN2-paper.yaml'),
]

def load_cfgs(name, **stylegan):
    """Configurations of configs/<name>, with STYLEGAN keys overridden as a YAML would (through a temp file)."""
    import config   # pylint: disable=import-outside-toplevel
    import yaml     # pylint: disable=import-outside-toplevel
    path = os.path.join('configs', name)
    if stylegan:
        with open(path) as f:
            data = yaml.safe_load(f)
        data['STYLEGAN'].update(stylegan)
        path = os.path.join(WORK, 'override.yaml')
        with open(path, 'w') as f:
            yaml.safe_dump(data, f)
    cfgs = config.Configurations(path)
    cfgs.RUN.mixed_precision = False
    return cfgs

def build(cfgs):
    from models import model  # pylint: disable=import-outside-toplevel
    return model.load_generator_discriminator(cfgs.DATA, cfgs.OPTIMIZATION, cfgs.MODEL, cfgs.STYLEGAN, cfgs.MODULES,
                                              cfgs.RUN, 'cpu', LOGGER)

def settings(cfgs):
    """{'SECTION.key': value} of every setting (callables by name: define_modules sets some)."""
    out = {}
    for section, obj in cfgs.super_cfgs.items():
        for key, value in vars(obj).items():
            out[f'{section}.{key}'] = getattr(value, '__qualname__', value)
    return out

def generate(mapping, synthesis, z, labels, num_classes, psi=-1, cutoff=None, mixing=0, update_emas=False):
    from utils import sample  # pylint: disable=import-outside-toplevel
    return sample.stylegan_generate_images(z, labels, num_classes, mixing, update_emas, mapping, synthesis, psi, cutoff)

def same(a, b):
    return bool(torch.equal(a, b))

def state_equal(a, b):
    a, b = a.state_dict(), b.state_dict()
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)

#----------------------------------------------------------------------------

def cmd_configs():
    from rtm_plugin.integrations import studiogan_options  # pylint: disable=import-outside-toplevel
    out = dict(diffs={}, mappers={}, errors={})
    for name, baseline in PAIRS:
        ours, theirs = settings(load_cfgs(name)), settings(load_cfgs(baseline))
        out['diffs'][name] = sorted(k for k in set(ours) | set(theirs) if ours.get(k, '?') != theirs.get(k, '?'))
        cfgs = load_cfgs(name)
        out['mappers'][name] = studiogan_options.describe(cfgs.STYLEGAN)
    bad = dict(unknown_type=('CIFAR10/StyleGAN2.yaml', dict(mapping_type='transformer')),
               rtm_keys_with_mlp=('CIFAR10/StyleGAN2.yaml', dict(rtm_h=8)),
               bad_value=('CIFAR10/StyleGAN2-RTM.yaml', dict(rtm_tokens=0)),
               heads=('CIFAR10/StyleGAN2-RTM.yaml', dict(rtm_block='attention', rtm_token_dim=30)),
               stylegan3=('CIFAR10/StyleGAN3-t-ADA.yaml', dict(mapping_type='rtm')))
    for case, (name, keys) in bad.items():
        try:
            load_cfgs(name, **keys).check_compatability()   # our check comes first: RUN is not needed
            out['errors'][case] = None
        except ValueError as err:
            out['errors'][case] = str(err)
    try:
        load_cfgs('CIFAR10/StyleGAN2.yaml', rtm_heads=2)
    except AttributeError as err:
        out['errors']['unknown_key'] = str(err)
    return out

def cmd_build():
    from models import stylegan2  # pylint: disable=import-outside-toplevel
    from rtm_plugin.integrations.studiogan import RTMMappingNetwork  # pylint: disable=import-outside-toplevel
    torch.manual_seed(0)
    cfgs = load_cfgs('CIFAR10/StyleGAN2-RTM.yaml')
    G, G_mapping, _, D, G_ema, G_ema_mapping, _, _ = build(cfgs)
    m = G.mapping
    out = dict(mapper=type(m).__name__, ema_mapper=type(G_ema.mapping).__name__,
               is_upstream_subclass=isinstance(m, stylegan2.MappingNetwork),
               returned_mappers=[G_mapping is m, G_ema_mapping is G_ema.mapping],
               dims=[m.z_dim, m.c_dim, m.w_dim, m.num_ws], trunk=[m.trunk.H, m.trunk.L, m.trunk.tokens,
                                                                   m.trunk.token_dim, m.trunk.block_type],
               mlp_layers_left=[k for k in m.state_dict() if k.startswith('fc')],
               d_has_rtm=any('trunk' in k for k in D.state_dict()), ema_equal=state_equal(G, G_ema))

    n, k = 4, cfgs.DATA.num_classes
    z, labels = torch.randn(n, m.z_dim), torch.arange(n) % k
    onehot = torch.nn.functional.one_hot(labels, k)
    with torch.no_grad():
        w_avg0 = m.w_avg.clone()
        m(z, onehot, update_emas=False)
        out['w_avg_kept_without_update_emas'] = same(m.w_avg, w_avg0)
        for _ in range(3):
            m(torch.randn(n, m.z_dim), onehot, update_emas=True)
        out['w_avg_moved_with_update_emas'] = not same(m.w_avg, w_avg0)

        ws, img = generate(m, G.synthesis, z, labels, k)
        out['image_shape'] = list(img.shape)
        out['finite'] = bool(torch.isfinite(img).all())
        out['ws_broadcast'] = same(ws, ws[:, :1].expand_as(ws))
        out['labels_matter'] = not same(m(z, torch.roll(onehot, 1, 0)), ws)
        ws_t, img_t = generate(m, G.synthesis, z, labels, k, psi=0.5)
        out['truncation_is_lerp_to_w_avg'] = bool(torch.allclose(ws_t, m.w_avg.lerp(ws, 0.5), atol=1e-6))
        out['truncation_changes_images'] = not same(img_t, img)
        ws_c, _ = generate(m, G.synthesis, z, labels, k, psi=0.5, cutoff=4)
        out['cutoff_truncates_first_4'] = same(ws_c[:, :4], ws_t[:, :4]) and same(ws_c[:, 4:], ws[:, 4:])
        ws_m, img_m = generate(m, G.synthesis, z, labels, k, mixing=1.0)
        mixed = [i for i in range(m.num_ws) if not same(ws_m[:, i], ws[:, i])]
        out['mixing_layers'] = mixed
        out['mixing_changes_images'] = not same(img_m, img)
        out['ema_generates'] = list(generate(G_ema.mapping, G_ema.synthesis, z, labels, k)[1].shape)

    # Every mapper parameter gets a gradient from the images: StudioGAN's DDP has no find_unused_parameters.
    _, img = generate(m, G.synthesis, z, labels, k)
    img.square().mean().backward()
    out['params_without_grad'] = [name for name, p in m.named_parameters()
                                  if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    attention = RTMMappingNetwork(z_dim=32, c_dim=3, w_dim=32, num_ws=4, H=3, tokens=4, token_dim=16,
                                  block='attention', heads=2)
    attention(torch.randn(2, 32), torch.eye(3)[:2]).square().mean().backward()
    out['attention_params_without_grad'] = [name for name, p in attention.named_parameters() if p.grad is None]

    uncond = build(load_cfgs('CIFAR10/StyleGAN2-Uncond-RTM.yaml'))[0].mapping
    with torch.no_grad():
        out['uncond'] = dict(c_dim=uncond.c_dim, has_embed=hasattr(uncond, 'embed'),
                             labels_ignored=same(uncond(z, onehot), uncond(z, torch.roll(onehot, 1, 0))))
    afhq = build(load_cfgs('AFHQ/StyleGAN2-ADA-Uncond-RTM.yaml'))[0]
    out['afhq'] = dict(mapper=type(afhq.mapping).__name__, num_ws=afhq.mapping.num_ws,
                       resolution=afhq.synthesis.img_resolution)
    return out

def _ddp_rank(rank, store, cfg_name, results):
    import torch.distributed as dist  # pylint: disable=import-outside-toplevel
    from utils import misc  # pylint: disable=import-outside-toplevel
    dist.init_process_group('gloo', init_method=f'file://{store}', rank=rank, world_size=2)
    misc.fix_seed(1234 + rank)                                  # as StudioGAN's loader: seed + global_rank
    G = build(load_cfgs(cfg_name))[0]
    ddp = torch.nn.parallel.DistributedDataParallel(G.mapping, broadcast_buffers=False)   # as StudioGAN, on CPU
    opt = torch.optim.Adam(G.mapping.parameters(), lr=1e-3)
    torch.manual_seed(7)                                        # same batch on both ranks: outputs comparable
    z, onehot = torch.randn(4, G.mapping.z_dim), torch.eye(10)[:4]
    for _ in range(3):                                          # an unused parameter fails the second step
        opt.zero_grad()
        ddp(z, onehot, update_emas=True).square().mean().backward()
        opt.step()
    with torch.no_grad():
        results[rank] = [t.double().sum().item() for t in G.mapping.state_dict().values()] + \
                        [G.mapping(z, onehot).double().sum().item()]
    dist.destroy_process_group()

def cmd_ddp():
    import multiprocessing  # pylint: disable=import-outside-toplevel
    ctx = multiprocessing.get_context('fork')
    results = ctx.Manager().dict()
    store = os.path.join(WORK, 'ddp-store')
    if os.path.exists(store):
        os.remove(store)
    procs = [ctx.Process(target=_ddp_rank, args=(r, store, 'CIFAR10/StyleGAN2-RTM.yaml', results)) for r in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    return dict(exit_codes=[p.exitcode for p in procs], ranks_agree=len(results) == 2 and results[0] == results[1])

def _save(ckpt_dir, G, D, G_ema, cfgs, step):
    """What worker.save writes, through misc.save_model (D's state holds numpy scalars, as in training)."""
    from utils import misc  # pylint: disable=import-outside-toplevel
    cfgs.define_optimizer(G, D)
    d_states = dict(state_dict=D.state_dict(), optimizer=cfgs.OPTIMIZATION.d_optimizer.state_dict(), seed=0,
                    run_name='rtm-test', step=step, epoch=1, topk='initialize', aa_p=np.float64(0.125),
                    best_step=step, best_fid=np.float64(12.5), best_fid_ckpt=ckpt_dir, lecam_emas={})
    for when in ('best', 'current'):
        misc.save_model('G', when, step, ckpt_dir, dict(state_dict=G.state_dict(),
                                                        optimizer=cfgs.OPTIMIZATION.g_optimizer.state_dict()))
        misc.save_model('D', when, step, ckpt_dir, d_states)
        misc.save_model('G_ema', when, step, ckpt_dir, dict(state_dict=G_ema.state_dict()))

def _load(ckpt_dir, cfg_name, **stylegan):
    """A fresh build from `cfg_name`, loaded as `main.py -ckpt DIR -best` (evaluation) does."""
    from utils import ckpt  # pylint: disable=import-outside-toplevel
    cfgs = load_cfgs(cfg_name, **stylegan)
    G, _, _, D, G_ema, _, _, ema = build(cfgs)
    cfgs.define_optimizer(G, D)
    cfgs.RUN.freezeD, cfgs.RUN.seed, cfgs.RUN.save_dir = -1, 0, os.path.join(WORK, 'eval-run')
    ckpt.load_StudioGAN_ckpts(ckpt_dir=ckpt_dir, load_best=True, Gen=G, Dis=D, g_optimizer=None, d_optimizer=None,
                              run_name='eval', apply_g_ema=True, Gen_ema=G_ema, ema=ema, is_train=False,
                              RUN=cfgs.RUN, logger=LOGGER, global_rank=0, device=0, cfg_file=cfg_name)
    return G, D, G_ema

def _mismatch(ckpt_dir, cfg_name):
    try:
        _load(ckpt_dir, cfg_name)
        return None
    except RuntimeError as err:
        return f'{type(err).__name__}: {err}'

def cmd_w_avg():
    """The RTM mapper with update_emas=True: a NaN row, an empty batch, fp16 and bf16 copies (rtm.update_w_avg)."""
    import copy  # pylint: disable=import-outside-toplevel
    from rtm_plugin.integrations.studiogan import RTMMappingNetwork  # pylint: disable=import-outside-toplevel
    torch.manual_seed(0)
    m = RTMMappingNetwork(z_dim=16, c_dim=4, w_dim=16, num_ws=3, tokens=2, token_dim=8, H=2)
    z, c = torch.randn(4, 16), torch.nn.functional.one_hot(torch.arange(4), 4).float()
    m(z, c, update_emas=True)
    w_avg0 = m.w_avg.clone()
    z_bad = z.clone()
    z_bad[1] = float('nan')
    m(z_bad, c, update_emas=True)
    out = dict(nan_row_kept_finite=bool(torch.isfinite(m.w_avg).all()), nan_row_moved=not same(m.w_avg, w_avg0))
    w_avg1 = m.w_avg.clone()
    m(z[:0], c[:0], update_emas=True)
    out['empty_batch_unchanged'] = same(m.w_avg, w_avg1)
    for dtype in (torch.float16, torch.bfloat16):
        half = copy.deepcopy(m).to(dtype)
        ws = half(z.to(dtype), c.to(dtype), update_emas=True)
        ws.square().mean().backward()
        truncated = half(z.to(dtype), c.to(dtype), truncation_psi=0.5, truncation_cutoff=2)
        out[str(dtype).split('.')[-1]] = dict(
            w_avg_dtype_kept=half.w_avg.dtype == dtype, w_avg_finite=bool(torch.isfinite(half.w_avg).all()),
            grads=all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in half.parameters()),
            truncated_finite=bool(torch.isfinite(truncated).all()))
    return out

def cmd_checkpoints():
    from utils import ckpt  # pylint: disable=import-outside-toplevel
    torch.manual_seed(1)
    cfgs = load_cfgs('CIFAR10/StyleGAN2-RTM.yaml')
    G, _, _, D, G_ema, _, _, _ = build(cfgs)
    with torch.no_grad():
        for _ in range(2):      # w_avg away from zero, and G_ema other than G
            G.mapping(torch.randn(4, G.mapping.z_dim), torch.eye(10)[:4], update_emas=True)
        for p in G_ema.parameters():
            p.mul_(0.5)
    rtm_dir = os.path.join(WORK, 'ckpt-rtm')
    os.makedirs(rtm_dir, exist_ok=True)
    _save(rtm_dir, G, D, G_ema, cfgs, step=40)

    out = dict(files=sorted(os.listdir(rtm_dir)))
    d_path = os.path.join(rtm_dir, 'model=D-best-weights-step=40.pth')
    try:
        torch.load(d_path)      # torch's default, weights_only=True, as unpatched StudioGAN calls it
        out['default_torch_load'] = 'loaded'
    except Exception as err:    # pylint: disable=broad-except
        out['default_torch_load'] = type(err).__name__
    torch.manual_seed(2)        # another init: the load must overwrite all of it
    G2, D2, G2_ema = _load(rtm_dir, 'CIFAR10/StyleGAN2-RTM.yaml')
    out['reloaded_equal'] = [state_equal(G, G2), state_equal(D, D2), state_equal(G_ema, G2_ema)]
    z, labels = torch.randn(3, G.mapping.z_dim), torch.tensor([0, 4, 9])
    with torch.no_grad():
        out['same_images'] = same(generate(G_ema.mapping, G_ema.synthesis, z, labels, 10, psi=0.7)[1],
                                  generate(G2_ema.mapping, G2_ema.synthesis, z, labels, 10, psi=0.7)[1])
    G3, _, _, D3, G3_ema, _, _, ema = build(cfgs)
    out['best_step'] = ckpt.load_best_model(rtm_dir, G3, D3, True, G3_ema, ema)
    out['best_model_equal'] = [state_equal(G, G3), state_equal(G_ema, G3_ema)]
    G4 = _load(rtm_dir, 'CIFAR10/StyleGAN2-RTM.yaml', rtm_h=32)[0]     # H at evaluation: the YAML's
    out['evaluated_with_H'] = [G4.mapping.trunk.H, state_equal(G, G4)]
    out['rtm_ckpt_baseline_yaml'] = _mismatch(rtm_dir, 'CIFAR10/StyleGAN2.yaml')

    mlp_dir = os.path.join(WORK, 'ckpt-mlp')
    os.makedirs(mlp_dir, exist_ok=True)
    mlp_cfgs = load_cfgs('CIFAR10/StyleGAN2.yaml')
    G, _, _, D, G_ema, _, _, _ = build(mlp_cfgs)
    _save(mlp_dir, G, D, G_ema, mlp_cfgs, step=20)
    out['mlp_ckpt_rtm_yaml'] = _mismatch(mlp_dir, 'CIFAR10/StyleGAN2-RTM.yaml')
    out['mlp_ckpt_baseline_yaml'] = _mismatch(mlp_dir, 'CIFAR10/StyleGAN2.yaml')
    return out

class Features(torch.nn.Module):
    """A stand-in TorchScript detector with upstream's call signature (no download needed)."""
    def forward(self, img, return_features: bool = False):
        return torch.nn.functional.adaptive_avg_pool2d(img.float() / 255, 4).flatten(1)

def cmd_analyse():
    """rtm-analyze, every tool, on the RTM and baseline checkpoint folders of cmd_checkpoints (the YAMLs they were
    trained with, RTM_STUDIOGAN_DIR this checkout), in this process; and the loaded generator against the
    checkpoint and against its own forward."""
    from rtm_plugin.analysis import cli  # pylint: disable=import-outside-toplevel
    from rtm_plugin.analysis.loader import load_network  # pylint: disable=import-outside-toplevel
    from rtm_plugin.analysis.view import GeneratorView  # pylint: disable=import-outside-toplevel
    from rtm_plugin.sampling import to_uint8  # pylint: disable=import-outside-toplevel
    if not os.path.isdir(os.path.join(WORK, 'ckpt-rtm')):
        cmd_checkpoints()
    os.environ['RTM_STUDIOGAN_DIR'] = os.path.dirname(os.getcwd())
    rtm, mlp = os.path.join(WORK, 'ckpt-rtm'), os.path.join(WORK, 'ckpt-mlp')
    rtm_yaml, mlp_yaml = 'configs/CIFAR10/StyleGAN2-RTM.yaml', 'configs/CIFAR10/StyleGAN2.yaml'
    real, detector = os.path.join(WORK, 'real.npy'), os.path.join(WORK, 'features.pt')
    np.save(real, np.random.RandomState(0).randint(0, 256, (8, 3, 32, 32), dtype=np.uint8))
    torch.jit.script(Features()).save(detector)
    out = dict(loaded={})

    for name, folder, yaml in (('rtm', rtm, rtm_yaml), ('mlp', mlp, mlp_yaml)):
        net = load_network(folder, studiogan_cfg=[rtm_yaml, mlp_yaml])      # each folder picks its own YAML
        view = GeneratorView(net.G)
        saved = torch.load(net.path, weights_only=True)['state_dict']
        z, c = view.latents(3, seed=1)
        with torch.no_grad():
            images, _ = view.images(z, c)
            own = to_uint8(net.G(z, c, noise_mode='const'))
        out['loaded'][name] = dict(
            path=os.path.basename(net.path), kind=view.kind, depth=view.depth,
            weights_equal=list(saved) == list(net.G.state_dict()) and all(
                torch.equal(saved[k], v) for k, v in net.G.state_dict().items()),
            images_equal_G=bool(torch.equal(images, own)))

    common = ['--studiogan-cfg', rtm_yaml, '--studiogan-cfg', mlp_yaml, '--outdir', os.path.join(WORK, 'analysis')]
    reals = ['--real', real, '--detector', detector]
    runs = dict(
        hsweep=['--network', rtm, '--steps', '1,2', '--num-samples', 6, '--num-real', 6, *reals],
        progression=['--rtm', rtm, '--mlp', mlp, '--num', 2, '--cols', 2],
        stability=['--network', rtm, '--steps', 3, '--num', 4],
        slerp=['--network', rtm, '--network', mlp, '--rows', 2, '--cols', 2],
        nn=['--baseline', mlp, '--rtm', rtm, '--queries', 2, '--pool', 6, '--k', 2, *reals],
        latency=['--rtm', rtm, '--mlp', mlp, '--batch', 2, '--warmup', 1, '--repeats', 1],
        halt=['--network', rtm, '--tol', 0, '--h-max', 3, '--num-samples', 6, '--num-real', 6, *reals],
        sample=['--network', rtm, '--num', 4, '--steps', 4, '--halt-tol', 1e9, '--h-min', 2],
    )
    out['tools'] = {}
    for tool, args in runs.items():
        try:
            cli.main([tool, *map(str, args), *common], standalone_mode=False)
            out['tools'][tool] = 'ok'
        except Exception as err:    # pylint: disable=broad-except
            out['tools'][tool] = f'{type(err).__name__}: {err}'
    out['files'] = sorted(os.listdir(os.path.join(WORK, 'analysis')))
    for args, case in (([rtm], 'no_cfg'), ([rtm, '--studiogan-cfg', mlp_yaml], 'wrong_cfg')):
        try:
            cli.main(['sample', '--network', *args, '--num', '1'], standalone_mode=False)
            out[case] = None
        except Exception as err:    # pylint: disable=broad-except
            out[case] = f'{type(err).__name__}: {err.format_message() if hasattr(err, "format_message") else err}'
    return out

def cmd_custom_op():
    """get_plugin on a tiny C++ op: upstream re-imports the built module by name, which fails with pybind11 3."""
    from utils import custom_ops  # pylint: disable=import-outside-toplevel
    custom_ops._get_mangled_gpu_name = lambda: 'cpu'  # pylint: disable=protected-access # names the build folder;
    return checkouts.probe_custom_ops(custom_ops, WORK, 'rtm_studiogan_probe_op')  # asks CUDA: none on CPU

def cmd_fid():
    from scipy import linalg  # pylint: disable=import-outside-toplevel
    from metrics import fid  # pylint: disable=import-outside-toplevel
    rng = np.random.RandomState(0)
    a, b = rng.randn(200, 8), rng.randn(200, 8) * 1.5 + 0.3
    stats = [a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)]
    with warnings.catch_warnings():
        warnings.simplefilter('error')      # SciPy's deprecation of sqrtm(disp=False) included
        value = float(fid.frechet_inception_distance(*stats))
    root = linalg.sqrtm(stats[1] @ stats[3]).real
    expected = float(((stats[0] - stats[2]) ** 2).sum() + np.trace(stats[1] + stats[3] - 2 * root))
    return dict(value=value, expected=expected)

def cmd_imports():
    try:
        import config  # pylint: disable=import-outside-toplevel,unused-import
        return dict(error=None)
    except Exception as err:    # pylint: disable=broad-except
        return dict(error=f'{type(err).__name__}: {err}')

COMMANDS = dict(configs=cmd_configs, build=cmd_build, ddp=cmd_ddp, checkpoints=cmd_checkpoints,
                analyse=cmd_analyse, custom_op=cmd_custom_op, fid=cmd_fid, imports=cmd_imports, w_avg=cmd_w_avg)

if __name__ == '__main__':
    WORK, *NAMES = sys.argv[1:]
    print(json.dumps({name: COMMANDS[name]() for name in NAMES}))

"""rtm-imle: train an RS-IMLE generator (RTM or MLP mapper + decoder).

With no --data it runs the embedded default: Stacked Digits (1000 modes) at 16 px on CPU, then prints
modes covered, KL, FID, precision, recall, density and coverage in the digit classifier's feature space.
With --data it trains on a folder or a dataset_tool.py zip with the official few-shot settings, or with a
--preset (cifar10, celebahq, fewshot: the paper's setups; fewshot-official), each a YAML file in
rtm_plugin/imle/presets/ naming the source of every value. --dry-run prints the resolved settings and exits.

main() is four steps: resolve (check every option and read the data; nothing is written), build (the Trainer),
train (the run folder is made only now) and evaluate (the final metrics and the summary line).
"""

import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, fields, replace

import click
import numpy as np
import torch

from rtm_plugin import __version__
from rtm_plugin.imle.checkpoint import find_resume
from rtm_plugin.imle.config import DEFAULT_NUM_IMAGES, IMLEConfig, as_dict, config_from_dict
from rtm_plugin.imle.distributed import init_from_env, select_device
from rtm_plugin.imle.presets import PRESETS, resolve as resolve_settings
from rtm_plugin.imle.protocols import EVAL_PROTOCOLS, protocol_metrics
from rtm_plugin.imle.runlog import Tee
from rtm_plugin.imle.train import MetricFailed, RunOptions, Trainer, loss_kind

CONFIG_OPTIONS = {f.name for f in fields(IMLEConfig)}
RECOVERABLE = (ValueError, FileNotFoundError, ImportError)

def next_run_dir(outdir, desc):
    """StyleGAN's numbering: <outdir>/<00000>-<desc> (nothing is created)."""
    names = os.listdir(outdir) if os.path.isdir(outdir) else []
    ids = [int(m.group(1)) for d in names if (m := re.match(r'(\d+)-', d))]
    return os.path.join(outdir, f'{max(ids, default=-1) + 1:05d}-{desc}')

def load_training_images(data, resolution, num_images, seed, skip_bad, log, need_reals=True):
    """(uint8 images, eval reals or None, training_set_kwargs). The default run's held-out reals are made only
    when need_reals (some evaluation will use them)."""
    if data is None:
        from rtm_plugin.datasets.stacked_digits import make_stacked_digits
        images, _ = make_stacked_digits(num_images, resolution, seed=seed)
        reals = make_stacked_digits(10000, resolution, seed=seed + 1)[0] if need_reals else None
        return images, reals, dict(name='stacked_digits', num_images=num_images, resolution=resolution, seed=seed)
    from rtm_plugin.imle.datacache import load_images_shared
    found = load_images_shared(data, resolution, skip_bad=skip_bad, max_images=num_images, log=log)
    if found.skipped:
        log(f'skipped {len(found.skipped)} unreadable image(s), e.g. {found.skipped[0][1]}')
    log(f'{data}: {len(found.images)} images, {found.images.shape[-1]} px')
    # max_size and decode_resolution: what was asked (None: all images, the data's resolution), so that --resume
    # asks the same and maps the same decoded copy (datacache keys on the request)
    return found.images, None, dict(path=os.path.abspath(data), resolution=int(found.images.shape[-1]),
                                    num_images=len(found.images), skip_bad=bool(skip_bad), max_size=num_images,
                                    decode_resolution=resolution)

def summary_line(m):
    parts = []
    if 'modes' in m:
        parts.append(f'modes {m["modes"]}/1000')
    if 'kl' in m:
        parts.append(f'KL {m["kl"]:.4f}')
    for k, name in (('fid', 'FID'), ('is', 'IS'), ('precision', 'precision'), ('recall', 'recall'),
                    ('density', 'density'), ('coverage', 'coverage')):
        if k in m:
            parts.append(f'{name} {m[k]:.4f}' if k != 'fid' else f'{name} {m[k]:.2f}')
    return ', '.join(parts)

def evaluate_generator(G, reals_u8, num_samples, detector, seed, device, batch=256):
    """Metrics of G's samples against reals, through rtm_plugin.metrics.evaluate (FID, P/R, D/C, modes)."""
    from rtm_plugin.metrics.evaluate import evaluate_images
    from rtm_plugin.sampling import EVAL, generate, seeded, to_uint8
    z = torch.randn([num_samples, G.z_dim], generator=seeded(seed, EVAL))
    fakes = to_uint8(generate(G, z, batch))
    return evaluate_images(torch.as_tensor(reals_u8), fakes, detector=detector, device=device, batch_size=batch)

# ---------------------------------------------------------------------- checks of single options
def check_device(name):
    """The device this process trains on (CUDA when available for 'auto'; cuda:$LOCAL_RANK under torchrun), with
    the process group started, before the ranks share the data."""
    try:
        device = str(select_device(name))
        init_from_env(device)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    return device

def check_outdir(outdir):
    """The folder the run folder goes into must be a writable folder, or creatable in one."""
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise click.UsageError(f'--outdir {outdir}: is a file, not a folder; pass a folder')
    existing = os.path.abspath(outdir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise click.UsageError(f'--outdir {outdir}: {existing} is not writable; pass a folder you can write to')

def check_knn_backend(backend):
    if backend == 'faiss':
        try:
            import faiss  # noqa: F401
        except ImportError:
            raise click.UsageError('--knn-backend faiss: faiss is not installed; pip install faiss-cpu (the '
                                   "[faiss] extra), or use --knn-backend torch") from None

def parse_metrics(text):
    from rtm_plugin.imle.snapshot_metrics import EXAMPLES, is_valid_metric
    names = [m.strip() for m in (text or '').split(',') if m.strip()]
    unknown = [m for m in names if not is_valid_metric(m)]
    if unknown:
        raise click.UsageError(f'--metrics: unknown {", ".join(unknown)}; use names such as {EXAMPLES}')
    return tuple(names)

# ---------------------------------------------------------------------- step 1: resolve
@dataclass
class Setup:
    """Everything a run needs, resolved and checked; building it writes nothing."""
    cfg: IMLEConfig
    opts: RunOptions
    images: np.ndarray
    reals: np.ndarray
    snapshot: object                # checkpoint.Snapshot to continue from, or None
    run_dir: str
    new_run: bool
    threads: int
    eval_samples: int
    detector: str
    eval_protocol: str = None       # a paper table's final metrics (protocols.py)
    protocol_metrics: list = None

def resolve_setup(args, log):
    """Settings for a new run (preset, then flags), or (--resume) the ones the snapshot was trained with plus
    what was given. None for --dry-run, which prints the settings instead."""
    flags = {k: args[k] for k in CONFIG_OPTIONS if args.get(k) is not None}
    settings = resolve_settings(args['preset'], flags, args['data'], args['eval_protocol'])
    if args['dry_run']:
        print_dry_run(settings, args['data'], settings.given)
        return None
    if args['resume']:
        return _resolve_resume(args, flags, log)
    if args['preset'] and not args['data']:
        raise click.UsageError(f'--preset {args["preset"]} is a setup for real data: pass --data (a folder or a '
                               'zip; rtm-imle-prepare makes one)')
    return _resolve_new(args, settings, log)

def _resolve_new(args, settings, log):
    device = check_device(args['device'] or 'auto')
    check_outdir(args['outdir'])
    data, num_images = args['data'], args['num_images']
    if data is None and num_images is None:
        num_images = DEFAULT_NUM_IMAGES
    cfg, given = settings.config, settings.given
    check_knn_backend(cfg.knn_backend)
    metrics = parse_metrics(args['metrics'])
    detector = args['detector'] or ('digits' if data is None else None)
    # an eval protocol's metrics go through metric_main (evaluate()); the built-in evaluation runs only if asked
    eval_samples = 10000 if args['eval_samples'] is None else args['eval_samples']
    images, reals, tsk = load_training_images(data, cfg.resolution if ('resolution' in given or not data) else None,
                                              num_images, cfg.seed, args['skip_bad'], log,
                                              need_reals=bool(metrics or (eval_samples and detector)))
    if data and 'resolution' not in given:
        cfg = replace(cfg, resolution=int(images.shape[-1]))
    threads = args['threads']
    if threads is None and data is None and torch.device(device).type == 'cpu':
        threads = 1     # 16-px convolutions barely split; one thread also never stalls when other work shares the CPU
    desc = f'{"digits" if data is None else os.path.splitext(os.path.basename(os.path.normpath(data)))[0]}-{cfg.map}'
    opts = RunOptions(outdir=next_run_dir(args['outdir'], desc), snap_kimg=args['snap_kimg'] or
                      (25.0 if data is None else 50.0), grid_kimg=args['grid_kimg'] or 10.0, device=device,
                      amp=args['amp'] or 'off', pool_batch=args['pool_batch'] or 256,
                      perceptual=args['perceptual'] or 'auto', lpips_vgg=args['lpips_vgg'],
                      lpips_lin=args['lpips_lin'], progress=not args['no_progress'], training_set_kwargs=tsk,
                      metrics=metrics, metric_reals=reals)
    return Setup(cfg, opts, images, reals, None, opts.outdir, True, threads, eval_samples, detector,
                 settings.eval_protocol, settings.metrics)

def _resolve_resume(args, given, log):
    try:
        snapshot = find_resume(args['resume'], log=log)
    except RECOVERABLE as e:
        raise click.UsageError(str(e)) from None
    state, saved = snapshot.state, snapshot.options
    exact = not args['inexact_resume']
    tsk = dict(snapshot.data.get('training_set_kwargs') or {})
    legacy_default_run = not saved and 'path' not in tsk      # snapshots of earlier versions record no options
    # the device type it trained on ('cuda', not cuda:0: under torchrun each rank takes its own)
    device = check_device(args['device'] or (torch.device(saved['device']).type if saved.get('device') else 'cpu'))
    threads = saved.get('threads') or (1 if legacy_default_run and device == 'cpu' else None)
    if args['threads'] and threads and args['threads'] != threads and exact:
        raise click.UsageError(f'--threads {args["threads"]}: this run was trained with {threads} thread(s), '
                               'which changes float sums; drop --threads, or pass --inexact-resume')
    threads = args['threads'] or threads

    # The loss: the snapshot's, or an error naming what is missing.
    perceptual = args['perceptual']
    trained = loss_kind(state.get('loss'))
    if perceptual is None:
        perceptual = {'lpips-vgg': 'lpips', 'multiscale-gradient-l1': 'fallback'}.get(trained, 'auto')
        if not exact and perceptual == 'lpips':
            perceptual = 'auto'
    lpips_vgg = args['lpips_vgg'] or _existing(saved.get('lpips_vgg'))
    lpips_lin = args['lpips_lin'] or _existing(saved.get('lpips_lin'))
    if perceptual == 'lpips':
        from rtm_plugin.imle.perceptual import find_lpips_weights
        vgg, lin = find_lpips_weights(lpips_vgg, lpips_lin)
        if not (vgg and lin):
            raise click.UsageError(f'--resume: this run was trained with the LPIPS-VGG loss, but its weights are not '
                                   f'found here ({"vgg16-397923af.pth" if not vgg else "lpips vgg.pth"}); pass '
                                   '--lpips-vgg/--lpips-lin, or --inexact-resume to go on with the fallback loss')

    # The data: where it was, or where --data says it is now (the fingerprint is checked by the Trainer).
    data = args['data'] or tsk.get('path')
    if tsk.get('path') and not os.path.exists(data):
        raise click.UsageError(f'--resume: the dataset of this run, {data}, is not there any more; pass --data with '
                               'its new location')
    cfg = replace(config_from_dict(state['config']), **given)
    check_knn_backend(cfg.knn_backend)
    num_images = tsk.get('num_images', state.get('num_images'))
    skip_bad = args['skip_bad'] or tsk.get('skip_bad', False)
    metrics = parse_metrics(args['metrics']) if args['metrics'] is not None else tuple(saved.get('metrics', ()))
    detector = args['detector'] or saved.get('detector') or ('digits' if data is None else None)
    eval_samples = args['eval_samples'] if args['eval_samples'] is not None else saved.get('eval_samples', 10000)
    eval_protocol = args['eval_protocol'] or saved.get('eval_protocol')
    if 'max_size' in tsk:               # the request of the run's start (runs of earlier versions: the counts)
        num_images = tsk['max_size']
    resolution = tsk['decode_resolution'] if 'decode_resolution' in tsk else cfg.resolution
    images, reals, tsk = load_training_images(data, resolution, num_images, cfg.seed, skip_bad, log,
                                              need_reals=bool(metrics or (eval_samples and detector)))
    run_dir = os.path.dirname(os.path.abspath(snapshot.path))
    opts = RunOptions(outdir=run_dir, snap_kimg=args['snap_kimg'] or saved.get('snap_kimg') or
                      (25.0 if data is None else 50.0), grid_kimg=args['grid_kimg'] or saved.get('grid_kimg', 10.0),
                      tick_kimg=saved.get('tick_kimg', RunOptions.tick_kimg), device=device,
                      amp=args['amp'] or saved.get('amp', 'off'), pool_batch=args['pool_batch'] or
                      saved.get('pool_batch', 256), perceptual=perceptual,
                      lpips_vgg=lpips_vgg, lpips_lin=lpips_lin, progress=not args['no_progress'],
                      training_set_kwargs=tsk, run_id=state.get('run_id'), metrics=metrics, metric_reals=reals,
                      snapshot_unit=saved.get('snapshot_unit', 'step'), allow_changes=not exact)
    return Setup(cfg, opts, images, reals, snapshot, run_dir, False, threads, eval_samples, detector,
                 eval_protocol, protocol_metrics(eval_protocol) if eval_protocol else None)

def _existing(path):
    return path if path and os.path.isfile(path) else None

# ---------------------------------------------------------------------- step 2: build
def build(setup, log):
    if setup.threads:
        torch.set_num_threads(setup.threads)
    setup.opts.extra = dict(eval_samples=setup.eval_samples, detector=setup.detector,
                            eval_protocol=setup.eval_protocol, command=sys.argv)
    try:
        return Trainer(setup.cfg, setup.images, setup.opts, resume=setup.snapshot, log=log)
    except RECOVERABLE as e:
        raise click.UsageError(str(e)) from None

# ---------------------------------------------------------------------- step 3: train
def train(setup, trainer, log):
    """(status, snapshot path, seconds). Leaves the process with code 130 on Ctrl-C/SIGTERM and 1 on divergence
    or a failed write, each with one line saying what to do."""
    cfg, run_dir = setup.cfg, setup.run_dir
    log(f'run folder: {run_dir}' + (f' (resuming {os.path.basename(setup.snapshot.path)}, step {trainer.step})'
                                     if setup.snapshot else ''))
    log(f'{cfg.map} mapper + {cfg.decoder} decoder, {sum(p.numel() for p in trainer.G.parameters()):,} parameters; '
        f'{trainer.num} images at {cfg.resolution} px; pool {trainer.pool}; loss: {trainer.loss_name}; '
        f'{trainer.world} process(es) on {trainer.device}, amp {trainer.amp}, {torch.get_num_threads()} thread(s)')
    t0 = time.time()
    try:
        status, path = trainer.run()
    except MetricFailed as e:
        raise click.ClickException(f'--metrics {e}; the snapshot {trainer.last_snapshot} is saved; fix this, then '
                                   f'continue with --resume {run_dir}')
    except OSError as e:
        last = trainer.last_snapshot or 'none'
        raise click.ClickException(f'cannot write {e.filename or "to the run folder"}: {e.strerror or e}; the last '
                                   f'good snapshot is {last}; free space, then continue with --resume {run_dir}')
    seconds = time.time() - t0
    if status == 'interrupted':
        log(f'interrupted at step {trainer.step}: saved {path}; continue with --resume {run_dir}')
        sys.exit(130)
    if status == 'diverged':
        where = f'the last good snapshot is {path}' if path else 'no snapshot was saved'
        raise click.ClickException(f'{trainer.divergence}; stopped ({where}); lower --lr (now {cfg.lr:g}) and '
                                   'start again')
    return path, seconds

# ---------------------------------------------------------------------- step 4: evaluate
def evaluate(setup, trainer, path, seconds, rank):
    cfg = setup.cfg
    record = dict(kind='eval', step=trainer.step, kimg=trainer.kimg, train_seconds=seconds,
                  snapshot=os.path.basename(path) if path else None, eval_protocol=setup.eval_protocol,
                  protocol_metrics=setup.protocol_metrics)
    if rank != 0:
        return
    # the protocol's metrics (fid5k_full, pr1k3_full, ...) through metric_main on G_ema, as --metrics at a snapshot;
    # those --metrics already evaluated on the final snapshot are not computed twice
    protocol = [m for m in setup.protocol_metrics or () if m not in setup.opts.metrics] if setup.eval_samples else []
    if protocol and path:
        try:
            results = trainer.evaluate_metrics(path, protocol)
        except MetricFailed as e:
            raise click.ClickException(f'--eval-protocol {setup.eval_protocol}: {e}; the run is saved in {path}; '
                                       'evaluate it with rtm-eval once fixed') from None
        record.update({k: float(v) for k, v in results.items()})
        record.update({k: float(v) for k, v in trainer.metric_results.items() if k.startswith(
            tuple(m for m in setup.protocol_metrics if m in setup.opts.metrics))})
    if setup.eval_samples and setup.detector:
        reals_u8 = setup.reals if setup.reals is not None else setup.images
        t1 = time.time()
        metrics = evaluate_generator(trainer.G_ema, reals_u8, setup.eval_samples, setup.detector, cfg.seed,
                                     setup.opts.device)
        record.update({k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in metrics.items()},
                      detector=setup.detector, eval_samples=setup.eval_samples, eval_seconds=time.time() - t1)
        trainer.write_metrics(record)
        click.echo(f'{cfg.map}: {summary_line(record)} ({seconds:.0f} s training, '
                   f'{record["eval_seconds"]:.0f} s evaluation; {setup.run_dir})')
    elif protocol:
        trainer.write_metrics(record)
        click.echo(f'{cfg.map}: ' + ', '.join(f'{k} {record[k]:.4f}' for k in results) +
                   f' ({seconds:.0f} s training; {setup.run_dir})')
    else:
        trainer.write_metrics(record)
        click.echo(f'{cfg.map}: trained {trainer.step} steps in {seconds:.0f} s; no metrics '
                   f'({"--eval-samples 0" if not setup.eval_samples else "no --detector"}); {setup.run_dir}')

@click.command(context_settings=dict(help_option_names=['-h', '--help'], show_default=True))
@click.version_option(__version__)
@click.option('--data', type=click.Path(exists=True), help='Image folder or dataset_tool.py zip [default: embedded Stacked Digits]')
@click.option('--preset', type=click.Choice(PRESETS), help='Settings of a paper setup (cifar10, celebahq, fewshot) or of the official code (fewshot-official); flags override them')
@click.option('--dry-run', is_flag=True, help='Print the resolved settings and parameter counts as JSON, then exit')
@click.option('--eval-protocol', type=click.Choice(sorted(EVAL_PROTOCOLS)), help="A paper table's final metrics [the preset's]")
@click.option('--outdir', default='imle-runs', help='Where run folders are created')
@click.option('--resume', type=click.Path(exists=True), help='Run folder (its newest good snapshot) or snapshot .pkl '
              'to continue in place, with the settings it was trained with')
@click.option('--map', 'map_', type=click.Choice(['rtm', 'mlp']), help='Mapper [default: rtm]')
@click.option('--rtm-h', type=click.IntRange(min=1), help='RTM outer steps H [8]')
@click.option('--rtm-l', type=click.IntRange(min=1), help='RTM inner cycles L [2]')
@click.option('--rtm-tokens', type=click.IntRange(min=1), help='RTM tokens [4]')
@click.option('--rtm-dim', type=click.IntRange(min=1), help='RTM token width [z_dim / tokens]')
@click.option('--rtm-block', type=click.Choice(['mlp', 'attention']), help='RTM block [mlp]')
@click.option('--mlp-layers', type=click.IntRange(min=1), help='MLP mapper depth [8]')
@click.option('--decoder', type=click.Choice(['fewshot', 'convnext', 'stylegan2']), help='Decoder: fewshot, convnext (App. C) or stylegan2 [fewshot]')
@click.option('--dec-blocks', help='Decoder block string, e.g. 1x4,4m1,4x4,8m4 [fewshot: official, cut at resolution; convnext: App. C]')
@click.option('--width', type=click.IntRange(min=4), help='Decoder width [384; 32 in the default run]')
@click.option('--bottleneck', type=click.FloatRange(min=0, min_open=True), help='Few-shot block bottleneck ratio [0.25]')
@click.option('--noise/--no-noise', default=None, help='Spatial noise injection at <= 256 px (App. C) [off; on in the paper presets]')
@click.option('--z-dim', type=click.IntRange(min=1), help='Latent size [1024; 128 in the default run]')
@click.option('--w-dim', type=click.IntRange(min=1), help='Style size [1024; 128 in the default run]')
@click.option('--resolution', type=click.IntRange(min=8), help='Image resolution [data; 16 in the default run]')
@click.option('--num-images', type=click.IntRange(min=1), help='Images to use [all; 1000 Stacked Digits]')
@click.option('--skip-bad', is_flag=True, help='Skip unreadable images (counted) instead of stopping')
@click.option('--batch', type=click.IntRange(min=1), help='Global batch size [4; 64 in the default run]')
@click.option('--kimg', type=click.FloatRange(min=0, min_open=True), help='Training length in thousands of images')
@click.option('--lr', type=click.FloatRange(min=0, min_open=True), help='Learning rate [2e-4]')
@click.option('--optimizer', type=click.Choice(['adam', 'adamw']), help='adamw (official) or adam (the paper, App. F) [adamw]')
@click.option('--beta1', type=click.FloatRange(0, 1, max_open=True), help='Adam beta1 [0.9; 0.5 in the paper presets]')
@click.option('--beta2', type=click.FloatRange(0, 1, max_open=True), help='Adam beta2 [0.9; 0.999 in the paper presets]')
@click.option('--weight-decay', type=click.FloatRange(min=0), help='Weight decay [0.01; 0 in the paper presets]')
@click.option('--warmup-iters', type=click.IntRange(min=0), help='Linear LR warm-up steps [10]')
@click.option('--lr-decay-epochs', type=click.IntRange(min=1), help='StepLR step size in epochs [4000]')
@click.option('--lr-decay-gamma', type=click.FloatRange(min=0, min_open=True), help='StepLR factor [0.25]')
@click.option('--shuffle/--no-shuffle', default=None, help='Reshuffle the data every epoch [off, as the official code]')
@click.option('--ema', type=click.FloatRange(0, 1), help='EMA decay [0.9999]')
@click.option('--ema-rampup/--no-ema-rampup', default=None, help='EMA ramp-up beta_t = min(ema, (1+t)/(10+t)) [off; on in the default run]')
@click.option('--force-factor', type=click.FloatRange(min=0, min_open=True), help='Pool = force_factor x N [20]')
@click.option('--force-resample', type=click.IntRange(min=1), help='Re-match every this many epochs [30]')
@click.option('--pool-multiple', type=click.IntRange(min=1), help='Pool size is rounded up to a multiple of this [1024]')
@click.option('--eps', type=click.FloatRange(min=0), help='Rejection radius on the unit sphere, 0 = IMLE [0.12]')
@click.option('--proj-dim', type=click.IntRange(min=1), help='Random projection size for matching [800]')
@click.option('--perturb', type=click.FloatRange(min=0), help='Noise added to a matched latent [0.001]')
@click.option('--lpips-coef', type=click.FloatRange(min=0), help='LPIPS weight in the loss [1.0]')
@click.option('--l2-coef', type=click.FloatRange(min=0), help='MSE weight in the loss [0.1]')
@click.option('--knn-backend', type=click.Choice(['torch', 'faiss']), help='Nearest-neighbour backend [torch]')
@click.option('--knn-max-elements', type=click.IntRange(min=1), help='Distance-matrix chunk, in floats [2^24]')
@click.option('--seed', type=int, help='Random seed [0]')
@click.option('--perceptual', type=click.Choice(['auto', 'lpips', 'fallback']),
              help='LPIPS-VGG when its weights are found (auto), required (lpips), or the fallback loss [auto]')
@click.option('--lpips-vgg', type=click.Path(exists=True, dir_okay=False), help='torchvision vgg16-397923af.pth')
@click.option('--lpips-lin', type=click.Path(exists=True, dir_okay=False), help='lpips weights/v0.1/vgg.pth')
@click.option('--snap-kimg', type=click.FloatRange(min=0, min_open=True), help='Snapshot interval [50; 25 default run]')
@click.option('--grid-kimg', type=click.FloatRange(min=0, min_open=True), help='Sample-grid interval [10]')
@click.option('--eval-samples', type=click.IntRange(min=0), help="Samples for the built-in final metrics (0 = skip them and the protocol's) [10000]")
@click.option('--detector', help="Metrics feature space: 'digits', 'inception', 'vgg16' or a .pt path [digits for the default run; else none (an eval protocol's metrics choose their own)]")
@click.option('--metrics', help='Comma list evaluated at each snapshot and at the end, into metric-<name>.jsonl '
              '(e.g. fid50k_full,pr50k3_full) [none]')
@click.option('--device', help='auto (CUDA when available, else CPU), cpu, cuda or cuda:K; '
              'under torchrun each process takes cuda:$LOCAL_RANK [auto]')
@click.option('--amp', type=click.Choice(['off', 'bf16', 'fp16']),
              help='Mixed precision for the decoder and the loss (the mapper stays fp32) [off]')
@click.option('--pool-batch', type=click.IntRange(min=1),
              help='Images per batch when rendering the pool and projecting features (no_grad, on the device) [256]')
@click.option('--threads', type=click.IntRange(min=1), help='torch CPU threads [1 in the default run, else torch default]')
@click.option('--no-progress', is_flag=True, help='No tqdm progress bar')
@click.option('--inexact-resume', is_flag=True, help='Resume even where a setting that affects the numbers changed '
              '(other loss, threads, device, amp, config); the run is then not bit-exact')
def main(**args):
    """Train an RS-IMLE generator whose mapper is RTM (or the MLP baseline).

    \b
    rtm-imle                                  # the embedded default run (Stacked Digits, CPU, < 10 min)
    rtm-imle --map mlp                        # the same with the 8-layer MLP mapper (baseline)
    rtm-imle --data faces.zip --resolution 256  # official few-shot settings on your data
    rtm-imle --preset cifar10 --data cifar10.zip  # the paper's CIFAR-10 setup (Table 1)
    rtm-imle --preset celebahq --dry-run        # print the resolved settings and parameter counts
    rtm-imle --resume imle-runs/00000-digits-rtm   # continue exactly where it stopped
    torchrun --nproc_per_node=2 -m rtm_plugin.imle --data faces.zip   # DDP
    """
    args['map'] = args.pop('map_')
    rank = int(os.environ.get('RANK', '0'))
    log = (lambda m: click.echo(m, err=True)) if rank == 0 else (lambda m: None)
    try:
        setup = resolve_setup(args, log)
    except RECOVERABLE as e:
        raise click.UsageError(str(e)) from None
    if setup is None:                               # --dry-run
        return
    trainer = build(setup, log)
    if setup.new_run:
        if rank == 0:
            os.makedirs(setup.run_dir)
        if int(os.environ.get('WORLD_SIZE', '1')) > 1:
            setup.run_dir = setup.opts.outdir = _broadcast_str(setup.run_dir, setup.opts.device)
    if rank != 0:
        path, seconds = train(setup, trainer, log)
        return
    with Tee(os.path.join(setup.run_dir, 'log.txt')):
        path, seconds = train(setup, trainer, log)
        evaluate(setup, trainer, path, seconds, rank)

def parameter_counts(cfg):
    """Parameters of mapper and decoder, counted on the meta device (no memory, no init time)."""
    from rtm_plugin.imle.generator import build_generator
    with torch.device('meta'):
        G = build_generator(cfg)
    count = lambda m: sum(p.numel() for p in m.parameters())
    return dict(mapping=count(G.mapping), synthesis=count(G.synthesis), total=count(G))

def print_dry_run(settings, data, given):
    """--dry-run: the resolved settings as JSON on stdout; nothing is written."""
    from rtm_plugin.imle.ema import ema_warning, initial_share
    cfg = settings.config
    if data and 'resolution' not in given:      # as a real run: the data sets the resolution
        from rtm_plugin.image_reader import load_images
        cfg = replace(cfg, resolution=int(load_images(data, max_images=1).images.shape[-1]))
        settings.sources['resolution'] = 'the data'
    try:
        params = parameter_counts(cfg)
    except ValueError as e:
        raise click.UsageError(str(e))
    total_steps = math.ceil(cfg.kimg * 1000 / cfg.batch)           # as Trainer counts them
    out = dict(settings.as_json(), config=as_dict(cfg))
    out.update(parameters=params, total_steps=total_steps, ema_initial_share=initial_share(cfg, total_steps))
    click.echo(json.dumps(out, indent=2))
    if (warning := ema_warning(cfg, total_steps)):
        click.echo(warning, err=True)

def _broadcast_str(value, device):
    import torch.distributed as dist
    from rtm_plugin.imle.distributed import init_from_env
    init_from_env(device)
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]

if __name__ == '__main__':
    main()

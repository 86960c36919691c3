"""rtm-imle: train an RS-IMLE generator (RTM or MLP mapper + decoder).

With no --data it runs the embedded default: Stacked Digits (1000 modes) at 16 px on CPU, then prints
modes covered, KL, FID, precision, recall, density and coverage in the digit classifier's feature space.
With --data it trains on a folder or a dataset_tool.py zip with the official few-shot settings, or with a
--preset (cifar10, celebahq, fewshot: the paper's setups; fewshot-official), each a YAML file in
rtm_plugin/imle/presets/ naming the source of every value. --dry-run prints the resolved settings and exits.
"""

import json
import math
import os
import re
import sys
import time
from dataclasses import fields, replace

import click
import numpy as np
import torch

from rtm_plugin import __version__
from rtm_plugin.imle.config import DEFAULT_NUM_IMAGES, IMLEConfig, as_dict, config_from_dict
from rtm_plugin.imle.presets import PRESETS, resolve
from rtm_plugin.imle.protocols import EVAL_PROTOCOLS, fid_samples
from rtm_plugin.imle.checkpoint import load_snapshot, resolve_resume
from rtm_plugin.imle.distributed import init_from_env, select_device
from rtm_plugin.imle.train import RunOptions, Trainer

CONFIG_OPTIONS = {f.name for f in fields(IMLEConfig)}

def next_run_dir(outdir, desc):
    """StyleGAN's numbering: <outdir>/<00000>-<desc>."""
    os.makedirs(outdir, exist_ok=True)
    ids = [int(m.group(1)) for d in os.listdir(outdir) if (m := re.match(r'(\d+)-', d))]
    return os.path.join(outdir, f'{max(ids, default=-1) + 1:05d}-{desc}')

def load_training_images(data, resolution, num_images, seed, skip_bad, log):
    """(uint8 images, eval reals or None, training_set_kwargs)."""
    if data is None:
        from rtm_plugin.datasets.stacked_digits import make_stacked_digits
        images, _ = make_stacked_digits(num_images, resolution, seed=seed)
        reals, _ = make_stacked_digits(10000, resolution, seed=seed + 1)
        return images, reals, dict(name='stacked_digits', num_images=num_images, resolution=resolution, seed=seed)
    from rtm_plugin.imle.datacache import load_images_shared
    found = load_images_shared(data, resolution, skip_bad=skip_bad, max_images=num_images, log=log)
    if found.skipped:
        log(f'skipped {len(found.skipped)} unreadable image(s), e.g. {found.skipped[0][1]}')
    log(f'{data}: {len(found.images)} images, {found.images.shape[-1]} px')
    return found.images, None, dict(path=os.path.abspath(data), resolution=int(found.images.shape[-1]),
                                    num_images=len(found.images))

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
    from rtm_plugin.imle.features import to_uint8
    from rtm_plugin.imle.train import EVAL, generate, seeded
    z = torch.randn([num_samples, G.z_dim], generator=seeded(seed, EVAL))
    fakes = to_uint8(generate(G, z, batch))
    return evaluate_images(torch.as_tensor(reals_u8), fakes, detector=detector, device=device, batch_size=batch)

@click.command(context_settings=dict(help_option_names=['-h', '--help'], show_default=True))
@click.version_option(__version__)
@click.option('--data', type=click.Path(exists=True), help='Image folder or dataset_tool.py zip [default: embedded Stacked Digits]')
@click.option('--preset', type=click.Choice(PRESETS), help='Settings of a paper setup (cifar10, celebahq, fewshot) or of the official code (fewshot-official); flags override them')
@click.option('--dry-run', is_flag=True, help='Print the resolved settings and parameter counts as JSON, then exit')
@click.option('--eval-protocol', type=click.Choice(sorted(EVAL_PROTOCOLS)), help="A paper table's final metrics [the preset's]")
@click.option('--outdir', default='imle-runs', help='Where run folders are created')
@click.option('--resume', type=click.Path(exists=True), help='Snapshot .pkl or run folder to continue (in place)')
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
@click.option('--perceptual', type=click.Choice(['auto', 'lpips', 'fallback']), default='auto',
              help='LPIPS-VGG when its weights are found (auto), required (lpips), or the fallback loss')
@click.option('--lpips-vgg', type=click.Path(exists=True, dir_okay=False), help='torchvision vgg16-397923af.pth')
@click.option('--lpips-lin', type=click.Path(exists=True, dir_okay=False), help='lpips weights/v0.1/vgg.pth')
@click.option('--snap-kimg', type=click.FloatRange(min=0, min_open=True), help='Snapshot interval [50; 25 default run]')
@click.option('--grid-kimg', type=click.FloatRange(min=0, min_open=True), help='Sample-grid interval [10]')
@click.option('--eval-samples', type=click.IntRange(min=0), help="Samples for the final metrics (0 = skip) [the protocol's FID count, else 10000]")
@click.option('--detector', help="Metrics feature space: 'digits', 'inception', 'vgg16' or a .pt path [digits for the default run; inception with an eval protocol; else none]")
@click.option('--device', default='auto', help='auto (CUDA when available, else CPU), cpu, cuda or cuda:K; '
              'under torchrun each process takes cuda:$LOCAL_RANK')
@click.option('--amp', type=click.Choice(['off', 'bf16', 'fp16']), default='off',
              help='Mixed precision for the decoder and the loss (the mapper stays fp32)')
@click.option('--pool-batch', type=click.IntRange(min=1), default=256,
              help='Images per batch when rendering the pool and projecting features (no_grad, on the device)')
@click.option('--threads', type=click.IntRange(min=1), help='torch CPU threads [1 in the default run, else torch default]')
@click.option('--no-progress', is_flag=True, help='No tqdm progress bar')
def main(data, outdir, resume, perceptual, lpips_vgg, lpips_lin, snap_kimg, grid_kimg, eval_samples, detector,
         device, amp, pool_batch, threads, no_progress, num_images, skip_bad, map_, preset, dry_run, eval_protocol,
         **options):
    """Train an RS-IMLE generator whose mapper is RTM (or the MLP baseline).

    \b
    rtm-imle                                  # the embedded default run (Stacked Digits, CPU, < 10 min)
    rtm-imle --map mlp                        # the same with the 8-layer MLP mapper (baseline)
    rtm-imle --data faces.zip --resolution 256  # official few-shot settings on your data
    rtm-imle --preset cifar10 --data cifar10.zip  # the paper's CIFAR-10 setup (Table 1)
    rtm-imle --preset celebahq --dry-run        # print the resolved settings and parameter counts
    torchrun --nproc_per_node=2 -m rtm_plugin.imle --data faces.zip   # DDP
    """
    try:
        device = str(select_device(device))         # CUDA when available; cuda:$LOCAL_RANK under torchrun
        init_from_env(device)                       # the process group, before the ranks share the data
    except ValueError as e:
        raise click.UsageError(str(e))
    if threads is None and data is None and resume is None and device == 'cpu':
        threads = 1     # 16-px convolutions barely split; one thread also never stalls when other work shares the CPU
    if threads:
        torch.set_num_threads(threads)
    options['map'] = map_
    flags = {k: v for k, v in options.items() if v is not None}
    try:
        settings = resolve(preset, flags, data, eval_protocol)
    except ValueError as e:
        raise click.UsageError(str(e))
    given = settings.given
    if dry_run:
        print_dry_run(settings, data, given)
        return
    if preset and not data and not resume:
        raise click.UsageError(f'--preset {preset} is a setup for real data: pass --data (a folder or a zip; '
                               f'rtm-imle-prepare makes one)')
    rank = int(os.environ.get('RANK', '0'))
    log = (lambda m: click.echo(m, err=True)) if rank == 0 else (lambda m: None)
    try:
        if resume:
            snapshot = resolve_resume(resume)
            state = load_snapshot(snapshot).get('rs_imle')
            if state is None:
                raise click.UsageError(f'--resume {snapshot}: no RS-IMLE training state in that pickle')
            saved = config_from_dict(state['config'])
            clash = {k: (v, getattr(saved, k)) for k, v in given.items() if k != 'kimg' and getattr(saved, k) != v}
            if clash:
                raise click.UsageError(f'--resume: options differ from the snapshot (given, saved): {clash}')
            cfg = replace(saved, kimg=given.get('kimg', saved.kimg))
            tsk = load_snapshot(snapshot).get('training_set_kwargs') or {}
            run_dir = os.path.dirname(os.path.abspath(snapshot))
            data = tsk.get('path', data)
            num_images = tsk.get('num_images', num_images)
        else:
            if data is None and num_images is None:
                num_images = DEFAULT_NUM_IMAGES
            cfg = settings.config
            snapshot = None
        images, reals, tsk = load_training_images(data, cfg.resolution if (resume or 'resolution' in given or not data)
                                                  else None, num_images, cfg.seed, skip_bad, log)
        if data and not resume and 'resolution' not in given:
            cfg = replace(cfg, resolution=int(images.shape[-1]))
        if not resume:
            desc = f'{"digits" if data is None else os.path.splitext(os.path.basename(os.path.normpath(data)))[0]}-{cfg.map}'
            run_dir = next_run_dir(outdir, desc) if rank == 0 else None
            if int(os.environ.get('WORLD_SIZE', '1')) > 1:
                run_dir = _broadcast_str(run_dir, device)
        if detector is None and data is None:
            detector = 'digits'
        if settings.eval_protocol:          # the built-in evaluation draws the protocol's FID count on Inception
            detector = detector or 'inception'
            eval_samples = fid_samples(settings.eval_protocol) if eval_samples is None else eval_samples
        eval_samples = 10000 if eval_samples is None else eval_samples
        opts = RunOptions(outdir=run_dir, snap_kimg=snap_kimg or (25.0 if data is None else 50.0),
                          grid_kimg=grid_kimg or 10.0, device=device, amp=amp, pool_batch=pool_batch,
                          perceptual=perceptual,
                          lpips_vgg=lpips_vgg, lpips_lin=lpips_lin, progress=not no_progress,
                          training_set_kwargs=tsk)
        trainer = Trainer(cfg, images, opts, resume=snapshot, log=log)
    except (ValueError, FileNotFoundError, ImportError) as e:
        raise click.UsageError(str(e))

    log(f'run folder: {run_dir}')
    log(f'{cfg.map} mapper + {cfg.decoder} decoder, {sum(p.numel() for p in trainer.G.parameters()):,} parameters; '
        f'{trainer.num} images at {cfg.resolution} px; pool {trainer.pool}; loss: {trainer.loss_name}; '
        f'{trainer.world} process(es) on {trainer.device}, amp {amp}')
    t0 = time.time()
    status, path = trainer.run()
    seconds = time.time() - t0
    if status == 'interrupted':
        log(f'interrupted at step {trainer.step}: saved {path}; continue with --resume {run_dir}')
        sys.exit(130)
    record = dict(kind='eval', step=trainer.step, kimg=trainer.step * cfg.batch / 1000, train_seconds=seconds,
                  snapshot=os.path.basename(path) if path else None, eval_protocol=settings.eval_protocol,
                  protocol_metrics=settings.metrics)
    if rank == 0 and eval_samples and detector:
        reals_u8 = reals if reals is not None else images
        t1 = time.time()
        metrics = evaluate_generator(trainer.G_ema, reals_u8, eval_samples, detector, cfg.seed, device)
        record.update({k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in metrics.items()},
                      detector=detector, eval_samples=eval_samples, eval_seconds=time.time() - t1)
        trainer.write_metrics(record)
        click.echo(f'{cfg.map}: {summary_line(record)} ({seconds:.0f} s training, '
                   f'{record["eval_seconds"]:.0f} s evaluation; {run_dir})')
    elif rank == 0:
        trainer.write_metrics(record)
        click.echo(f'{cfg.map}: trained {trainer.step} steps in {seconds:.0f} s; no metrics '
                   f'({"--eval-samples 0" if not eval_samples else "no --detector"}); {run_dir}')

def parameter_counts(cfg):
    """Parameters of mapper and decoder, counted on the meta device (no memory, no init time)."""
    from rtm_plugin.imle.train import build_generator
    with torch.device('meta'):
        G = build_generator(cfg)
    count = lambda m: sum(p.numel() for p in m.parameters())
    return dict(mapping=count(G.mapping), synthesis=count(G.synthesis), total=count(G))

def print_dry_run(settings, data, given):
    """--dry-run: the resolved settings as JSON on stdout; nothing is written."""
    from rtm_plugin.imle.ema import ema_warning, initial_share
    cfg = settings.config
    if data and 'resolution' not in given:      # as a real run: the data sets the resolution
        from rtm_plugin.imle.data import load_images
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

"""What an RS-IMLE epoch costs at the paper's scales, on this machine's device (CUDA when present, else CPU).

Two setups:
  few-shot   the official few-shot decoder at 256 px (width 384, z = w = 1024, batch 4), N = 100 images
             (the 100-shot sets), pool 20 x N rounded up to 1024s;
  cifar      a CIFAR-sized ConvNeXt decoder at 32 px (width 256, z = w = 1024, batch 64), N = 50,000, pool 1M.
For each: one training step through Trainer.train_step (mapper, decoder, LPIPS-VGG at full cost with untrained
weights, AdamW, EMA; under --amp), pool rendering through render.render_features (no_grad, --pool-batch, on the
device), and matching (matching.match_shard, exact, chunked at knn_max_elements) of N data features against the
pool. A 1M pool is 80 TFLOP of distances: on a CPU only --match-pool samples are matched and the time projected
linearly (the cost is N x pool x 800 multiply-adds, chunk by chunk). Memory is the features and one distance chunk
(measured with torch.cuda.max_memory_allocated on CUDA, computed on the CPU).
The projected epoch is N / batch steps plus one re-match (render + match) every force_resample (30) epochs.

    python benchmarks/bench_imle_scale.py [--device auto] [--amp off|bf16|fp16] [--pool-batch 256]
                                          [--match-pool P] [--only fewshot|cifar] [--repeats 3] [--threads N]
"""

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rtm_plugin.imle import distributed as D                      # noqa: E402
from rtm_plugin.imle.config import FEWSHOT                         # noqa: E402
from rtm_plugin.imle.matching import match_shard, pool_size       # noqa: E402
from rtm_plugin.imle.perceptual import LPIPS, ReconstructionLoss  # noqa: E402
from rtm_plugin.imle.render import render_features                # noqa: E402
from rtm_plugin.imle.train import RunOptions, Trainer             # noqa: E402

SETUPS = {
    'fewshot': dict(cfg=replace(FEWSHOT, resolution=256), num=100),
    'cifar': dict(cfg=replace(FEWSHOT, resolution=32, decoder='convnext', width=256, batch=64), num=50000),
}

CPU_TIMES = {}

def seconds(fn, device, repeats, key=None):
    """Median wall time of fn() over `repeats` runs after one warm-up, GPU work included. The process's CPU time
    is kept in CPU_TIMES[key]: on a shared CPU machine it is what the work costs (with --threads 1, the wall time
    it would take on an idle core)."""
    fn()
    times, cpu = [], []
    for _ in range(repeats):
        D.synchronize(device)
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        D.synchronize(device)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    CPU_TIMES[key] = float(np.median(cpu))
    return float(np.median(times))

def gib(n):
    return f'{n / 2**30:.2f} GiB'

def bench(name, setup, args, device):
    cfg, num = setup['cfg'], setup['num']
    pool = pool_size(num, cfg.force_factor, cfg.pool_multiple)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, [max(cfg.batch, 8), 3, cfg.resolution, cfg.resolution], dtype=torch.uint8,
                           generator=g).numpy()
    with tempfile.TemporaryDirectory() as outdir:
        t = Trainer(replace(cfg, force_factor=1.0, pool_multiple=1), images,
                    RunOptions(outdir=outdir, device=str(device), amp=args.amp, pool_batch=args.pool_batch,
                               perceptual='fallback', progress=False), log=lambda m: None)
        # LPIPS-VGG at its full cost: the architecture with untrained weights (nothing is downloaded).
        t.loss_fn = ReconstructionLoss(LPIPS(), cfg.lpips_coef, cfg.l2_coef).to(device)
        t.latents.normal_(generator=g)
        step = seconds(t.train_step, device, args.repeats, (name, 'step'))
        z = torch.randn([args.pool_batch * args.render_batches, cfg.z_dim], generator=g)
        render = seconds(lambda: render_features(t.G, z, t.projection, device, args.pool_batch, args.amp),
                         device, max(1, args.repeats - 1), (name, 'render'))
        params = sum(p.numel() for p in t.G.parameters())

    # Matching: N data features against a pool, chunked. On a CPU the pool is cut and the time projected.
    p_meas = min(pool, args.match_pool or (pool if device.type == 'cuda' else 5000))
    data = F.normalize(torch.randn([num, cfg.proj_dim], generator=g), dim=1).to(device)
    feats = F.normalize(torch.randn([p_meas, cfg.proj_dim], generator=g), dim=1).to(device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    match_meas = seconds(lambda: match_shard(data, feats, cfg.eps, max_elements=cfg.knn_max_elements),
                         device, max(1, args.repeats - 2), (name, 'match'))
    chunk = max(1, cfg.knn_max_elements // num)
    # Resident at full size: data and pool features, their lifted copies (one chunk of the pool), one N x chunk block.
    mem_full = 4 * (num * cfg.proj_dim + pool * cfg.proj_dim + num * (cfg.proj_dim + 2) + 2 * num * chunk)
    mem_note = 'computed'
    if device.type == 'cuda':
        mem_meas = torch.cuda.max_memory_allocated(device) - base + 4 * (data.numel() + feats.numel())
        mem_note = f'measured {gib(mem_meas)} at pool {p_meas}'
    row = dict(name=name, res=cfg.resolution, decoder=cfg.decoder, params=params, batch=cfg.batch, num=num,
               pool=pool, p_meas=p_meas, chunk=chunk, mem_full=mem_full, mem_note=mem_note,
               steps_per_epoch=math.ceil(num / cfg.batch), force_resample=cfg.force_resample, rendered=len(z))
    wall = project(row, step, render, match_meas)
    cpu = project(row, CPU_TIMES[(name, 'step')], CPU_TIMES[(name, 'render')], CPU_TIMES[(name, 'match')])
    return row, wall, cpu

def project(row, step, render, match_meas):
    """Rates and the projected epoch from the measured step, render (of row['rendered'] images) and match times."""
    pool_rate = row['rendered'] / render
    match_full = match_meas * row['pool'] / row['p_meas']
    rematch = row['pool'] / pool_rate + match_full
    return dict(step=step, train_rate=row['batch'] / step, pool_rate=pool_rate, match_meas=match_meas,
                match_full=match_full, rematch=rematch,
                epoch=row['steps_per_epoch'] * step + rematch / row['force_resample'])

def hms(s):
    return f'{s:.3g} s' if s < 120 else (f'{s / 60:.1f} min' if s < 7200 else f'{s / 3600:.1f} h')

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--device', default='auto')
    ap.add_argument('--amp', default='off', choices=['off', 'bf16', 'fp16'])
    ap.add_argument('--pool-batch', type=int, default=None, help='[256 on CUDA, 16 on CPU]')
    ap.add_argument('--render-batches', type=int, default=None, help='pool batches rendered per timing [8 CUDA, 1 CPU]')
    ap.add_argument('--match-pool', type=int, default=None,
                    help='pool size matched, the full pool projected from it [the full pool on CUDA, 5000 on CPU]')
    ap.add_argument('--only', choices=sorted(SETUPS))
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--threads', type=int)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = D.select_device(args.device)
    cuda = device.type == 'cuda'
    args.pool_batch = args.pool_batch or (256 if cuda else 16)
    args.render_batches = args.render_batches or (8 if cuda else 1)
    where = torch.cuda.get_device_name(device) if cuda else f'CPU, {torch.get_num_threads()} threads'
    print(f'## RS-IMLE at scale on {where} (torch {torch.__version__}, amp {args.amp}, pool batch {args.pool_batch})\n')
    rows = [bench(n, SETUPS[n], args, device) for n in SETUPS if args.only in (None, n)]
    tables = [('wall time', 1)] + ([('CPU seconds of this process (with --threads 1: the wall time on one idle '
                                     'core; on a shared machine the wall time includes waiting)', 2)] if not cuda else [])
    for title, which in tables:
        print(f'From {title}:\n')
        print('| setup | params | batch | train step | train img/s | pool img/s | N x pool | match (measured) '
              '| match, full pool | match memory | re-match | epoch (N / batch steps + re-match / 30) |')
        print('|---|---|---|---|---|---|---|---|---|---|---|---|')
        for r in rows:
            row, t = r[0], r[which]
            print(f'| {row["name"]} ({row["decoder"]}, {row["res"]} px) | {row["params"] / 1e6:.1f} M | {row["batch"]} '
                  f'| {t["step"]:.3g} s | {t["train_rate"]:.3g} | {t["pool_rate"]:.3g} '
                  f'| {row["num"]:,} x {row["pool"]:,} | {t["match_meas"]:.3g} s at pool {row["p_meas"]:,} '
                  f'| {hms(t["match_full"])} | {gib(row["mem_full"])} ({row["mem_note"]}; chunk {row["chunk"]:,} '
                  f'columns) | {hms(t["rematch"])} | {hms(t["epoch"])} ({row["steps_per_epoch"]} steps) |')
        print()

if __name__ == '__main__':
    main()

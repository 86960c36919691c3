"""RS-IMLE costs on CPU, each measured A-against-B in one interleaved run:

1. the matching step (rejection + nearest surviving sample, exact) at N=1000 data points, a pool of 20000,
   800-d features, against one bare GEMM of that shape ([1000, 800] x [800, 20000]); target ratio <= 1.5;
2. one training step (generator forward, loss, backward, AdamW, EMA) of RTM (8,2) over MLP-8 with the
   official few-shot decoder at 64 px (z = w = 1024, width 384, batch 4); the paper reports 5-8% overhead.

    python benchmarks/bench_imle.py [--threads N] [--width 384] [--batch 4] [--skip-step]
"""

import argparse
import copy
from dataclasses import replace

import torch
import torch.nn.functional as F

from rtm_plugin.imle.config import FEWSHOT
from rtm_plugin.imle.matching import match
from rtm_plugin.imle.perceptual import MultiScaleGradientLoss, ReconstructionLoss
from rtm_plugin.imle.generator import build_generator
from rtm_plugin.timing import interleaved_medians

def bench_matching(n=1000, pool=20000, dim=800, eps=0.12):
    g = torch.Generator().manual_seed(0)
    data = F.normalize(torch.randn([n, dim], generator=g), dim=1)
    # Pool samples near the data, so rejection has work to do as in training.
    near = data[torch.randint(n, [pool], generator=g)] + 0.06 * torch.randn([pool, dim], generator=g) / dim ** 0.5
    samples = F.normalize(torch.cat([near[: pool // 2], torch.randn([pool - pool // 2, dim], generator=g)]), dim=1)
    m = match(data, samples, eps)
    fns = {'bare GEMM': lambda: data @ samples.t(), 'match (torch)': lambda: match(data, samples, eps)}
    try:
        import faiss  # noqa: F401
        fns['match (faiss)'] = lambda: match(data, samples, eps, backend='faiss')
    except ImportError:
        pass
    t = interleaved_medians(fns, rounds=5, warmup=1, repeats=5)
    print(f'## Matching: N={n}, pool={pool}, dim={dim}, eps={eps} ({m.num_rejected} of {pool} rejected)\n')
    print('| operation | ms | vs bare GEMM |')
    print('|---|---|---|')
    for name, sec in t.items():
        print(f'| {name} | {sec * 1e3:.1f} | {sec / t["bare GEMM"]:.2f}x |')
    print()

def bench_step(width, batch, resolution=64):
    base = replace(FEWSHOT, resolution=resolution, width=width, batch=batch)
    cfgs = {'MLP-8': replace(base, map='mlp'), 'RTM (8,2)': replace(base, map='rtm', rtm_h=8, rtm_l=2)}
    loss_fn = ReconstructionLoss(MultiScaleGradientLoss(), 1.0, 0.1)
    target = torch.rand([batch, 3, resolution, resolution]) * 2 - 1
    fns, params = {}, {}
    for name, cfg in cfgs.items():
        torch.manual_seed(0)
        G = build_generator(cfg).train()
        G_ema = copy.deepcopy(G).requires_grad_(False)
        opt = torch.optim.AdamW(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
        z = torch.randn([batch, cfg.z_dim])
        params[name] = (sum(p.numel() for p in G.parameters()), sum(p.numel() for p in G.mapping.parameters()))

        def step(G=G, G_ema=G_ema, opt=opt, z=z):
            loss = loss_fn(G(z), target).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for pe, p in zip(G_ema.parameters(), G.parameters()):
                    pe.lerp_(p, 1 - 0.9999)
        fns[name] = step
    t = interleaved_medians(fns, rounds=5, warmup=1, repeats=3)
    print(f'## Training step: few-shot decoder at {resolution} px, width {width}, z = w = 1024, batch {batch}\n')
    print('| mapper | generator params | mapper params | s/step | vs MLP-8 |')
    print('|---|---|---|---|---|')
    for name, sec in t.items():
        print(f'| {name} | {params[name][0]:,} | {params[name][1]:,} | {sec:.3f} | {sec / t["MLP-8"]:.3f}x |')
    print(f'\nRTM (8,2) overhead: {(t["RTM (8,2)"] / t["MLP-8"] - 1) * 100:+.1f}% (paper: 5-8%)\n')

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument('--width', type=int, default=FEWSHOT.width)
    parser.add_argument('--batch', type=int, default=FEWSHOT.batch)
    parser.add_argument('--skip-step', action='store_true')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, CPU, {torch.get_num_threads()} threads\n')
    bench_matching()
    if not args.skip_step:
        bench_step(args.width, args.batch)

if __name__ == '__main__':
    main()

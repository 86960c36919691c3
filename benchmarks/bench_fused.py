"""The fused RTM op against the reference: mapper forward time, the ratio to an 8-layer MLP mapper, and the
op's achieved GFLOP/s next to one large torch.mm on the same device (the practical roof) and, on a GPU, as a
percentage of the FP32 peak; on a GPU also torch.compile of the reference, the peer to beat. All timings in a
table row are medians taken interleaved in one run (A against B), with rtm_plugin/timing.py.

    python benchmarks/bench_fused.py                          # CPU: batch 1, 16, 64, 256
    python benchmarks/bench_fused.py --device cuda            # GPU: batch 1, 16, 256, 4096

z = w = 512, num_ws = 14, expansion 4. Configurations: 8 tokens x 64 (the targets) and the core default
4 tokens x 128, each at RTM (H, L) = (16, 1) and (8, 2).
"""

import argparse
import time

import torch

from rtm_plugin.gpu_check import fp32_peak_gflops
from rtm_plugin.mapping import MLPMappingNetwork, RTMMappingNetwork
from rtm_plugin.timing import interleaved_medians
from torch_utils_ext import rtm_fused

DIMS = dict(z_dim=512, c_dim=0, w_dim=512, num_ws=14)
CONFIGS = [(8, 64), (4, 128)]           # tokens x token_dim
STEPS = [(16, 1), (8, 2)]               # (H, L)

def block_flops(trunk):
    """Multiply-adds x 2 of one block call on one sample: token SwiGLU over S, channel SwiGLU over D."""
    S, D = trunk.tokens, trunk.token_dim
    Ht, Hc = trunk.block.token_mix.hidden, trunk.block.channel_mix.hidden
    return 6 * S * D * (Ht + Hc)

def repeats_for(fn, device, budget=0.15):
    """Enough calls for about `budget` seconds per median, between 3 and 20: short rounds, many of them."""
    fn()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return max(3, min(20, int(budget / max(time.perf_counter() - t0, 1e-6))))

def mm_roof(device, n):
    """GFLOP/s of one large torch.mm (n x n x n) on the device."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    fn = lambda: torch.mm(a, b)
    t = interleaved_medians({'mm': fn}, rounds=3, repeats=repeats_for(fn, device), device=device)['mm']
    return 2 * n ** 3 / t / 1e9

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--batches', default=None, help='comma-separated (default: 1,16,64,256 on CPU, '
                        '1,16,256,4096 on CUDA)')
    parser.add_argument('--no-compile', action='store_true', help='CUDA: leave out torch.compile of the reference')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument('--rounds', type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    default_batches = '1,16,64,256' if device.type == 'cpu' else '1,16,256,4096'
    batches = [int(b) for b in (args.batches or default_batches).split(',')]

    rtm_fused.build('cuda' if device.type == 'cuda' else 'cpu')      # before the table: the first build prints
    roof = mm_roof(device, 2048 if device.type == 'cpu' else 8192)
    cuda = device.type == 'cuda'
    name = torch.cuda.get_device_name(device) if cuda else f'CPU, {torch.get_num_threads()} threads'
    peak = fp32_peak_gflops(device) if cuda else None
    print(f'torch {torch.__version__}, {name}; z=w=512, num_ws=14, expansion 4; '
          f'roof: one large torch.mm = {roof:.0f} GFLOP/s (float32)' +
          (f'; FP32 peak {peak:.0f} GFLOP/s' if peak else '') + '\n')
    print('| tokens x dim | (H,L) | batch | reference ms | compiled ms | fused ms | fused speed-up | fused / compiled '
          '| fused RTM / MLP-8 | op GFLOP/s | op % of mm roof | op % of FP32 peak |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|')
    torch.manual_seed(0)
    mlp8 = MLPMappingNetwork(**DIMS, num_layers=8).to(device).eval()
    for tokens, token_dim in CONFIGS:
        mapper = RTMMappingNetwork(**DIMS, tokens=tokens, token_dim=token_dim).to(device).eval()
        trunk = mapper.trunk
        for H, L in STEPS:
            compiled = None
            if cuda and not args.no_compile:        # one dynamic-shape graph for all batches of this (H, L)
                compiled = torch.compile(lambda z, H=H, L=L: mapper(z, H=H, L=L, use_fused=False), dynamic=True)
            for batch in batches:
                z = torch.randn(batch, 512, device=device)
                carries = [torch.randn(batch, tokens, token_dim, device=device) for _ in range(3)]
                with torch.no_grad():
                    op = trunk.block_fn(carries[0], use_fused=True)     # the fused block of this mapper

                def forward(m, **kw):
                    def run():
                        with torch.no_grad():
                            m(z, **kw)
                    return run

                fns = {
                    'reference': forward(mapper, H=H, L=L, use_fused=False),
                    'fused': forward(mapper, H=H, L=L, use_fused=True),
                    'mlp8': forward(mlp8),
                    'op': lambda: op.recursion(*carries, H, L),         # the whole recursion in one op call
                }
                if compiled is not None:
                    fns['compiled'] = lambda: compiled(z)
                repeats = min(repeats_for(fn, device) for fn in fns.values())
                t = interleaved_medians(fns, rounds=args.rounds, warmup=2, repeats=repeats, device=device)
                gflops = block_flops(trunk) * H * (L + 1) * batch / t['op'] / 1e9
                comp = t.get('compiled')
                compiled_ms = f'{comp * 1e3:.3f}' if comp else '-'
                vs_compiled = f'{comp / t["fused"]:.1f}x' if comp else '-'
                of_peak = f'{100 * gflops / peak:.0f}%' if peak else '-'
                print(f'| {tokens} x {token_dim} | ({H},{L}) | {batch} | {t["reference"] * 1e3:.3f} | {compiled_ms} | '
                      f'{t["fused"] * 1e3:.3f} | {t["reference"] / t["fused"]:.1f}x | {vs_compiled} | '
                      f'{t["fused"] / t["mlp8"]:.2f}x | {gflops:.1f} | {100 * gflops / roof:.0f}% | {of_peak} |',
                      flush=True)

if __name__ == '__main__':
    main()

"""Mapper baseline on CPU: time per sample of MLP-2, MLP-8 and RTM (16,1), parameter counts, and the saved
activations of RTM at H = 1, 4, 16, 64. Prints ratios measured in one interleaved run (A against B).

    python benchmarks/bench_mapper.py [--threads N]
"""

import argparse

import torch

from rtm_plugin.mapping import MLPMappingNetwork, RTMMappingNetwork
from rtm_plugin.memory import saved_tensors
from rtm_plugin.timing import interleaved_medians

DIMS = dict(z_dim=512, c_dim=0, w_dim=512, num_ws=14)

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    mappers = {
        'MLP-2': MLPMappingNetwork(**DIMS, num_layers=2),
        'MLP-8': MLPMappingNetwork(**DIMS, num_layers=8),
        'RTM (16,1)': RTMMappingNetwork(**DIMS, H=16, L=1),
    }
    print(f'torch {torch.__version__}, CPU, {torch.get_num_threads()} threads; z=w=512, num_ws=14; '
          f'RTM tokens=4 x 128, expansion 4\n')
    print('| mapper | parameters | batch | forward us/sample | fwd+bwd us/sample | forward vs MLP-8 |')
    print('|---|---|---|---|---|---|')
    for batch in (1, 64):
        z = torch.randn(batch, 512)

        def fwd(m):
            def run():
                with torch.no_grad():
                    m(z)
            return run

        def train(m):
            def run():
                m(z).square().mean().backward()
            return run

        t_fwd = interleaved_medians({k: fwd(m) for k, m in mappers.items()})
        t_train = interleaved_medians({k: train(m) for k, m in mappers.items()}, repeats=10)
        for name, m in mappers.items():
            n = sum(p.numel() for p in m.parameters())
            print(f'| {name} | {n:,} | {batch} | {t_fwd[name] / batch * 1e6:.1f} | '
                  f'{t_train[name] / batch * 1e6:.1f} | {t_fwd[name] / t_fwd["MLP-8"]:.2f}x |')

    print('\n| RTM (H,1) saved for backward, batch 64 | tensors | MiB | vs H=1 |')
    print('|---|---|---|---|')
    rtm = mappers['RTM (16,1)']
    z = torch.randn(64, 512)
    _, _, base = saved_tensors(rtm, z, H=1)
    for H in (1, 4, 16, 64):
        _, count, nbytes = saved_tensors(rtm, z, H=H)
        print(f'| H={H} | {count} | {nbytes / 2**20:.2f} | {nbytes / base:.2f}x |')

if __name__ == '__main__':
    main()

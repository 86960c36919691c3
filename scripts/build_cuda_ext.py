"""Builds the fused RTM op's full CUDA extension (compile and import only: no GPU needed) with a CUDA build
of torch, the way the first forward on a CUDA tensor would. About 3 minutes for two architectures.

    python -m venv venv-cuda && venv-cuda/bin/pip install torch==2.14.1 numpy ninja
    venv-cuda/bin/python scripts/build_cuda_ext.py [--arch "8.0;9.0+PTX"]

CUDA_HOME is taken from the real nvcc (torch_utils_ext/custom_ops.py), so a wrapper script on PATH is fine.
Builds go to TORCH_EXTENSIONS_DIR (default: torch's cache directory).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', default=os.environ.get('TORCH_CUDA_ARCH_LIST', '8.0;9.0+PTX'),
                        help='TORCH_CUDA_ARCH_LIST to build for (default: %(default)s; +PTX: newer GPUs such as sm_100 JIT it)')
    args = parser.parse_args()
    os.environ['TORCH_CUDA_ARCH_LIST'] = args.arch

    import torch
    from torch_utils_ext import custom_ops, rtm_fused
    if not torch.version.cuda:
        sys.exit(f'torch {torch.__version__} is a CPU build; run this with a CUDA build of torch (see the docstring)')
    print(f'torch {torch.__version__} (CUDA {torch.version.cuda}), CUDA_HOME={custom_ops.find_cuda_home()}, '
          f'arch {args.arch}, GPU present: {torch.cuda.is_available()}')
    t0 = time.time()
    plugin = rtm_fused.build('cuda')
    print(f'Built and imported {plugin.__name__} in {time.time() - t0:.0f} s: {plugin.__file__}')
    print('Entry points:', ', '.join(name for name in ('recursion', 'block', 'pack', 'recursion_packed', 'block_packed',
                                                        'plan_cuda') if hasattr(plugin, name)))
    # One H100-sized plan through the extension's own code, as a smoke test of the import.
    print('plan_cuda(batch 256, 4x128, 227 KB, 132 SMs):', plugin.plan_cuda(256, 4, 128, 11, 341, 232448, 132))

if __name__ == '__main__':
    main()

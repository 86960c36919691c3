"""The CUDA kernel compiles for sm_80 and sm_90 from its header alone (no torch, no GPU), without register
spills or local memory. Skips where there is no nvcc."""

import os
import re
import subprocess

import pytest

from torch_utils_ext import custom_ops

KERNEL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'torch_utils_ext')

def nvcc_path():
    root = custom_ops.find_cuda_home()
    nvcc = None if root is None else os.path.join(root, 'bin', 'nvcc')
    return nvcc if nvcc and os.path.isfile(nvcc) else None

@pytest.mark.skipif(nvcc_path() is None, reason='no CUDA toolkit (nvcc) on this machine')
def test_kernel_compiles_for_sm80_and_sm90_without_spills(tmp_path):
    source = tmp_path / 'rtm_kernel.cu'
    source.write_text('#include "rtm_fused_kernel.cuh"\n'
                      'template __global__ void rtm::rtm_kernel<float>(const rtm::KernelArgs<float>);\n')
    cmd = [nvcc_path(), '-c', '-O3', '--resource-usage', '-Xptxas', '-warn-spills,-warn-lmem-usage',
           '-gencode', 'arch=compute_80,code=sm_80', '-gencode', 'arch=compute_90,code=sm_90',
           '-I', KERNEL_DIR, str(source), '-o', str(tmp_path / 'rtm_kernel.o')]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert 'warning' not in log.lower(), log                # -warn-spills / -warn-lmem-usage stay silent
    for arch in ('sm_80', 'sm_90'):
        assert f"Compiling entry function '_ZN3rtm10rtm_kernelIfEEvNS_10KernelArgsIT_EE' for '{arch}'" in log, log
    usage = re.findall(r'(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads', log)
    assert len(usage) == 2 and all(n == '0' for line in usage for n in line), log

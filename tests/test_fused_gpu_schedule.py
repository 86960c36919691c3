"""The GPU's schedule of the shared math, run on the CPU: no GPU here, so this checks the part of the CUDA
kernel that a compile cannot. Several threads share one tile, as a CUDA block's threads do, with a barrier
where the kernel has __syncthreads(); each takes every nt-th item, adjacent items take adjacent columns
(strided register tiles), the token mix takes one channel per item, and rows carry the kernel's shared-memory
padding (smem_layout). The result must equal the CPU schedule's. Built with the host C++ compiler, no torch.
"""

import os
import shutil
import subprocess

import pytest

KERNEL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'torch_utils_ext')

SOURCE = r'''
#include "rtm_fused_cpu.h"
#include <barrier>
#include <cmath>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>
using namespace rtm;

std::barrier<>* g_barrier = nullptr;

// rtm_fused_kernel.cuh's GpuPolicy with threads for warps: same tiles, same item order, a real barrier.
struct EmulatedGpu {
    static constexpr int DW = 1, R = gpu::kRowTile, J = gpu::kColTile, JD = gpu::kColTile;
    static constexpr bool kVectorCols = false;
    static void sync() { g_barrier->arrive_and_wait(); }
    template <typename T> static void row_norm(T* x, int rows, int ld, const Dims& d, T eps, int tid, int nt) {
        for (int r = tid; r < rows; r += nt) {
            T ss = 0;
            for (int c = 0; c < d.D; ++c) ss += x[r * ld + c] * x[r * ld + c];
            const T s = rms_scale(ss, d.D, eps);
            for (int c = 0; c < d.D; ++c) x[r * ld + c] *= s;
        }
    }
};

template <class P> std::vector<float> run(int S, int D, int nb, bool gpu_rows, int threads) {
    const int Ht = (int)std::lround(4.0 * S * 2 / 3), Hc = (int)std::lround(3.0 * D * 2 / 3);
    const Dims d = make_dims(S, D, Ht, Hc);
    std::mt19937 g(7);
    std::normal_distribution<float> nd(0, 1);
    std::vector<float> tgu(2 * Ht * S), td(S * Ht), cgu(D * 2 * d.Hcp, 0.f), cd(Hc * d.Dp, 0.f);
    for (auto& v : tgu) v = nd(g) / std::sqrt(float(S));
    for (auto& v : td) v = nd(g) / std::sqrt(float(Ht));
    for (int k = 0; k < D; ++k)
        for (int c = 0; c < Hc; ++c) {
            cgu[k * 2 * d.Hcp + c] = nd(g) / std::sqrt(float(D));
            cgu[k * 2 * d.Hcp + d.Hcp + c] = nd(g) / std::sqrt(float(D));
        }
    for (int k = 0; k < Hc; ++k)
        for (int c = 0; c < D; ++c) cd[k * d.Dp + c] = nd(g) / std::sqrt(float(Hc));
    const Weights<float> w{tgu.data(), td.data(), cgu.data(), cd.data()};
    const int rows = round_up(nb * S, P::R);
    const SmemLayout lay = smem_layout(d, rows, false);
    const int ld = gpu_rows ? lay.ld : d.Dp, ldh = gpu_rows ? lay.ldh : d.Hcp;
    std::vector<float> buf(rows * (4 * ld + ldh), 0.f);
    float *zH = buf.data(), *zL = zH + rows * ld, *z0 = zL + rows * ld, *work = z0 + rows * ld, *hid = work + rows * ld;
    for (int r = 0; r < nb * S; ++r)
        for (int c = 0; c < D; ++c) { zH[r * ld + c] = nd(g); zL[r * ld + c] = nd(g); z0[r * ld + c] = nd(g); }
    const Tile<float> t{nb, rows, ld, ldh, work, hid};
    std::barrier<> barrier(threads);
    g_barrier = &barrier;
    std::vector<std::thread> pool;
    for (int tid = 0; tid < threads; ++tid)
        pool.emplace_back([&, tid] { recursion<float, P>(zH, zL, z0, 2, 2, d, w, t, 1e-5f, tid, threads); });
    for (auto& th : pool) th.join();
    std::vector<float> out;
    for (int r = 0; r < nb * S; ++r)
        for (int c = 0; c < D; ++c) { out.push_back(zH[r * ld + c]); out.push_back(zL[r * ld + c]); }
    return out;
}

int main() {
    const int cases[][3] = {{4, 128, 8}, {8, 64, 4}, {3, 13, 5}, {1, 7, 3}, {5, 33, 2}};
    for (const auto& c : cases) {
        const auto cpu = run<CpuPolicy>(c[0], c[1], c[2], false, 1);
        const auto gpu = run<EmulatedGpu>(c[0], c[1], c[2], true, 7);
        double diff = 0, scale = 0;
        for (size_t i = 0; i < cpu.size(); ++i) {
            diff = std::fmax(diff, std::fabs(cpu[i] - gpu[i]));
            scale = std::fmax(scale, std::fabs(cpu[i]));
        }
        std::printf("%d %d %d %g %g\n", c[0], c[1], c[2], diff, scale);
    }
}
'''

def compiler():
    return shutil.which(os.environ.get('CXX', 'c++')) or shutil.which('g++')

@pytest.mark.skipif(compiler() is None, reason='no host C++ compiler')
def test_gpu_schedule_on_threads_equals_cpu_schedule(tmp_path):
    (tmp_path / 'schedule.cpp').write_text(SOURCE)
    build = subprocess.run([compiler(), '-O2', '-std=c++20', '-pthread', '-I', KERNEL_DIR, 'schedule.cpp', '-o', 'schedule'],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    result = subprocess.run([str(tmp_path / 'schedule')], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split('\n')[:-1]
    assert len(lines) == 5
    for line in lines:
        S, D, nb, diff, scale = line.split()
        assert 0.5 < float(scale) < 100 and float(diff) < 1e-4, line

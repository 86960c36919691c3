"""The CUDA kernel's own body (torch_utils_ext/rtm_fused_kernel.cuh), run on CPU threads against a float64
reference written from the formula. No GPU here or in CI, so this is how the kernel is tested.

The kernel source is compiled unchanged by the host compiler, under a small CUDA emulation (EMULATION below):
__CUDACC__ and __CUDA_ARCH__ are defined, so the device branches of rtm_fused.h and the kernel are the ones
compiled; threadIdx/blockIdx/blockDim/gridDim are per-thread/global variables; a block is `blockDim.x` real
std::threads; __syncthreads() is a std::barrier over them; __shfl_xor_sync is a warp's exchange through
per-lane slots between two std::barriers of its 32 threads (so a shuffle outside whole, converged warps
deadlocks, and the subprocess times out); dynamic shared memory is one buffer, filled with NaN before each
block starts, so any read of shared memory that the kernel did not write first poisons the result. Blocks run
one after another with gridDim.x small, so that each block loops over several tiles.

The launch parameters come from the real launch plan (rtm::plan_gpu, the H100's 227 KB, or less to force the
channel weights out of shared memory), with the plan's split of k at small batches. Cases cover partial last
tiles, several tiles per block, weights in shared memory and streamed from global, the split-k and unsplit
GEMMs, tokens S from 1 to 16, token_dim D from 7 to 256, the recursion and the single block call.

The reference (reference_block below) is f from rtm_plugin/rtm.py's MixerBlock in float64: h = x + inj; token
SwiGLU over S, add, RMSNorm over tokens; channel SwiGLU over D, add, RMSNorm over channels; eps 1e-5; weights
in torch's [out, in] layout, packed for the kernel by the driver exactly as rtm_fused.cpp's pack_weights.

Checked once by hand (g++ 12.2): deleting the `P::sync()` after the token mix in rtm_fused.h's mixer_block
makes all cases fail (errors of 1.4 to 3.5 on outputs of RMS 1); deleting the one after the split-k gate/up
parts makes the split-k cases fail (NaN from the NaN-filled shared memory); deleting the first
`P::cluster_sync()` of the down projection's sum (every CTA's partial sums written) makes the 3 cluster cases
fail (NaN). Two barriers are not caught: the kernel's `__syncthreads()` after the tile load (not needed
today: every thread reads back only the elements it loaded itself, as the load loop and mixer_block's first
loop share one index pattern; it stays so as not to depend on that), and the second `P::cluster_sync()`, a
write-after-read guard that OS threads do not race through (a CTA would have to finish a whole token mix
while a peer is still summing); both stay.

Clusters (sm_90): the cluster's CTAs run together, each with its own shared memory, and the kernel's PTX
cluster primitives (rank, id, barrier, load from a peer's shared memory) are emulated in namespace rtm.
"""

import os
import shutil
import subprocess

import pytest

KERNEL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'torch_utils_ext')

EMULATION = r'''
// CUDA's execution model on CPU threads, just enough for rtm_fused_kernel.cuh. Include after the C++ headers.
#pragma once
#include <barrier>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

struct dim3 { unsigned x = 1, y = 1, z = 1; };
thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

// The blocks that run together: one, or the CTAs of one cluster. Each has its own shared memory, barrier,
// warps and shuffle slots; `local` says which block a thread belongs to (its rank in the cluster).
namespace emu {
constexpr int kMaxBlocks = 4;
constexpr size_t kSmem = 232448;                       // the H100's opt-in maximum per block
thread_local int local = 0;
alignas(16) unsigned char smem[kMaxBlocks][kSmem];
std::barrier<>* block_barrier[kMaxBlocks];
std::vector<std::unique_ptr<std::barrier<>>> warp_barriers[kMaxBlocks];
std::barrier<>* cluster_barrier = nullptr;
long long cluster_id = 0, cluster_count = 1;
alignas(8) unsigned char lanes[kMaxBlocks][1024 * 8];  // one shuffle slot per thread of a block
inline unsigned char* block_smem() { return smem[local]; }
}

inline void __syncthreads() { emu::block_barrier[emu::local]->arrive_and_wait(); }

template <typename T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    if (mask != 0xffffffffu) std::abort();             // the kernel only shuffles whole warps
    const int t = threadIdx.x, warp = t / 32, lane = t % 32;
    unsigned char* slots = emu::lanes[emu::local];
    std::memcpy(slots + 8 * t, &v, sizeof(T));
    emu::warp_barriers[emu::local][warp]->arrive_and_wait();    // every lane has written
    T r;
    std::memcpy(&r, slots + 8 * (warp * 32 + (lane ^ lane_mask)), sizeof(T));
    emu::warp_barriers[emu::local][warp]->arrive_and_wait();    // every lane has read before the slots are reused
    return r;
}
template <typename T> T __ldg(const T* p) { return *p; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }

// The cluster primitives that rtm_fused_kernel.cuh writes in PTX for sm_90.
namespace rtm {
inline int rtm_cluster_rank() { return emu::local; }
inline long long rtm_cluster_id() { return emu::cluster_id; }
inline long long rtm_cluster_count() { return emu::cluster_count; }
inline void rtm_cluster_barrier() { emu::cluster_barrier->arrive_and_wait(); }
inline float rtm_load_peer(const float* p, int rank) {     // the same offset in CTA `rank`'s shared memory
    const long long off = reinterpret_cast<const unsigned char*>(p) - emu::smem[emu::local];
    if (off < 0 || off + 4 > (long long)emu::kSmem || rank < 0 || rank >= emu::kMaxBlocks) std::abort();
    float v;
    std::memcpy(&v, emu::smem[rank] + off, 4);
    return v;
}
}

#define RTM_CUDA_EMULATION 1
#define RTM_DYNAMIC_SMEM(name) unsigned char* name = emu::block_smem()
#define __CUDACC__ 1
#define __CUDA_ARCH__ 900
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n) __attribute__((aligned(n)))
'''

DRIVER = r'''
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include "cuda_emulation.h"
#include "rtm_fused_kernel.cuh"

using namespace rtm;

// Clusters (or single blocks) one after another: they share nothing. The C blocks of a cluster run together.
template <bool kSmemW, int C> void launch(int grid, long long smem_bytes, const KernelArgs<float>& a) {
    if (smem_bytes > (long long)emu::kSmem || grid % C != 0 || C > emu::kMaxBlocks) std::abort();
    gridDim.x = grid;
    blockDim.x = gpu::kThreads;
    emu::cluster_count = grid / C;
    for (int cl = 0; cl < grid / C; ++cl) {
        const float nan = std::nanf("");
        for (int r = 0; r < C; ++r)
            for (size_t i = 0; i < emu::kSmem / 4; ++i) std::memcpy(emu::smem[r] + 4 * i, &nan, 4);
        std::vector<std::unique_ptr<std::barrier<>>> bars;
        for (int r = 0; r < C; ++r) {
            bars.emplace_back(new std::barrier<>(gpu::kThreads));
            emu::block_barrier[r] = bars.back().get();
            emu::warp_barriers[r].clear();
            for (int w = 0; w < gpu::kThreads / 32; ++w) emu::warp_barriers[r].emplace_back(new std::barrier<>(32));
        }
        std::barrier<> cluster_bar(C * gpu::kThreads);
        emu::cluster_barrier = &cluster_bar;
        emu::cluster_id = cl;
        std::vector<std::thread> pool;
        for (int r = 0; r < C; ++r)
            for (int t = 0; t < gpu::kThreads; ++t)
                pool.emplace_back([&a, t, r, cl] {
                    emu::local = r; threadIdx.x = t; blockIdx.x = cl * C + r;
                    rtm_kernel<float, kSmemW, C>(a);
                });
        for (auto& th : pool) th.join();
    }
}

// f of rtm.py's MixerBlock on one sample, float64, torch [out, in] weights.
void reference_block(std::vector<double>& x, const std::vector<double>& inj, int S, int D, int Ht, int Hc,
                     const std::vector<double>& tgu, const std::vector<double>& td,
                     const std::vector<double>& cgu, const std::vector<double>& cd, double eps) {
    auto silu = [](double g) { return g / (1 + std::exp(-g)); };
    std::vector<double> h(S * D), a(std::max(Ht, Hc)), o(std::max(S, D));
    for (int i = 0; i < S * D; ++i) h[i] = x[i] + inj[i];
    for (int c = 0; c < D; ++c) {                       // token SwiGLU, add, RMSNorm over tokens
        for (int j = 0; j < Ht; ++j) {
            double g = 0, u = 0;
            for (int s = 0; s < S; ++s) { g += tgu[j * S + s] * h[s * D + c]; u += tgu[(Ht + j) * S + s] * h[s * D + c]; }
            a[j] = silu(g) * u;
        }
        double ss = 0;
        for (int s = 0; s < S; ++s) {
            o[s] = h[s * D + c];
            for (int j = 0; j < Ht; ++j) o[s] += td[s * Ht + j] * a[j];
            ss += o[s] * o[s];
        }
        for (int s = 0; s < S; ++s) h[s * D + c] = o[s] / std::sqrt(ss / S + eps);
    }
    for (int s = 0; s < S; ++s) {                       // channel SwiGLU, add, RMSNorm over channels
        const double* row = &h[s * D];
        for (int j = 0; j < Hc; ++j) {
            double g = 0, u = 0;
            for (int c = 0; c < D; ++c) { g += cgu[j * D + c] * row[c]; u += cgu[(Hc + j) * D + c] * row[c]; }
            a[j] = silu(g) * u;
        }
        double ss = 0;
        for (int c = 0; c < D; ++c) {
            o[c] = row[c];
            for (int j = 0; j < Hc; ++j) o[c] += cd[c * Hc + j] * a[j];
            ss += o[c] * o[c];
        }
        for (int c = 0; c < D; ++c) x[s * D + c] = o[c] / std::sqrt(ss / D + eps);
    }
}

// One case: the kernel (float32) against the float64 recursion; prints the largest error and the plan.
void run_case(const char* name, int N, int S, int D, double expansion, int steps, int L, bool block_mode,
              long long smem_limit, int sms, bool force_stream, int max_cluster = 1) {
    const int Ht = std::max(1, (int)std::lround(expansion * S * 2 / 3));
    const int Hc = std::max(1, (int)std::lround(expansion * D * 2 / 3));
    const Dims d = make_dims(S, D, Ht, Hc);
    const double eps = 1e-5;
    std::mt19937 gen(S * 1000 + D);
    std::normal_distribution<double> nd(0, 1);
    auto randn = [&](int n, double scale) { std::vector<double> v(n); for (auto& e : v) e = nd(gen) * scale; return v; };
    const auto tgu = randn(2 * Ht * S, 1 / std::sqrt(S)), td = randn(S * Ht, 1 / std::sqrt(Ht));
    const auto cgu = randn(2 * Hc * D, 1 / std::sqrt(D)), cd = randn(D * Hc, 1 / std::sqrt(Hc));
    // rtm_fused.cpp's pack_weights: channel weights transposed and zero-padded.
    std::vector<float> ktgu(tgu.begin(), tgu.end()), ktd(td.begin(), td.end());
    std::vector<float> kcgu(D * 2 * d.Hcp, 0.f), kcd(Hc * d.Dp, 0.f);
    for (int j = 0; j < Hc; ++j)
        for (int c = 0; c < D; ++c) {
            kcgu[c * 2 * d.Hcp + j] = (float)cgu[j * D + c];
            kcgu[c * 2 * d.Hcp + d.Hcp + j] = (float)cgu[(Hc + j) * D + c];
            kcd[j * d.Dp + c] = (float)cd[c * Hc + j];
        }
    const long long n = (long long)N * S * D;
    const auto zH = randn(n, 1), zL = randn(n, 1), z0 = randn(n, 1);
    std::vector<float> fH(zH.begin(), zH.end()), fL(zL.begin(), zL.end()), f0(z0.begin(), z0.end());
    std::vector<float> oH(n, std::nanf("")), oL(n, std::nanf(""));

    Plan p = choose_plan<gpu::kRowTile>(N, d, smem_limit, sms, sizeof(float), max_cluster);
    while (force_stream && p.nb > 0 && p.weights_in_smem)       // less shared memory until the weights stream
        p = plan_gpu<gpu::kRowTile>(N, d, p.smem_bytes - 4, sms, sizeof(float));
    if (p.nb == 0 || p.weights_in_smem == force_stream || (max_cluster > 1) != (p.cluster > 1)) {
        std::printf("%s BADPLAN\n", name);
        return;
    }
    KernelArgs<float> a{};
    a.zH = block_mode ? nullptr : fH.data(); a.zL = fL.data(); a.z0 = f0.data();
    a.oH = block_mode ? nullptr : oH.data(); a.oL = oL.data();
    a.w = Weights<float>{ktgu.data(), ktd.data(), kcgu.data(), kcd.data()};
    a.d = d; a.N = N; a.nb = p.nb; a.rows = p.rows; a.ks_up = p.ks_up; a.ks_down = p.ks_down;
    a.partial_elems = p.partial_elems; a.steps = steps; a.L = L; a.block_mode = block_mode; a.eps = (float)eps;
    const long long tiles = ceil_div(N, p.nb);
    const int grid = (int)std::min<long long>(tiles, sms / p.cluster) * p.cluster;
    if (p.cluster == 4) launch<true, 4>(grid, p.smem_bytes, a);
    else if (p.cluster == 2) launch<true, 2>(grid, p.smem_bytes, a);
    else if (p.weights_in_smem) launch<true, 1>(grid, p.smem_bytes, a);
    else launch<false, 1>(grid, p.smem_bytes, a);

    double err = 0;
    const int sample = S * D;
    for (int i = 0; i < N; ++i) {
        std::vector<double> h(zH.begin() + i * sample, zH.begin() + (i + 1) * sample);
        std::vector<double> l(zL.begin() + i * sample, zL.begin() + (i + 1) * sample);
        std::vector<double> z(z0.begin() + i * sample, z0.begin() + (i + 1) * sample), inj(sample);
        if (block_mode) {
            reference_block(l, z, S, D, Ht, Hc, tgu, td, cgu, cd, eps);
        } else {
            for (int st = 0; st < steps; ++st) {
                for (int k = 0; k < L; ++k) {
                    for (int e = 0; e < sample; ++e) inj[e] = h[e] + z[e];
                    reference_block(l, inj, S, D, Ht, Hc, tgu, td, cgu, cd, eps);
                }
                reference_block(h, l, S, D, Ht, Hc, tgu, td, cgu, cd, eps);
            }
        }
        for (int e = 0; e < sample; ++e) {
            const double dl = std::fabs(oL[i * sample + e] - l[e]);
            const double dh = block_mode ? 0.0 : std::fabs(oH[i * sample + e] - h[e]);
            err = (dl <= err && dh <= err) ? err : (std::isnan(dl) || std::isnan(dh) ? INFINITY : std::max(dl, dh));
        }
    }
    std::printf("%s err=%.3g nb=%d rows=%d tiles=%lld grid=%d smem_weights=%d ks=%d,%d cluster=%d\n", name, err, p.nb,
                p.rows, tiles, grid / p.cluster, (int)p.weights_in_smem, p.ks_up, p.ks_down, p.cluster);
    std::fflush(stdout);
}

int main() {
    const long long H100 = 232448;
    //        name               N   S    D   exp  steps L block  smem  sms stream
    run_case("4x128_batch1",      1,  4, 128, 4.0, 2, 1, false, H100, 132, true);   // split k, streamed
    run_case("8x64_batch1",       1,  8,  64, 4.0, 2, 1, false, H100, 132, false);  // split k, in smem
    run_case("8x64_tiles",       37,  8,  64, 4.0, 1, 2, false, H100,   3, false);  // 4 tiles/block, partial tile
    run_case("8x64_tiles_stream",37,  8,  64, 4.0, 1, 1, false, H100,   3, true);
    run_case("1x7",               9,  1,   7, 4.0, 2, 1, false, H100,   2, false);  // S=1, D=7
    run_case("1x7_stream",        5,  1,   7, 3.0, 1, 1, false, H100,   2, true);
    run_case("3x13",             11,  3,  13, 2.0, 2, 2, false, H100,   2, false);
    run_case("5x33_stream",       9,  5,  33, 3.0, 1, 1, false, H100,   2, true);
    run_case("16x8",              5, 16,   8, 4.0, 2, 1, false, H100,   2, false);  // S=16
    run_case("16x256",            3, 16, 256, 4.0, 1, 1, false, H100,   2, true);   // D=256: streamed
    run_case("2x40_block",        7,  2,  40, 4.0, 1, 1, true,  H100,   2, false);  // one block call
    run_case("4x128_block",       2,  4, 128, 4.0, 1, 1, true,  H100, 132, true);
    // sm_90 clusters: the channel weights split over 4 (or 2) CTAs' shared memory, sums through their peers'.
    run_case("4x128_cluster4",    1,  4, 128, 4.0, 2, 1, false, H100, 132, false, 4);
    run_case("4x128_cluster4_tiles", 19, 4, 128, 4.0, 1, 1, false, H100, 8, false, 4);   // 2 clusters, 5 tiles
    run_case("5x33_cluster2",     6,  5,  33, 4.0, 2, 1, false, 48 * 1024, 4, false, 4);
    return 0;
}
'''

CASES = 15

def compiler():
    return shutil.which(os.environ.get('CXX', 'c++')) or shutil.which('g++')

@pytest.mark.skipif(compiler() is None, reason='no host C++ compiler')
def test_cuda_kernel_body_on_cpu_threads_matches_float64_formula(tmp_path):
    (tmp_path / 'cuda_emulation.h').write_text(EMULATION)
    (tmp_path / 'driver.cpp').write_text(DRIVER)
    build = subprocess.run([compiler(), '-O2', '-std=c++20', '-pthread', '-Wall', '-Wno-unknown-pragmas',
                            '-I', str(tmp_path), '-I', KERNEL_DIR, 'driver.cpp', '-o', 'driver'],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    assert 'warning' not in build.stderr, build.stderr
    run = subprocess.run([str(tmp_path / 'driver')], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == CASES, run.stdout
    seen = {'smem_weights=0': 0, 'smem_weights=1': 0, 'split': 0, 'unsplit': 0, 'multi_tile': 0, 'cluster=2': 0,
            'cluster=4': 0}
    for line in lines:
        fields = dict(f.split('=') for f in line.split()[1:])
        assert float(fields['err']) < 2e-4, line        # float32 kernel vs float64 truth, after up to 6 block calls
        seen['smem_weights=' + fields['smem_weights']] += 1
        seen['split' if fields['ks'] != '1,1' else 'unsplit'] += 1
        seen['multi_tile'] += int(fields['tiles']) > int(fields['grid'])
        seen['cluster=' + fields['cluster']] = seen.get('cluster=' + fields['cluster'], 0) + 1
    assert all(seen.values()), (seen, run.stdout)       # every path of the kernel was taken

// The CUDA kernel of the fused RTM op: one launch runs f, or a whole no-grad recursion, for the batch.
// Persistent-RNN style: each block loads the weights into shared memory once (the channel weights too when
// they fit, else they stream from L2), then loops over tiles of samples whose carries stay in shared memory
// for all steps. The arithmetic is rtm_fused.h's, shared with the CPU kernel. No torch and no CUDA header
// here: this header compiles alone with nvcc (tests/test_fused_nvcc.py: registers, spills, no generic
// loads) and with g++ under tests/cuda_emulation.h (tests/test_fused_kernel_emulation.py runs this very body
// on CPU threads).
//
// Resource reports (nvcc 13.0, -O3, ptxas --resource-usage; tests/test_fused_nvcc.py keeps them free of spills
// and stack, and the PTX free of generic loads and stores):
//                                                                   sm_80       sm_90
//   rtm_kernel<float, true, 1>  (channel weights in smem)           123 regs    127 regs
//   rtm_kernel<float, false, 1> (channel weights streamed)          117 regs    117 regs
//   rtm_kernel<float, true, 2>  (split over a cluster of 2; sm_90)  128 regs    120 regs
//   rtm_kernel<float, true, 4>  (split over a cluster of 4; sm_90)  111 regs    120 regs
// 0 bytes stack, 0 spill stores/loads. __launch_bounds__(256, 2) allows 128 registers, so that two 256-thread
// blocks fit an SM's 64K registers. The k loops are unrolled by 2 (RTM_UNROLL_K): unrolled by 4, the streamed
// variant spilled 16 bytes on sm_80. Shared memory is all dynamic (smem_layout in rtm_fused.h): the tile's
// carries, the hidden layer, the split-k partial sums, the token weights, and the channel weights (all of
// them, or a cluster CTA's slice) when they fit. The 4 x 128 mapper at batch 4096 on an H100: 8-sample tiles,
// 224 KB per CTA in clusters of 4 (131 KB of it weights), 33 clusters. PTX (sm_90): ld.shared,
// ld.shared::cluster (the peers' partial sums), ld.global.nc, st.shared and st.global only; no generic ld/st.
// The earlier kernel (one variant, weights picked at run time) used generic loads for the channel weights.

#pragma once

#include "rtm_fused.h"

// The kernel's dynamic shared memory (the CPU emulation gives each emulated block its own).
#if !defined(RTM_DYNAMIC_SMEM)
#define RTM_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#endif

namespace rtm {

// Thread-block clusters (sm_90), in PTX: this CTA's rank in its cluster, the cluster's index and count, a
// barrier over the cluster, and a load from a peer CTA's shared memory (distributed shared memory: mapa +
// ld.shared::cluster). Never called below sm_90: the host launches cluster kernels on sm_90 only.
#if !defined(RTM_CUDA_EMULATION)
__device__ __forceinline__ unsigned cluster_sreg(int which) {
    unsigned v = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (which == 0) asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(v));
    else if (which == 1) asm volatile("mov.u32 %0, %%clusterid.x;" : "=r"(v));
    else asm volatile("mov.u32 %0, %%nclusterid.x;" : "=r"(v));
#endif
    return v;
}
__device__ __forceinline__ int rtm_cluster_rank() { return static_cast<int>(cluster_sreg(0)); }
__device__ __forceinline__ long long rtm_cluster_id() { return cluster_sreg(1); }
__device__ __forceinline__ long long rtm_cluster_count() { return cluster_sreg(2); }
__device__ __forceinline__ void rtm_cluster_barrier() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ float rtm_load_peer(const float* p, int rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const unsigned local = static_cast<unsigned>(__cvta_generic_to_shared(p));
    unsigned remote;
    float v;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local), "r"(rank));
    asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(remote) : "memory");
    return v;
#else
    return *p;
#endif
}
#endif

// The GPU schedule: all threads of a block share a tile; adjacent threads take adjacent columns.
// kSmemW: the channel weights are in shared memory (ld.shared), else they stream from global memory through
// the read-only cache (ld.global.nc). A template parameter, so that no load is a generic one.
// kCluster > 1 (sm_90): kCluster CTAs share each tile, each holding 1/kCluster of the channel weights.
template <bool kSmemW, int kCluster_ = 1>
struct GpuPolicy {
    static constexpr int kCluster = kCluster_;
    static constexpr int DW = 1;                // token mix: one (sample, channel) column per thread
    static constexpr int R = gpu::kRowTile;     // channel mix: rows per register tile
    static constexpr int J = gpu::kColTile;     // channel mix: gate/up columns per register tile
    static constexpr int JD = gpu::kColTile;    // channel mix: down columns per register tile
    static constexpr bool kVectorCols = false;
    static constexpr bool kLdgWeights = !kSmemW;

    __host__ __device__ static void sync() {
#if defined(__CUDA_ARCH__)
        __syncthreads();
#endif
    }
    __host__ __device__ static void cluster_sync() {
#if defined(__CUDA_ARCH__)
        if (kCluster > 1) rtm_cluster_barrier();
#endif
    }
    // p: in this CTA's shared memory; the same offset in CTA `rank` of the cluster.
    template <typename T> __host__ __device__ static T load_peer(const T* p, int rank) {
#if defined(__CUDA_ARCH__)
        if (kCluster > 1) return rtm_load_peer(p, rank);
#endif
        return *p;
    }

    // RMSNorm over each row's D channels: a warp per row, the sum of squares by butterfly shuffles.
    template <typename T>
    __host__ __device__ static void row_norm(T* x, int rows, int ld, const Dims& d, T eps, int tid, int nt) {
#if defined(__CUDA_ARCH__)
        const int lane = tid & 31;
        for (int r = tid >> 5; r < rows; r += nt >> 5) {
            T* row = x + r * ld;
            T sum_sq = T(0);
            for (int c = lane; c < d.D; c += 32) sum_sq += row[c] * row[c];
            for (int off = 16; off > 0; off >>= 1) sum_sq += __shfl_xor_sync(0xffffffffu, sum_sq, off);
            const T scale = rms_scale(sum_sq, d.D, eps);
            for (int c = lane; c < d.D; c += 32) row[c] *= scale;
        }
#endif
    }
};
static_assert(kPad % gpu::kColTile == 0, "the zero padding must cover whole tiles");
static_assert(gpu::kThreads % 32 == 0, "row_norm uses whole warps");

template <typename T> struct KernelArgs {
    const T* zH; const T* zL; const T* z0;      // [N, S, D]; block mode: x in zL, inj in z0
    T* oH; T* oL;
    Weights<T> w;                               // packed, in global memory
    Dims d;
    long long N;
    int nb, rows;                               // samples and padded rows per tile (the plan)
    int ks_up, ks_down;                         // k parts of the channel GEMMs (the plan)
    long long partial_elems;                    // their buffer
    int steps, L;
    int block_mode;
    T eps;
};

// Two blocks per SM: ptxas then allows up to 128 registers (left to itself it caps at 80 and spills).
// kCluster > 1: launched in clusters of kCluster CTAs (sm_90); CTA r holds hidden units [r*Hs, (r+1)*Hs) of
// the channel mix (cluster_dims), the cluster's CTAs take the same tiles, and rank 0 stores them.
template <typename T, bool kSmemW, int kCluster = 1>
__global__ void __launch_bounds__(gpu::kThreads, 2) rtm_kernel(const KernelArgs<T> a) {
    static_assert(kCluster == 1 || kSmemW, "a cluster holds the channel weights in shared memory");
    using P = GpuPolicy<kSmemW, kCluster>;
    RTM_DYNAMIC_SMEM(smem_raw);
    T* sm = reinterpret_cast<T*>(smem_raw);
    const Dims d = cluster_dims(a.d, kCluster);
    const int rank = kCluster > 1 ? rtm_cluster_rank() : 0;
    const SmemLayout lay = smem_layout(d, a.rows, kSmemW, a.partial_elems);
    const int tid = threadIdx.x, nt = blockDim.x;
    const T* RTM_RESTRICT gw_tgu = a.w.tgu;
    const T* RTM_RESTRICT gw_td = a.w.td;

    for (int i = tid; i < 2 * d.Ht * d.S; i += nt) sm[lay.tgu + i] = __ldg(gw_tgu + i);
    for (int i = tid; i < d.S * d.Ht; i += nt) sm[lay.td + i] = __ldg(gw_td + i);
    Weights<T> w{sm + lay.tgu, sm + lay.td, a.w.cgu, a.w.cd};
    if (kSmemW) {                               // this CTA's hidden units: all of them unless in a cluster
        const T* RTM_RESTRICT gw_cgu = a.w.cgu;
        const T* RTM_RESTRICT gw_cd = a.w.cd;
        const int Hs = d.Hcp, h0 = rank * Hs;
        for (long long i = tid; i < 2LL * d.D * Hs; i += nt) {
            const int k = static_cast<int>(i / (2 * Hs)), j = static_cast<int>(i - static_cast<long long>(k) * 2 * Hs);
            const int col = j < Hs ? h0 + j : a.d.Hcp + h0 + (j - Hs);  // gate columns, then up columns
            sm[lay.cgu + i] = __ldg(gw_cgu + static_cast<long long>(k) * 2 * a.d.Hcp + col);
        }
        for (long long i = tid; i < static_cast<long long>(d.Hc) * d.Dp; i += nt) {
            const int j = static_cast<int>(i / d.Dp);                   // zero rows past the last unit
            sm[lay.cd + i] = h0 + j < a.d.Hc ? __ldg(gw_cd + static_cast<long long>(h0) * d.Dp + i) : T(0);
        }
        w.cgu = sm + lay.cgu;
        w.cd = sm + lay.cd;
    }
    T* zH = sm + lay.zH;
    T* zL = sm + lay.zL;
    T* z0 = sm + lay.z0;
    const T* RTM_RESTRICT in_H = a.zH;
    const T* RTM_RESTRICT in_L = a.zL;
    const T* RTM_RESTRICT in_0 = a.z0;
    T* RTM_RESTRICT out_H = a.oH;
    T* RTM_RESTRICT out_L = a.oL;

    const long long sample = static_cast<long long>(d.S) * d.D;
    const long long tiles = ceil_div(a.N, a.nb);
    const long long unit = kCluster > 1 ? rtm_cluster_id() : static_cast<long long>(blockIdx.x);
    const long long units = kCluster > 1 ? rtm_cluster_count() : static_cast<long long>(gridDim.x);
    for (long long tile = unit; tile < tiles; tile += units) {
        const long long n0 = tile * a.nb;
        const int nbv = static_cast<int>(a.N - n0 < a.nb ? a.N - n0 : a.nb);
        const int valid = nbv * d.S;
        __syncthreads();                        // the previous tile is stored (and, first, the weights staged)
        for (int i = tid; i < a.rows * lay.ld; i += nt) {      // zeros beyond the data: rows and columns
            const int r = i / lay.ld, c = i - r * lay.ld;
            const bool in = r < valid && c < d.D;
            const long long g = n0 * sample + static_cast<long long>(r) * d.D + c;
            zL[i] = in ? __ldg(in_L + g) : T(0);
            z0[i] = in ? __ldg(in_0 + g) : T(0);
            if (!a.block_mode) zH[i] = in ? __ldg(in_H + g) : T(0);
        }
        __syncthreads();
        Tile<T> t{nbv, round_up(valid, P::R), lay.ld, lay.ldh, sm + lay.work, sm + lay.hidden};
        t.partial = sm + lay.partial;
        t.ks_up = a.ks_up;
        t.ks_down = a.ks_down;
        if (a.block_mode)
            mixer_block<T, P>(zL, z0, nullptr, d, w, t, a.eps, tid, nt);
        else
            recursion<T, P>(zH, zL, z0, a.steps, a.L, d, w, t, a.eps, tid, nt);
        for (int i = tid; rank == 0 && i < valid * d.D; i += nt) {
            const int r = i / d.D, c = i - r * d.D;
            out_L[n0 * sample + i] = zL[r * lay.ld + c];
            if (!a.block_mode) out_H[n0 * sample + i] = zH[r * lay.ld + c];
        }
    }
}

}  // namespace rtm

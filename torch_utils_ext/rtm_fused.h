// The RTM mixer block f and the recursion, written once for the CPU kernel (rtm_fused.cpp) and the CUDA
// kernel (rtm_fused_kernel.cuh). No torch here: the CUDA kernel compiles from this header alone.
//
// f(x, inj), exactly rtm_plugin/rtm.py's MixerBlock:
//     h = x + inj
//     h = RMSNorm_over_tokens(h + SwiGLU_tokens(h))      (TRM's mlp_t: mixes and normalises while transposed)
//     h = RMSNorm_over_channels(h + SwiGLU_channels(h))
// SwiGLU(v) = down(silu(gate v) * (up v)); RMSNorm has no gain, eps given. All weights are the effective
// (equalised-lr scaled) ones.
//
// Work happens on a tile of samples held in scratch memory (shared memory on the GPU, a thread's buffer on
// the CPU). A policy P says how a tile's work is spread over the threads that own it and how they
// synchronise; the arithmetic below is the same for both.

#pragma once

#include <cstring>
#include <math.h>
#include <type_traits>
#include <utility>

#if defined(__CUDACC__)
#define RTM_HD __host__ __device__ __forceinline__
#define RTM_PIECE __host__ __device__ __forceinline__
#define RTM_UNROLL _Pragma("unroll")
#define RTM_UNROLL_ROWS _Pragma("unroll")
#define RTM_UNROLL_K _Pragma("unroll 2")        // 2 k steps: their loads issue ahead of the FMAs (4 spills on sm_80)
#define RTM_RESTRICT __restrict__
#else
#define RTM_HD inline
#define RTM_PIECE __attribute__((noinline))     // g++ keeps a piece's registers best when compiled alone
#define RTM_UNROLL      // g++ vectorises these fixed-length loops itself; an unroll pragma stops it
#define RTM_UNROLL_ROWS _Pragma("GCC unroll 8")     // keeps a register tile's rows in registers
#define RTM_UNROLL_K
#define RTM_RESTRICT __restrict__
#endif

namespace rtm {

//----------------------------------------------------------------------------
// Shapes and memory layouts.

constexpr int kPad = 16;        // D and Hc are zero-padded to this, so the GEMM tiles need no bounds checks

RTM_HD int round_up(int x, int m) { return (x + m - 1) / m * m; }
RTM_HD long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

struct Dims {
    int S, D, Ht, Hc;           // tokens, token width, token-mix and channel-mix SwiGLU hidden widths
    int Dp, Hcp;                // D and Hc rounded up to kPad
};

RTM_HD Dims make_dims(int S, int D, int Ht, int Hc) {
    return Dims{S, D, Ht, Hc, round_up(D, kPad), round_up(Hc, kPad)};
}

// Weights in kernel layout (packed by rtm_fused.cpp from torch's [out, in] effective weights):
//   tgu [2Ht][S]    token gate rows, then up rows (torch layout)
//   td  [S][Ht]     token down (torch layout)
//   cgu [D][2Hcp]   channel gate^T in columns [0, Hc), up^T in [Hcp, Hcp + Hc), zeros elsewhere
//   cd  [Hc][Dp]    channel down^T, zeros in columns [D, Dp)
template <typename T> struct Weights { const T* tgu; const T* td; const T* cgu; const T* cd; };

// Scratch for one tile of nb samples: rows = nb*S token rows, rounded up to the policy's row tile.
// work: [rows][ld] (h before the token mix), hidden: [rows][ldh] (the channel SwiGLU's silu(gate)*up).
// Rows and columns beyond the data are zero and stay zero through f.
// Split k (GPU, small tiles): the channel GEMMs' k range is cut into ks_up / ks_down parts, so that more
// threads than output tiles have work; each part writes raw sums to `partial` ([ks][rows][2*Hcp] or
// [ks][rows][Dp]) and a second pass adds them up. ks = 1: no split, `partial` unused.
template <typename T> struct Tile {
    int nb, rows, ld, ldh;
    T* work;
    T* hidden;
    T* partial = nullptr;
    int ks_up = 1, ks_down = 1;
};

//----------------------------------------------------------------------------
// Lanes<T, N>: N adjacent values handled together. On the host a GCC vector, so that g++ emits one vector
// instruction per operation (it vectorises the same loops over plain arrays poorly); on the GPU an array
// that lives in registers (N = 1 for the token mix). The math below is written once against these few
// operations.

#if defined(__CUDACC__)
template <typename T, int N> struct Lanes {
    T v[N];
    RTM_HD T operator[](int j) const { return v[j]; }
    RTM_HD T& operator[](int j) { return v[j]; }
};
template <typename T, int N> RTM_HD void lanes_zero(Lanes<T, N>& a) { RTM_UNROLL for (int j = 0; j < N; ++j) a[j] = T(0); }
template <typename T, int N> RTM_HD void lanes_load(Lanes<T, N>& a, const T* p, int cs) {
    RTM_UNROLL for (int j = 0; j < N; ++j) a[j] = p[j * cs];
}
// Weights: read-only for the whole launch. Ldg: they stream from global memory, through the read-only path.
template <bool Ldg, typename T, int N> RTM_HD void lanes_load_w(Lanes<T, N>& a, const T* RTM_RESTRICT p, int cs) {
#if defined(__CUDA_ARCH__)
    if (Ldg) {
        RTM_UNROLL for (int j = 0; j < N; ++j) a[j] = __ldg(p + j * cs);
    } else
#endif
    {
        RTM_UNROLL for (int j = 0; j < N; ++j) a[j] = p[j * cs];
    }
}
template <typename T, int N> RTM_HD void lanes_store(T* p, const Lanes<T, N>& a, int cs) {
    RTM_UNROLL for (int j = 0; j < N; ++j) p[j * cs] = a[j];
}
template <typename T, int N> RTM_HD void lanes_fma(Lanes<T, N>& acc, T s, const Lanes<T, N>& w) {
    RTM_UNROLL for (int j = 0; j < N; ++j) acc[j] += s * w[j];
}
template <typename T, int N> RTM_HD void lanes_add_mul(Lanes<T, N>& acc, const Lanes<T, N>& a, const Lanes<T, N>& b) {
    RTM_UNROLL for (int j = 0; j < N; ++j) acc[j] += a[j] * b[j];
}
template <typename T, int N> RTM_HD void lanes_mul(Lanes<T, N>& a, const Lanes<T, N>& b) {
    RTM_UNROLL for (int j = 0; j < N; ++j) a[j] *= b[j];
}
template <typename T, int N> RTM_HD void lanes_add(Lanes<T, N>& a, const Lanes<T, N>& b) {
    RTM_UNROLL for (int j = 0; j < N; ++j) a[j] += b[j];
}
#else
template <typename T, int N> struct LanesOf { typedef T type __attribute__((vector_size(N * sizeof(T)))); };
template <typename T, int N> using Lanes = typename LanesOf<T, N>::type;
template <typename V> inline void lanes_zero(V& a) { a = V{}; }
template <typename V, typename T> inline void lanes_load(V& a, const T* p, int cs) {
    if (cs == 1) { std::memcpy(&a, p, sizeof(V)); return; }
    for (int j = 0; j < static_cast<int>(sizeof(V) / sizeof(T)); ++j) a[j] = p[j * cs];
}
template <bool Ldg, typename V, typename T> inline void lanes_load_w(V& a, const T* p, int cs) { lanes_load(a, p, cs); }
template <typename V, typename T> inline void lanes_store(T* p, const V& a, int cs) {
    if (cs == 1) { std::memcpy(p, &a, sizeof(V)); return; }
    for (int j = 0; j < static_cast<int>(sizeof(V) / sizeof(T)); ++j) p[j * cs] = a[j];
}
template <typename V, typename T> inline void lanes_fma(V& acc, T s, const V& w) { acc += s * w; }
template <typename V> inline void lanes_add_mul(V& acc, const V& a, const V& b) { acc += a * b; }
template <typename V> inline void lanes_mul(V& a, const V& b) { a *= b; }
template <typename V> inline void lanes_add(V& a, const V& b) { a += b; }
#endif

//----------------------------------------------------------------------------
// Elementwise math.

template <typename T> RTM_HD T sqrt_(T x) { return sqrt(x); }
template <> RTM_HD float sqrt_(float x) { return sqrtf(x); }

template <typename V> RTM_HD V splat(float c) { return V{} + c; }

// 2^n from t = n + 1.5*2^23 (the rounding trick below), for integer n in [-126, 127].
RTM_HD float pow2_of_rounded(float t) {
#if defined(__CUDA_ARCH__)
    return __int_as_float((__float_as_int(t) - 0x4B400000 + 127) << 23);
#else
    int bits;
    std::memcpy(&bits, &t, sizeof(bits));
    bits = (bits - 0x4B400000 + 127) << 23;
    float r;
    std::memcpy(&r, &bits, sizeof(r));
    return r;
#endif
}
#if !defined(__CUDACC__)
template <typename V> inline V pow2_of_rounded(V t) {              // host float vectors
    typedef int Bits __attribute__((vector_size(sizeof(V))));
    Bits bits;
    std::memcpy(&bits, &t, sizeof(bits));
    bits = (bits - 0x4B400000 + 127) << 23;
    std::memcpy(&t, &bits, sizeof(t));
    return t;
}
#endif

// Cephes' expf (about 1 ulp), in plain arithmetic for scalars and host vectors alike. Selects and the
// 1.5*2^23 rounding trick instead of fminf/floorf: g++ does not inline those without -ffast-math, and a
// libm call, or a nested ?: (which becomes a branch), stops the loops around it from vectorising.
template <typename V> RTM_HD V exp_f32(V x) {
    x = x < splat<V>(-87.0f) ? splat<V>(-87.0f) : x;       // keeps 2^n a normal float
    x = x > splat<V>(88.0f) ? splat<V>(88.0f) : x;
    const V t = x * 1.44269504088896341f + 12582912.0f;      // n + 1.5*2^23, n = round(x / ln 2)
    const V n = t - 12582912.0f;
    V r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    V p = splat<V>(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return p * pow2_of_rounded(t);
}

RTM_HD float exp_(float x) { return exp_f32(x); }
RTM_HD double exp_(double x) { return exp(x); }
#if !defined(__CUDACC__)
template <typename V, typename E = typename std::remove_reference<decltype(std::declval<V>()[0])>::type>
inline V exp_(V x) {                                                // host vectors
    if constexpr (std::is_same<E, float>::value) {
        return exp_f32(x);
    } else {
        for (int j = 0; j < static_cast<int>(sizeof(V) / sizeof(E)); ++j) x[j] = exp(x[j]);
        return x;
    }
}
#endif

template <typename V> RTM_HD V silu(V g) { return g / (splat<V>(1.0f) + exp_(-g)); }

// SwiGLU's middle: silu(gate) * up, lane by lane.
#if defined(__CUDACC__)
template <typename T, int N> RTM_HD Lanes<T, N> swiglu(const Lanes<T, N>& g, const Lanes<T, N>& u) {
    Lanes<T, N> a;
    RTM_UNROLL for (int j = 0; j < N; ++j) a[j] = silu(g[j]) * u[j];
    return a;
}
#else
template <typename V> inline V swiglu(const V& g, const V& u) { return silu(g) * u; }
#endif

// RMSNorm's factor from a sum of squares over n values.
template <typename T> RTM_HD T rms_scale(T sum_sq, int n, T eps) { return T(1) / sqrt_(sum_sq / T(n) + eps); }

//----------------------------------------------------------------------------
// The pieces of f. Each works on a small piece of a tile that one thread owns.

// Token mix of one sample on DW adjacent channels: the SwiGLU over the S tokens, the residual and the
// RMSNorm over tokens. h and out point at the sample's first row and the first of the DW channels; rows are
// ld apart.
template <typename T, int DW>
RTM_PIECE void token_mix(const T* h, T* out, int ld, int S, int Ht, const T* tgu, const T* td, T eps) {
    Lanes<T, DW> g, u, v;
    for (int s = 0; s < S; ++s) {
        lanes_load(v, h + s * ld, 1);
        lanes_store(out + s * ld, v, 1);
    }
    for (int j = 0; j < Ht; ++j) {
        lanes_zero(g);
        lanes_zero(u);
        for (int s = 0; s < S; ++s) {
            lanes_load(v, h + s * ld, 1);
            lanes_fma(g, tgu[j * S + s], v);
            lanes_fma(u, tgu[(Ht + j) * S + s], v);
        }
        g = swiglu(g, u);
        for (int s = 0; s < S; ++s) {
            lanes_load(v, out + s * ld, 1);
            lanes_fma(v, td[s * Ht + j], g);
            lanes_store(out + s * ld, v, 1);
        }
    }
    lanes_zero(u);                                          // sum of squares over tokens, then the factor
    for (int s = 0; s < S; ++s) {
        lanes_load(v, out + s * ld, 1);
        lanes_add_mul(u, v, v);
    }
    for (int c = 0; c < DW; ++c) u[c] = rms_scale(T(u[c]), S, eps);
    for (int s = 0; s < S; ++s) {
        lanes_load(v, out + s * ld, 1);
        lanes_mul(v, u);
        lanes_store(out + s * ld, v, 1);
    }
}

// Channel SwiGLU, first half, on an R x J register tile: out[r][c] = silu(x_r . gate_c) * (x_r . up_c)
// for rows r0.. r0+R-1 and columns c0 + j*cs (cs = 1 when Adjacent, known at compile time), the dot
// products over k in [k0, k1) (all of D unless k is split). raw: store the two sums, gate at out[r][c] and
// up at out[r][c + hoff], for a later pass to add up and finish.
template <typename T, int R, int J, bool Adjacent, bool Ldg>
RTM_PIECE void channel_up_tile(const T* RTM_RESTRICT x, int ldx, int k0, int k1, const T* RTM_RESTRICT cgu,
                               int hoff, T* RTM_RESTRICT out, int ldo, int r0, int c0, int cs, bool raw) {
    if (Adjacent) cs = 1;
    Lanes<T, J> g[R], u[R], wg, wu;
    RTM_UNROLL_ROWS for (int r = 0; r < R; ++r) { lanes_zero(g[r]); lanes_zero(u[r]); }
    const int ldw = 2 * hoff;
    RTM_UNROLL_K for (int k = k0; k < k1; ++k) {
        const T* w = cgu + static_cast<long long>(k) * ldw + c0;
        lanes_load_w<Ldg>(wg, w, cs);
        lanes_load_w<Ldg>(wu, w + hoff, cs);
        RTM_UNROLL_ROWS for (int r = 0; r < R; ++r) {
            const T v = x[(r0 + r) * ldx + k];
            lanes_fma(g[r], v, wg);
            lanes_fma(u[r], v, wu);
        }
    }
    if (raw) {
        RTM_UNROLL_ROWS for (int r = 0; r < R; ++r) {
            lanes_store(out + (r0 + r) * ldo + c0, g[r], cs);
            lanes_store(out + (r0 + r) * ldo + c0 + hoff, u[r], cs);
        }
        return;
    }
    RTM_UNROLL_ROWS for (int r = 0; r < R; ++r) lanes_store(out + (r0 + r) * ldo + c0, swiglu(g[r], u[r]), cs);
}

// Channel SwiGLU, second half, plus the residual: x[r][c] += hidden_r . down_c on an R x J tile, the dot
// products over k in [k0, k1) (all of Hc unless k is split). raw: out[r][c] = the sum instead.
template <typename T, int R, int J, bool Adjacent, bool Ldg>
RTM_PIECE void channel_down_tile(const T* RTM_RESTRICT hidden, int ldh, int k0, int k1, const T* RTM_RESTRICT cd,
                                 int ldw, T* RTM_RESTRICT x, int ldx, int r0, int c0, int cs, T* RTM_RESTRICT out,
                                 int ldo, bool raw) {
    if (Adjacent) cs = 1;
    Lanes<T, J> acc[R], wd;
    RTM_UNROLL_ROWS for (int r = 0; r < R; ++r) lanes_zero(acc[r]);
    RTM_UNROLL_K for (int k = k0; k < k1; ++k) {
        lanes_load_w<Ldg>(wd, cd + static_cast<long long>(k) * ldw + c0, cs);
        RTM_UNROLL_ROWS for (int r = 0; r < R; ++r) lanes_fma(acc[r], hidden[(r0 + r) * ldh + k], wd);
    }
    if (raw) {
        RTM_UNROLL_ROWS for (int r = 0; r < R; ++r) lanes_store(out + (r0 + r) * ldo + c0, acc[r], cs);
        return;
    }
    RTM_UNROLL_ROWS for (int r = 0; r < R; ++r) {
        lanes_load(wd, x + (r0 + r) * ldx + c0, cs);
        lanes_add(wd, acc[r]);
        lanes_store(x + (r0 + r) * ldx + c0, wd, cs);
    }
}

// The i-th R x J tile of a (rows x ncol*J) output. P::kVectorCols: a thread's J columns are adjacent and
// tiles walk down the rows first (CPU: the columns vectorise and a weight panel stays in L1). Otherwise the
// columns are ncol apart and tiles walk across first (GPU: adjacent threads read adjacent weights).
template <class P>
RTM_HD void tile_coords(int i, int groups, int ncol, int J, int& r0, int& c0, int& cs) {
    if (P::kVectorCols) {
        r0 = (i % groups) * P::R;
        c0 = (i / groups) * J;
        cs = 1;
    } else {
        r0 = (i / ncol) * P::R;
        c0 = i % ncol;
        cs = ncol;
    }
}

//----------------------------------------------------------------------------
// f and the recursion, for the threads tid = 0..nt-1 that share a tile (nt = 1 on the CPU).

// x <- f(x, inj + inj2) on a tile (inj2 may be null). x, inj, inj2: [rows][ld].
template <typename T, class P>
RTM_HD void mixer_block(T* x, const T* inj, const T* inj2, const Dims& d, const Weights<T>& w,
                        const Tile<T>& t, T eps, int tid, int nt) {
    const int n = t.rows * t.ld;
    if (inj2 == nullptr) {
        for (int i = tid; i < n; i += nt) t.work[i] = x[i] + inj[i];
    } else {
        for (int i = tid; i < n; i += nt) t.work[i] = x[i] + (inj[i] + inj2[i]);
    }
    P::sync();

    const int strips = (d.D + P::DW - 1) / P::DW;              // token mix: (sample, channel strip) items
    for (int i = tid; i < t.nb * strips; i += nt) {
        const int off = (i / strips) * d.S * t.ld + (i % strips) * P::DW;
        token_mix<T, P::DW>(t.work + off, x + off, t.ld, d.S, d.Ht, w.tgu, w.td, eps);
    }
    P::sync();

    const int groups = t.rows / P::R;
    int r0, c0, cs;
    const int up_cols = d.Hcp / P::J;                           // channel SwiGLU into hidden
    const int up_items = groups * up_cols;
    const bool up_split = t.ks_up > 1;
    for (int i = tid; i < up_items * t.ks_up; i += nt) {        // item i: k part i / up_items (0 unless split)
        const int part = i / up_items;
        tile_coords<P>(i - part * up_items, groups, up_cols, P::J, r0, c0, cs);
        channel_up_tile<T, P::R, P::J, P::kVectorCols, P::kLdgWeights>(
            x, t.ld, d.D * part / t.ks_up, d.D * (part + 1) / t.ks_up, w.cgu, d.Hcp,
            up_split ? t.partial + part * t.rows * 2 * d.Hcp : t.hidden, up_split ? 2 * d.Hcp : t.ldh,
            r0, c0, cs, up_split);
    }
    P::sync();
    if (up_split) {                                             // add the k parts, then silu(gate) * up
        for (int i = tid; i < t.rows * d.Hcp; i += nt) {
            const int r = i / d.Hcp, c = i - r * d.Hcp;
            const T* p = t.partial + r * 2 * d.Hcp + c;
            T g = T(0), u = T(0);
            for (int part = 0; part < t.ks_up; ++part, p += t.rows * 2 * d.Hcp) { g += p[0]; u += p[d.Hcp]; }
            t.hidden[r * t.ldh + c] = silu(g) * u;
        }
        P::sync();
    }
    const int down_cols = d.Dp / P::JD;                         // back to D channels, plus the residual
    const int down_items = groups * down_cols;
    // Raw partial sums also when the hidden units are split over a cluster's CTAs (P::kCluster > 1): each
    // CTA then holds the down projection over its own slice only, and the sum runs over all of them.
    const bool down_split = t.ks_down > 1 || P::kCluster > 1;
    for (int i = tid; i < down_items * t.ks_down; i += nt) {
        const int part = i / down_items;
        tile_coords<P>(i - part * down_items, groups, down_cols, P::JD, r0, c0, cs);
        channel_down_tile<T, P::R, P::JD, P::kVectorCols, P::kLdgWeights>(
            t.hidden, t.ldh, d.Hc * part / t.ks_down, d.Hc * (part + 1) / t.ks_down, w.cd, d.Dp, x, t.ld, r0, c0,
            cs, t.partial + part * t.rows * d.Dp, d.Dp, down_split);
    }
    P::sync();
    if (down_split) {                                           // the residual plus the k parts
        P::cluster_sync();                                      // (cluster) every CTA's parts are written
        for (int i = tid; i < t.rows * d.Dp; i += nt) {
            const int r = i / d.Dp, c = i - r * d.Dp;
            T acc = T(0);
            for (int rank = 0; rank < P::kCluster; ++rank) {   // in rank order: every CTA sums alike
                const T* p = t.partial + r * d.Dp + c;
                for (int part = 0; part < t.ks_down; ++part, p += t.rows * d.Dp) acc += P::load_peer(p, rank);
            }
            x[r * t.ld + c] += acc;
        }
        P::cluster_sync();                                      // (cluster) all read before they are rewritten
        P::sync();
    }

    P::template row_norm<T>(x, t.rows, t.ld, d, eps, tid, nt);  // RMSNorm over channels
    P::sync();
}

// `steps` outer steps of the RTM recursion on a tile, as rtm.py's RecursiveTokenMapper.step:
//     repeat L times: z_L = f(z_L, z_H + z0);   then z_H = f(z_H, z_L)
template <typename T, class P>
RTM_HD void recursion(T* zH, T* zL, const T* z0, int steps, int L, const Dims& d, const Weights<T>& w,
                      const Tile<T>& t, T eps, int tid, int nt) {
    for (int h = 0; h < steps; ++h) {
        for (int l = 0; l < L; ++l)
            mixer_block<T, P>(zL, zH, z0, d, w, t, eps, tid, nt);
        mixer_block<T, P>(zH, zL, nullptr, d, w, t, eps, tid, nt);
    }
}

//----------------------------------------------------------------------------
// The GPU launch plan, here so that the CPU build can test the shared-memory check too.

namespace gpu {
constexpr int kThreads = 256;   // threads per block
constexpr int kRowTile = 4;     // rows per register tile (GpuPolicy::R)
constexpr int kColTile = 4;     // columns per register tile (GpuPolicy::J and JD)
constexpr int kMaxRows = 32;    // token rows per tile (samples per tile = kMaxRows / S)
constexpr int kRowPad = 1;      // extra column per row in shared memory: rows R apart fall in different banks
constexpr int kMaxSplit = 8;    // at most this many k parts per channel GEMM
constexpr int kMinSplitK = 16;  // and at least this many k steps per part
}

// Offsets (in elements) of a tile's buffers in dynamic shared memory.
struct SmemLayout { long long zH, zL, z0, work, hidden, partial, tgu, td, cgu, cd, total; int ld, ldh; };

RTM_HD SmemLayout smem_layout(const Dims& d, int rows, bool weights_in_smem, long long partial_elems = 0) {
    SmemLayout s;
    s.ld = d.Dp + gpu::kRowPad;
    s.ldh = d.Hcp + gpu::kRowPad;
    long long off = 0;
    s.zH = off;     off += static_cast<long long>(rows) * s.ld;
    s.zL = off;     off += static_cast<long long>(rows) * s.ld;
    s.z0 = off;     off += static_cast<long long>(rows) * s.ld;
    s.work = off;   off += static_cast<long long>(rows) * s.ld;
    s.hidden = off; off += static_cast<long long>(rows) * s.ldh;
    s.partial = off; off += partial_elems;
    s.tgu = off;    off += 2LL * d.Ht * d.S;
    s.td = off;     off += static_cast<long long>(d.S) * d.Ht;
    s.cgu = s.cd = -1;
    if (weights_in_smem) {
        s.cgu = off; off += 2LL * d.D * d.Hcp;
        s.cd = off;  off += static_cast<long long>(d.Hc) * d.Dp;
    }
    s.total = off;
    return s;
}

// k parts for a GEMM of `items` register tiles over K: enough that the block's threads all have work.
RTM_HD int split_k(int items, int K, int threads) {
    int ks = threads / (items > 0 ? items : 1);
    if (ks > gpu::kMaxSplit) ks = gpu::kMaxSplit;
    if (ks > K / gpu::kMinSplitK) ks = K / gpu::kMinSplitK;
    return ks > 1 ? ks : 1;
}

// A cluster of `cluster` CTAs shares each tile and splits the channel mix's hidden units: CTA r holds the
// gate/up columns and down rows of units [r*Hs, (r+1)*Hs), Hs = Hcp / cluster. Its dims are d with Hc and Hcp
// both Hs (units past Hc have zero weights, so they add zero).
RTM_HD Dims cluster_dims(const Dims& d, int cluster) {
    Dims c = d;
    if (cluster > 1) c.Hc = c.Hcp = d.Hcp / cluster;
    return c;
}

struct Plan {
    int nb, rows;               // samples and padded token rows per tile; nb = 0: no tile fits
    bool weights_in_smem;       // channel weights held in shared memory, else streamed from global/L2
    long long smem_bytes;       // dynamic shared memory per block (for nb = 0: what one sample would need)
    int ks_up, ks_down;         // k parts of the channel GEMMs (1: no split)
    long long partial_elems;    // the split-k buffer
    int cluster = 1;            // CTAs per cluster (> 1: the channel weights split over them, in smem)
};

// Persistent-RNN style: the token weights always live in shared memory; the channel weights too when they
// fit, else they are streamed. Tiles shrink until the carries fit in smem_limit bytes. Small tiles (small
// batches) split the channel GEMMs' k range, so that all warps work: at batch 1 of 4 x 128, the 4-row tile
// has 88 gate/up and 32 down register tiles for 256 threads; split 2 and 8 ways, 176 and 256 threads work.
template <int R>
inline Plan plan_gpu(long long N, const Dims& d0, long long smem_limit, int num_sms, int elem_size, int cluster = 1) {
    const Dims d = cluster_dims(d0, cluster);
    const int units = cluster > 1 ? num_sms / cluster : num_sms;        // what works on tiles side by side
    int nb = gpu::kMaxRows / d.S;
    const long long per_sm = ceil_div(N, units > 0 ? units : 1);         // small batches: one tile per unit
    if (per_sm < nb) nb = static_cast<int>(per_sm);
    if (nb < 1) nb = 1;
    for (; nb >= 1; nb = nb > 1 ? nb / 2 : 0) {
        const int rows = round_up(nb * d.S, R);
        const int groups = rows / R;
        const int ks_up = split_k(groups * (d.Hcp / gpu::kColTile), d.D, gpu::kThreads);
        const int ks_down = split_k(groups * (d.Dp / gpu::kColTile), d.Hc, gpu::kThreads);
        long long partial = cluster > 1 ? static_cast<long long>(rows) * d.Dp : 0;     // the cluster's sum
        if (ks_up > 1 && static_cast<long long>(ks_up) * rows * 2 * d.Hcp > partial)
            partial = static_cast<long long>(ks_up) * rows * 2 * d.Hcp;
        if (ks_down > 1 && static_cast<long long>(ks_down) * rows * d.Dp > partial)
            partial = static_cast<long long>(ks_down) * rows * d.Dp;
        for (int in_smem = 1; in_smem >= (cluster > 1 ? 1 : 0); --in_smem) {
            for (int split = 1; split >= 0; --split) {          // without the split if its buffer does not fit
                const long long need = split ? partial : (cluster > 1 ? static_cast<long long>(rows) * d.Dp : 0);
                const long long bytes = smem_layout(d, rows, in_smem, need).total * elem_size;
                if (bytes <= smem_limit)
                    return Plan{nb, rows, in_smem == 1, bytes, split ? ks_up : 1, split ? ks_down : 1, need, cluster};
            }
        }
    }
    return Plan{0, 0, false, smem_layout(d, round_up(d.S, R), cluster > 1).total * elem_size, 1, 1, 0, cluster};
}

// The plan a launch uses: channel weights in one CTA's shared memory when they fit; else, where clusters
// exist (max_cluster > 1: sm_90), split over a cluster of 2 or 4 CTAs; else streamed from global memory.
template <int R>
inline Plan choose_plan(long long N, const Dims& d, long long smem_limit, int num_sms, int elem_size,
                        int max_cluster) {
    const Plan one = plan_gpu<R>(N, d, smem_limit, num_sms, elem_size);
    if (one.nb == 0 || one.weights_in_smem) return one;
    for (int cluster = 2; cluster <= max_cluster; cluster *= 2) {
        const Plan c = plan_gpu<R>(N, d, smem_limit, num_sms, elem_size, cluster);
        if (c.nb > 0) return c;
    }
    return one;
}

}  // namespace rtm

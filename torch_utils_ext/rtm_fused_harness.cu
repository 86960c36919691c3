// A standalone launcher of the fused RTM kernel, without torch, for compute-sanitizer (racecheck, synccheck,
// memcheck): rtm_plugin/gpu_check.py builds it with nvcc and runs it under each tool. Small shapes, each with
// the launch plan the torch op would use (rtm_fused_cuda.cu), through every path of the kernel: channel
// weights in shared memory, streamed, and (sm_90) split over a cluster; split k and not; several tiles per
// block; a partial last tile.
// Buffers are allocated to their exact sizes so that memcheck sees any access past them. Exit status 0 when
// every output is finite.
//
//     nvcc -O3 -arch=native -I torch_utils_ext torch_utils_ext/rtm_fused_harness.cu -o harness
//     compute-sanitizer --tool racecheck --error-exitcode 1 ./harness

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "rtm_fused_kernel.cuh"

#define CHECK(call) do { cudaError_t e = (call); if (e != cudaSuccess) { \
    std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e)); std::exit(2); } } while (0)

template <typename T> T* upload(const std::vector<T>& h) {
    T* d = nullptr;
    CHECK(cudaMalloc(&d, h.size() * sizeof(T)));
    CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

// One launch; force_stream: plan with less shared memory until the channel weights stream from global.
static bool run_case(int N, int S, int D, int steps, int L, bool force_stream, int sms_cap, bool cluster) {
    int dev = 0, smem_limit = 0, sms = 0, cluster_launch = 0;
    CHECK(cudaGetDevice(&dev));
    CHECK(cudaDeviceGetAttribute(&smem_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    CHECK(cudaDeviceGetAttribute(&cluster_launch, cudaDevAttrClusterLaunch, dev));
    if (cluster && !cluster_launch) { std::printf("no clusters on this GPU: case skipped\n"); return true; }
    if (sms_cap > 0 && sms > sms_cap) sms = sms_cap;        // fewer blocks: several tiles per block
    const int Ht = (int)std::lround(4.0 * S * 2 / 3), Hc = (int)std::lround(4.0 * D * 2 / 3);
    const rtm::Dims d = rtm::make_dims(S, D, Ht, Hc);
    rtm::Plan p = rtm::choose_plan<rtm::gpu::kRowTile>(N, d, smem_limit, sms, sizeof(float), cluster ? 4 : 1);
    while (force_stream && p.nb > 0 && p.weights_in_smem)
        p = rtm::plan_gpu<rtm::gpu::kRowTile>(N, d, p.smem_bytes - 4, sms, sizeof(float));
    if (p.nb == 0) { std::fprintf(stderr, "no plan\n"); return false; }

    std::vector<float> tgu(2 * Ht * S), td(S * Ht), cgu((size_t)D * 2 * d.Hcp, 0.f), cd((size_t)Hc * d.Dp, 0.f);
    unsigned seed = 1;
    auto rnd = [&seed] { seed = seed * 1664525u + 1013904223u; return ((seed >> 8) / 16777216.0f - 0.5f) * 0.5f; };
    for (auto& v : tgu) v = rnd();
    for (auto& v : td) v = rnd();
    for (int k = 0; k < D; ++k)
        for (int c = 0; c < Hc; ++c) { cgu[(size_t)k * 2 * d.Hcp + c] = rnd(); cgu[(size_t)k * 2 * d.Hcp + d.Hcp + c] = rnd(); }
    for (int k = 0; k < Hc; ++k)
        for (int c = 0; c < D; ++c) cd[(size_t)k * d.Dp + c] = rnd();
    std::vector<float> carry((size_t)N * S * D);
    for (auto& v : carry) v = 4 * rnd();

    rtm::KernelArgs<float> a{};
    a.zH = upload(carry); a.zL = upload(carry); a.z0 = upload(carry);
    CHECK(cudaMalloc(&a.oH, carry.size() * sizeof(float)));
    CHECK(cudaMalloc(&a.oL, carry.size() * sizeof(float)));
    a.w = rtm::Weights<float>{upload(tgu), upload(td), upload(cgu), upload(cd)};
    a.d = d; a.N = N; a.nb = p.nb; a.rows = p.rows; a.ks_up = p.ks_up; a.ks_down = p.ks_down;
    a.partial_elems = p.partial_elems; a.steps = steps; a.L = L; a.block_mode = 0; a.eps = 1e-5f;
    const auto kernel = p.cluster == 4 ? rtm::rtm_kernel<float, true, 4>
                      : p.cluster == 2 ? rtm::rtm_kernel<float, true, 2>
                      : p.weights_in_smem ? rtm::rtm_kernel<float, true, 1> : rtm::rtm_kernel<float, false, 1>;
    CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_limit));
    const long long tiles = rtm::ceil_div(N, p.nb);
    const long long units = sms / p.cluster;
    const int grid = (int)((tiles < units ? tiles : units) * p.cluster);
    cudaLaunchConfig_t config = {};
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = p.cluster;
    attr[0].val.clusterDim.y = attr[0].val.clusterDim.z = 1;
    config.gridDim = dim3(grid);
    config.blockDim = dim3(rtm::gpu::kThreads);
    config.dynamicSmemBytes = p.smem_bytes;
    config.attrs = attr;
    config.numAttrs = p.cluster > 1 ? 1 : 0;
    CHECK(cudaLaunchKernelEx(&config, kernel, a));
    CHECK(cudaDeviceSynchronize());

    std::vector<float> out(carry.size());
    CHECK(cudaMemcpy(out.data(), a.oL, out.size() * sizeof(float), cudaMemcpyDeviceToHost));
    bool finite = true;
    for (float v : out) finite = finite && std::isfinite(v);
    std::printf("N=%d S=%d D=%d nb=%d tiles=%lld grid=%d weights_in_smem=%d ks=%d,%d cluster=%d finite=%d\n", N, S, D,
                p.nb, tiles, grid, (int)p.weights_in_smem, p.ks_up, p.ks_down, p.cluster, (int)finite);
    for (const void* ptr : {(const void*)a.zH, (const void*)a.zL, (const void*)a.z0, (const void*)a.oH,
                            (const void*)a.oL, (const void*)a.w.tgu, (const void*)a.w.td, (const void*)a.w.cgu,
                            (const void*)a.w.cd})
        CHECK(cudaFree(const_cast<void*>(ptr)));
    return finite;
}

int main() {
    bool ok = true;
    ok &= run_case(1, 4, 128, 2, 1, false, 0, false);   // batch 1 of the core default: split k, streamed weights
    ok &= run_case(37, 8, 64, 1, 2, false, 3, false);   // 10 tiles on 3 blocks, a partial last tile, weights in smem
    ok &= run_case(9, 3, 13, 2, 1, true, 2, false);     // odd sizes, weights forced to stream
    ok &= run_case(19, 4, 128, 1, 1, false, 8, true);   // sm_90: 4 x 128 over clusters of 4, 2 clusters, 3 tiles
    return ok ? 0 : 1;
}

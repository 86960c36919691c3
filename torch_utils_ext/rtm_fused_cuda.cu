// Launching the fused RTM kernel from torch: the launch plan, the shared-memory opt-in, the stream.

// c10's CUDA headers only: ATen/cuda/CUDAContext.h pulls in cuSPARSE/cuBLAS headers, which a minimal
// toolkit does not have.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "rtm_fused_kernel.cuh"

namespace {

// What a launch needs to know about a device, queried once per device. The kernels' dynamic shared memory
// limit is raised to the device's opt-in maximum at the same time, once, under the lock: so no launch sets
// an attribute, and two host threads cannot race on it.
struct DeviceInfo { int smem_optin, sms, max_cluster; };

template <typename F> void set_smem_optin(F kernel, int bytes) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

const DeviceInfo& device_info(int dev) {
    static std::mutex mutex;
    static std::unordered_map<int, DeviceInfo> known;
    const std::lock_guard<std::mutex> lock(mutex);
    auto it = known.find(dev);
    if (it != known.end()) return it->second;
    DeviceInfo info{};
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&info.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&info.sms, cudaDevAttrMultiProcessorCount, dev));
    int cluster_launch = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&cluster_launch, cudaDevAttrClusterLaunch, dev));
    info.max_cluster = cluster_launch ? 4 : 1;                  // sm_90 and later
    set_smem_optin(rtm::rtm_kernel<float, true, 1>, info.smem_optin);
    set_smem_optin(rtm::rtm_kernel<float, false, 1>, info.smem_optin);
    if (info.max_cluster > 1) {
        set_smem_optin(rtm::rtm_kernel<float, true, 2>, info.smem_optin);
        set_smem_optin(rtm::rtm_kernel<float, true, 4>, info.smem_optin);
    }
    return known.emplace(dev, info).first->second;
}

}  // namespace

std::vector<at::Tensor> rtm_run_cuda(const at::Tensor& zH, const at::Tensor& zL, const at::Tensor& z0,
                                     const std::vector<at::Tensor>& packed, const rtm::Dims& d, int steps, int L,
                                     bool block_mode, double eps) {
    const c10::cuda::CUDAGuard guard(zL.device());
    const DeviceInfo& dev = device_info(zL.get_device());
    const long long N = zL.size(0);
    const auto plan = rtm::choose_plan<rtm::gpu::kRowTile>(N, d, dev.smem_optin, dev.sms, sizeof(float),
                                                           dev.max_cluster);
    TORCH_CHECK(plan.nb > 0, "rtm_fused: one sample needs ", plan.smem_bytes, " bytes of shared memory per block; "
                "this GPU allows ", dev.smem_optin, " (use the reference implementation for this configuration)");

    const auto kernel = plan.cluster == 4 ? rtm::rtm_kernel<float, true, 4>
                      : plan.cluster == 2 ? rtm::rtm_kernel<float, true, 2>
                      : plan.weights_in_smem ? rtm::rtm_kernel<float, true, 1> : rtm::rtm_kernel<float, false, 1>;
    const long long tiles = rtm::ceil_div(N, plan.nb);
    cudaLaunchConfig_t config = {};
    cudaLaunchAttribute cluster_dim[1];
    config.blockDim = dim3(rtm::gpu::kThreads);
    config.dynamicSmemBytes = plan.smem_bytes;
    config.stream = c10::cuda::getCurrentCUDAStream();
    int units = 0;          // blocks (or clusters) that run at once; depends on the plan's shared memory
    if (plan.cluster > 1) {
        cluster_dim[0].id = cudaLaunchAttributeClusterDimension;
        cluster_dim[0].val.clusterDim.x = plan.cluster;
        cluster_dim[0].val.clusterDim.y = cluster_dim[0].val.clusterDim.z = 1;
        config.attrs = cluster_dim;
        config.numAttrs = 1;
        config.gridDim = dim3(static_cast<unsigned>(std::min<long long>(tiles, dev.sms / plan.cluster) * plan.cluster));
        C10_CUDA_CHECK(cudaOccupancyMaxActiveClusters(&units, kernel, &config));
        TORCH_CHECK(units > 0, "rtm_fused: a cluster of ", plan.cluster, " blocks with ", plan.smem_bytes,
                    " bytes of shared memory each cannot be scheduled on this GPU");
        config.gridDim = dim3(static_cast<unsigned>(std::min<long long>(tiles, units) * plan.cluster));
    } else {
        C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&units, kernel, rtm::gpu::kThreads,
                                                                     plan.smem_bytes));
        config.gridDim = dim3(static_cast<unsigned>(
            std::min<long long>(tiles, static_cast<long long>(std::max(units, 1)) * dev.sms)));
    }

    auto oH = block_mode ? at::Tensor() : at::empty_like(zH);
    auto oL = at::empty_like(zL);
    rtm::KernelArgs<float> a{};
    a.zH = block_mode ? nullptr : zH.data_ptr<float>();
    a.zL = zL.data_ptr<float>();
    a.z0 = z0.data_ptr<float>();
    a.oH = block_mode ? nullptr : oH.data_ptr<float>();
    a.oL = oL.data_ptr<float>();
    a.w = rtm::Weights<float>{packed[0].data_ptr<float>(), packed[1].data_ptr<float>(), packed[2].data_ptr<float>(),
                              packed[3].data_ptr<float>()};
    a.d = d;
    a.N = N;
    a.nb = plan.nb;
    a.rows = plan.rows;
    a.ks_up = plan.ks_up;
    a.ks_down = plan.ks_down;
    a.partial_elems = plan.partial_elems;
    a.steps = steps;
    a.L = L;
    a.block_mode = block_mode;
    a.eps = static_cast<float>(eps);
    C10_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, a));
    if (block_mode) return {oL};
    return {oH, oL};
}

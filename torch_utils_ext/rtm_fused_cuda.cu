// Launching the fused RTM kernel from torch: the launch plan, the shared-memory opt-in, the stream.

// c10's CUDA headers only: ATen/cuda/CUDAContext.h pulls in cuSPARSE/cuBLAS headers, which a minimal
// toolkit does not have.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <vector>

#include "rtm_fused_kernel.cuh"

std::vector<at::Tensor> rtm_run_cuda(const at::Tensor& zH, const at::Tensor& zL, const at::Tensor& z0,
                                     const std::vector<at::Tensor>& packed, const rtm::Dims& d, int steps, int L,
                                     bool block_mode, double eps) {
    const c10::cuda::CUDAGuard guard(zL.device());
    const int dev = zL.get_device();
    int smem_limit = 0, sms = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&smem_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    const long long N = zL.size(0);
    const auto plan = rtm::plan_gpu<rtm::gpu::kRowTile>(N, d, smem_limit, sms, sizeof(float));
    TORCH_CHECK(plan.nb > 0, "rtm_fused: one sample needs ", plan.smem_bytes, " bytes of shared memory per block; "
                "this GPU allows ", smem_limit, " (use the reference implementation for this configuration)");

    auto kernel = rtm::rtm_kernel<float>;
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(plan.smem_bytes)));
    int per_sm = 0;
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, rtm::gpu::kThreads,
                                                                 plan.smem_bytes));
    const long long tiles = rtm::ceil_div(N, plan.nb);
    const int grid = static_cast<int>(std::min<long long>(tiles, static_cast<long long>(std::max(per_sm, 1)) * sms));

    auto oH = block_mode ? at::Tensor() : at::empty_like(zH);
    auto oL = at::empty_like(zL);
    rtm::KernelArgs<float> a;
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
    a.steps = steps;
    a.L = L;
    a.block_mode = block_mode;
    a.weights_in_smem = plan.weights_in_smem;
    a.eps = static_cast<float>(eps);
    kernel<<<grid, rtm::gpu::kThreads, plan.smem_bytes, c10::cuda::getCurrentCUDAStream()>>>(a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (block_mode) return {oL};
    return {oH, oL};
}

// Torch bindings of the fused RTM op: argument checks, weight packing, and the CPU kernel (parallel over
// tiles of the batch). The CUDA build adds rtm_fused_cuda.cu (RTM_WITH_CUDA).

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "rtm_fused.h"
#include "rtm_fused_cpu.h"

#ifdef RTM_WITH_CUDA
// rtm_fused_cuda.cu
std::vector<at::Tensor> rtm_run_cuda(const at::Tensor& zH, const at::Tensor& zL, const at::Tensor& z0,
                                     const std::vector<at::Tensor>& packed, const rtm::Dims& d, int steps, int L,
                                     bool block_mode, double eps);
#endif

namespace {

//----------------------------------------------------------------------------
// Checks: every bad input gets a message that names the argument.

void check_tensor(const at::Tensor& t, const char* name, const at::Tensor& like, int ndim) {
    TORCH_CHECK(t.dim() == ndim, "rtm_fused: ", name, " must be ", ndim, "-D, got shape ", t.sizes());
    TORCH_CHECK(t.device() == like.device(), "rtm_fused: ", name, " is on ", t.device(), " but the carries are on ",
                like.device());
    TORCH_CHECK(t.scalar_type() == like.scalar_type(), "rtm_fused: ", name, " is ", t.scalar_type(),
                " but the carries are ", like.scalar_type(), "; all tensors must share one dtype");
    TORCH_CHECK(t.is_contiguous(), "rtm_fused: ", name, " must be contiguous");
}

void check_shape(const at::Tensor& t, const char* name, int64_t rows, int64_t cols, const char* what) {
    TORCH_CHECK(t.size(0) == rows && t.size(1) == cols, "rtm_fused: ", name, " must be [", rows, ", ", cols,
                "] (", what, "), got ", t.sizes());
}

using Named = std::pair<const at::Tensor*, const char*>;

// Validates the carries (one device, one dtype, one shape) and returns the first.
const at::Tensor& check_carries(const std::vector<Named>& carries) {
    const at::Tensor& like = *carries[0].first;
    const auto type = like.scalar_type();
    if (like.is_cuda()) {
        TORCH_CHECK(type == at::kFloat, "rtm_fused: CUDA tensors must be float32, got ", type,
                    " (fp16/bf16 are not supported: the RTM block runs in float32)");
    } else {
        TORCH_CHECK(like.device().is_cpu(), "rtm_fused: tensors must be on CPU or CUDA, got ", like.device());
        TORCH_CHECK(type == at::kFloat || type == at::kDouble, "rtm_fused: CPU tensors must be float32 or float64, "
                    "got ", type, " (fp16/bf16 are not supported: the RTM block runs in float32)");
    }
    for (const auto& c : carries) {
        check_tensor(*c.first, c.second, like, 3);
        TORCH_CHECK(c.first->sizes() == like.sizes(), "rtm_fused: ", c.second, " has shape ", c.first->sizes(),
                    " but ", carries[0].second, " has ", like.sizes());
    }
    TORCH_CHECK(like.size(1) > 0 && like.size(2) > 0, "rtm_fused: carries must be [N, tokens, token_dim] with "
                "tokens, token_dim > 0, got ", like.sizes());
    return like;
}

void check_sizes(int64_t S, int64_t D, int64_t Ht, int64_t Hc, double eps) {
    TORCH_CHECK(eps > 0, "rtm_fused: eps must be positive, got ", eps);
    TORCH_CHECK(S * D < (1LL << 24) && Ht < (1LL << 20) && Hc < (1LL << 20),
                "rtm_fused: tokens x token_dim or a hidden width is too large");
}

// Validates the carries and the effective weights (torch [out, in] layout) and returns the dims.
rtm::Dims check_args(const std::vector<Named>& carries, const at::Tensor& tgu, const at::Tensor& td,
                     const at::Tensor& cgu, const at::Tensor& cd, double eps) {
    const at::Tensor& like = check_carries(carries);
    check_tensor(tgu, "token gate_up weight", like, 2);
    check_tensor(td, "token down weight", like, 2);
    check_tensor(cgu, "channel gate_up weight", like, 2);
    check_tensor(cd, "channel down weight", like, 2);
    const int64_t S = like.size(1), D = like.size(2), Ht = tgu.size(0) / 2, Hc = cgu.size(0) / 2;
    TORCH_CHECK(Ht > 0 && tgu.size(0) == 2 * Ht, "rtm_fused: token gate_up weight must have an even, positive "
                "number of rows (gate, then up), got ", tgu.sizes());
    TORCH_CHECK(Hc > 0 && cgu.size(0) == 2 * Hc, "rtm_fused: channel gate_up weight must have an even, positive "
                "number of rows (gate, then up), got ", cgu.sizes());
    check_shape(tgu, "token gate_up weight", 2 * Ht, S, "2*hidden x tokens");
    check_shape(td, "token down weight", S, Ht, "tokens x hidden");
    check_shape(cgu, "channel gate_up weight", 2 * Hc, D, "2*hidden x token_dim");
    check_shape(cd, "channel down weight", D, Hc, "token_dim x hidden");
    check_sizes(S, D, Ht, Hc, eps);
    return rtm::make_dims(static_cast<int>(S), static_cast<int>(D), static_cast<int>(Ht), static_cast<int>(Hc));
}

// Kernel layout (see rtm_fused.h): channel weights transposed and zero-padded, so tiles read whole columns.
std::vector<at::Tensor> pack_weights(const at::Tensor& tgu, const at::Tensor& td, const at::Tensor& cgu,
                                     const at::Tensor& cd, const rtm::Dims& d) {
    auto cgu_t = at::zeros({d.D, 2 * d.Hcp}, cgu.options());
    cgu_t.narrow(1, 0, d.Hc).copy_(cgu.narrow(0, 0, d.Hc).t());
    cgu_t.narrow(1, d.Hcp, d.Hc).copy_(cgu.narrow(0, d.Hc, d.Hc).t());
    auto cd_t = at::zeros({d.Hc, d.Dp}, cd.options());
    cd_t.narrow(1, 0, d.D).copy_(cd.t());
    return {tgu, td, cgu_t, cd_t};
}

// Validates the carries and weights already in kernel layout (from pack) and returns the dims.
rtm::Dims check_packed(const std::vector<Named>& carries, const std::vector<at::Tensor>& packed, double eps) {
    const at::Tensor& like = check_carries(carries);
    TORCH_CHECK(packed.size() == 4, "rtm_fused: packed weights are 4 tensors (from pack()), got ", packed.size());
    const char* names[] = {"packed token gate_up", "packed token down", "packed channel gate_up", "packed channel down"};
    for (int i = 0; i < 4; ++i) check_tensor(packed[i], names[i], like, 2);
    const int64_t S = like.size(1), D = like.size(2), Ht = packed[0].size(0) / 2, Hc = packed[3].size(0);
    TORCH_CHECK(Ht > 0 && Hc > 0, "rtm_fused: packed weights with an empty hidden layer");
    check_sizes(S, D, Ht, Hc, eps);
    const auto d = rtm::make_dims(static_cast<int>(S), static_cast<int>(D), static_cast<int>(Ht), static_cast<int>(Hc));
    check_shape(packed[0], names[0], 2 * Ht, S, "2*hidden x tokens");
    check_shape(packed[1], names[1], S, Ht, "tokens x hidden");
    check_shape(packed[2], names[2], D, 2 * d.Hcp, "token_dim x 2*padded hidden");
    check_shape(packed[3], names[3], Hc, d.Dp, "hidden x padded token_dim");
    return d;
}

//----------------------------------------------------------------------------
// The CPU kernel: each thread takes tiles of samples and runs f (or the recursion) on them in a private
// buffer with padded rows, so the weights stream from cache while the carries stay in L1/L2.

template <typename T>
void run_cpu(const T* zH, const T* zL, const T* z0, T* oH, T* oL, int64_t N, const std::vector<at::Tensor>& packed,
             const rtm::Dims& d, int steps, int L, bool block_mode, T eps) {
    using P = rtm::CpuPolicy;
    const rtm::Weights<T> w{packed[0].data_ptr<T>(), packed[1].data_ptr<T>(), packed[2].data_ptr<T>(),
                            packed[3].data_ptr<T>()};
    const int ld = d.Dp, ldh = d.Hcp;
    const int threads = std::max(1, at::get_num_threads());
    int nb = std::max(1, P::kTileRows / d.S);
    nb = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nb, rtm::ceil_div(N, threads))));
    const int64_t tiles = rtm::ceil_div(N, nb);
    const int64_t sample = static_cast<int64_t>(d.S) * d.D;

    at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
        const int max_rows = rtm::round_up(nb * d.S, P::R);
        std::vector<T> buf(static_cast<size_t>(max_rows) * (4 * ld + ldh));
        T* bH = buf.data();
        T* bL = bH + max_rows * ld;
        T* b0 = bL + max_rows * ld;
        T* work = b0 + max_rows * ld;
        T* hidden = work + max_rows * ld;
        for (int64_t tile = begin; tile < end; ++tile) {
            const int64_t n0 = tile * nb;
            const int nbv = static_cast<int>(std::min<int64_t>(nb, N - n0));
            const int rows = rtm::round_up(nbv * d.S, P::R);
            std::fill(buf.begin(), buf.end(), T(0));
            for (int r = 0; r < nbv * d.S; ++r) {
                const int64_t src = n0 * sample + static_cast<int64_t>(r) * d.D;
                if (!block_mode) std::copy(zH + src, zH + src + d.D, bH + r * ld);
                std::copy(zL + src, zL + src + d.D, bL + r * ld);
                std::copy(z0 + src, z0 + src + d.D, b0 + r * ld);
            }
            const rtm::Tile<T> t{nbv, rows, ld, ldh, work, hidden};
            if (block_mode)
                rtm::mixer_block<T, P>(bL, b0, nullptr, d, w, t, eps, 0, 1);
            else
                rtm::recursion<T, P>(bH, bL, b0, steps, L, d, w, t, eps, 0, 1);
            for (int r = 0; r < nbv * d.S; ++r) {
                const int64_t dst = n0 * sample + static_cast<int64_t>(r) * d.D;
                if (!block_mode) std::copy(bH + r * ld, bH + r * ld + d.D, oH + dst);
                std::copy(bL + r * ld, bL + r * ld + d.D, oL + dst);
            }
        }
    });
}

std::vector<at::Tensor> run(const at::Tensor& zH, const at::Tensor& zL, const at::Tensor& z0,
                            const std::vector<at::Tensor>& packed, const rtm::Dims& d, int steps, int L,
                            bool block_mode, double eps) {
    if (zL.is_cuda()) {
#ifdef RTM_WITH_CUDA
        return rtm_run_cuda(zH, zL, z0, packed, d, steps, L, block_mode, eps);
#else
        TORCH_CHECK(false, "rtm_fused: this is the CPU build; it has no CUDA kernel");
#endif
    }
    auto oH = block_mode ? at::Tensor() : at::empty_like(zH);
    auto oL = at::empty_like(zL);
    AT_DISPATCH_FLOATING_TYPES(zL.scalar_type(), "rtm_fused_cpu", [&] {
        run_cpu<scalar_t>(block_mode ? nullptr : zH.data_ptr<scalar_t>(), zL.data_ptr<scalar_t>(),
                          z0.data_ptr<scalar_t>(), block_mode ? nullptr : oH.data_ptr<scalar_t>(),
                          oL.data_ptr<scalar_t>(), zL.size(0), packed, d, steps, L, block_mode,
                          static_cast<scalar_t>(eps));
    });
    if (block_mode) return {oL};
    return {oH, oL};
}

//----------------------------------------------------------------------------
// Entry points.

// z_H, z_L after `steps` outer steps of L+1 block calls each, in one op call (no autograd).
std::vector<at::Tensor> recursion(const at::Tensor& zH, const at::Tensor& zL, const at::Tensor& z0,
                                  const at::Tensor& tgu, const at::Tensor& td, const at::Tensor& cgu,
                                  const at::Tensor& cd, int64_t steps, int64_t L, double eps) {
    const auto d = check_args({{&zH, "z_H"}, {&zL, "z_L"}, {&z0, "z0"}}, tgu, td, cgu, cd, eps);
    TORCH_CHECK(steps >= 0 && steps < (1 << 30), "rtm_fused: steps must be >= 0, got ", steps);
    TORCH_CHECK(L >= 1 && L < (1 << 30), "rtm_fused: L must be >= 1, got ", L);
    if (zH.size(0) == 0 || steps == 0) return {zH.clone(), zL.clone()};
    return run(zH, zL, z0, pack_weights(tgu, td, cgu, cd, d), d, static_cast<int>(steps), static_cast<int>(L),
               false, eps);
}

// f(x, inj): one block call (no autograd; rtm_fused.py wraps it in an autograd.Function).
at::Tensor block(const at::Tensor& x, const at::Tensor& inj, const at::Tensor& tgu, const at::Tensor& td,
                 const at::Tensor& cgu, const at::Tensor& cd, double eps) {
    const auto d = check_args({{&x, "x"}, {&inj, "inj"}}, tgu, td, cgu, cd, eps);
    if (x.size(0) == 0) return x.clone();
    return run(x, x, inj, pack_weights(tgu, td, cgu, cd, d), d, 1, 1, true, eps)[0];
}

// The weights in kernel layout, for the *_packed entry points (rtm_fused.py caches them per module). `like`:
// a carry (or an empty [0, tokens, token_dim] tensor) of the device and dtype the weights are for.
std::vector<at::Tensor> pack(const at::Tensor& like, const at::Tensor& tgu, const at::Tensor& td,
                             const at::Tensor& cgu, const at::Tensor& cd) {
    const auto d = check_args({{&like, "like"}}, tgu, td, cgu, cd, 1.0);
    return pack_weights(tgu, td, cgu, cd, d);
}

std::vector<at::Tensor> recursion_packed(const at::Tensor& zH, const at::Tensor& zL, const at::Tensor& z0,
                                         const std::vector<at::Tensor>& packed, int64_t steps, int64_t L, double eps) {
    const auto d = check_packed({{&zH, "z_H"}, {&zL, "z_L"}, {&z0, "z0"}}, packed, eps);
    TORCH_CHECK(steps >= 0 && steps < (1 << 30), "rtm_fused: steps must be >= 0, got ", steps);
    TORCH_CHECK(L >= 1 && L < (1 << 30), "rtm_fused: L must be >= 1, got ", L);
    if (zH.size(0) == 0 || steps == 0) return {zH.clone(), zL.clone()};
    return run(zH, zL, z0, packed, d, static_cast<int>(steps), static_cast<int>(L), false, eps);
}

at::Tensor block_packed(const at::Tensor& x, const at::Tensor& inj, const std::vector<at::Tensor>& packed, double eps) {
    const auto d = check_packed({{&x, "x"}, {&inj, "inj"}}, packed, eps);
    if (x.size(0) == 0) return x.clone();
    return run(x, x, inj, packed, d, 1, 1, true, eps)[0];
}

// The GPU launch plan for a float32 batch: (samples per tile, rows per tile, channel weights in shared
// memory, dynamic shared memory bytes, k parts of the gate/up and of the down GEMM, CTAs per cluster).
// Samples per tile = 0: no tile fits in smem_limit; the bytes are then what one sample would need.
// max_cluster: 4 on sm_90 (thread-block clusters), 1 before.
std::tuple<int64_t, int64_t, bool, int64_t, int64_t, int64_t, int64_t> plan_cuda(
        int64_t N, int64_t S, int64_t D, int64_t Ht, int64_t Hc, int64_t smem_limit, int64_t num_sms,
        int64_t max_cluster) {
    TORCH_CHECK(N >= 0 && S > 0 && D > 0 && Ht > 0 && Hc > 0, "rtm_fused: plan_cuda needs positive sizes");
    const auto d = rtm::make_dims(static_cast<int>(S), static_cast<int>(D), static_cast<int>(Ht),
                                  static_cast<int>(Hc));
    TORCH_CHECK(max_cluster == 1 || max_cluster == 2 || max_cluster == 4, "rtm_fused: max_cluster is 1, 2 or 4");
    const auto p = rtm::choose_plan<rtm::gpu::kRowTile>(N, d, smem_limit, static_cast<int>(num_sms), sizeof(float),
                                                        static_cast<int>(max_cluster));
    return {p.nb, p.rows, p.weights_in_smem, p.smem_bytes, p.ks_up, p.ks_down, p.cluster};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("recursion", &recursion, "z_H, z_L after `steps` RTM outer steps (no autograd)");
    m.def("block", &block, "f(x, inj): the RTM mixer block (no autograd)");
    m.def("pack", &pack, "the effective weights in kernel layout, for recursion_packed / block_packed");
    m.def("recursion_packed", &recursion_packed, "recursion() with weights from pack()");
    m.def("block_packed", &block_packed, "block() with weights from pack()");
    m.def("plan_cuda", &plan_cuda, "GPU launch plan: (samples per tile, rows, weights in smem, smem bytes, "
          "k parts gate/up, k parts down, CTAs per cluster)", py::arg("N"), py::arg("S"), py::arg("D"), py::arg("Ht"),
          py::arg("Hc"), py::arg("smem_limit"), py::arg("num_sms"), py::arg("max_cluster") = 1);
}

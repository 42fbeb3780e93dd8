// Fused QKV projection (d = H·Dh = 512, G = 3, with bias, Q pre-scaled) against two unfused paths measured in the
// same run, for B = 1, 32, 256 and L = 14, 100 in fp16, bf16 and fp32:
//  - cublas_us: one cublasGemmEx (y = x · W_qkvᵀ into a [B·L, 3d] buffer, float accumulation, no bias) followed by
//    three split_heads into [B, H, L, Dh];
//  - cublaslt_us: one cublasLtMatmul with the bias added in its epilogue (CUBLASLT_EPILOGUE_BIAS), then the same
//    three split_heads.
// Neither applies the Q scale, so both are lower bounds on what the unfused path costs; the baseline is the faster
// of the two. Reports µs per call, GB/s (x, W, bias read; Q, K, V written), TFLOP/s (2·M·N·K), their fractions of
// the ceilings and vs_baseline (> 1: the fused kernel is faster). Exits 0 with one line when there is no device.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include <cublasLt.h>
#include <cublas_v2.h>

#include "bench/bench_util.h"
#include "kernels/qkv_projection.h"
#include "kernels/split_heads.h"

namespace {

using vqa::bench::DeviceArray;
using vqa::bench::kHeadDim;
using vqa::bench::kHeads;

constexpr int kModel = kHeads * kHeadDim;  // d
constexpr int kGroups = 3;
constexpr size_t kLtWorkspaceBytes = size_t{32} << 20;  // cuBLAS's recommended workspace on Hopper

// y[M, N] = x[M, K] · W[N, K]ᵀ + bias[N] with cuBLASLt, all row-major; the descriptors and the algorithm are
// chosen once. Column-major, that is yᵀ[N, M] = op_T(W) · xᵀ, and the bias is per row of yᵀ, which is what
// CUBLASLT_EPILOGUE_BIAS adds.
template <typename T>
class LtBiasGemm {
public:
    LtBiasGemm(int rows,         // M
               int cols,         // N
               int depth,        // K
               const T* bias) {  // bias: [N]
        const cudaDataType_t type = vqa::bench::cuda_type<T>();
        VQA_CUBLAS_CHECK(cublasLtCreate(&handle_));
        VQA_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op_, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        const cublasOperation_t transpose = CUBLAS_OP_T;
        const cublasOperation_t none = CUBLAS_OP_N;
        const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
        VQA_CUBLAS_CHECK(
            cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)));
        VQA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSB, &none, sizeof(none)));
        VQA_CUBLAS_CHECK(
            cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
        VQA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
        VQA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&w_layout_, type, depth, cols, depth));  // W as stored: [K, N]
        VQA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&x_layout_, type, depth, rows, depth));  // xᵀ: [K, M]
        VQA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&y_layout_, type, cols, rows, cols));    // yᵀ: [N, M]

        cublasLtMatmulPreference_t preference = nullptr;
        VQA_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
        const size_t workspace_bytes = kLtWorkspaceBytes;
        VQA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                              &workspace_bytes, sizeof(workspace_bytes)));
        int found = 0;
        const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(handle_, op_, w_layout_, x_layout_, y_layout_,
                                                                     y_layout_, preference, 1, &heuristic_, &found);
        VQA_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(preference));
        available_ = status == CUBLAS_STATUS_SUCCESS && found > 0;
    }
    ~LtBiasGemm() {
        // Destroying a descriptor or handle only frees host memory; a failure has nothing left to clean up.
        cublasLtMatrixLayoutDestroy(y_layout_);
        cublasLtMatrixLayoutDestroy(x_layout_);
        cublasLtMatrixLayoutDestroy(w_layout_);
        cublasLtMatmulDescDestroy(op_);
        cublasLtDestroy(handle_);
    }
    LtBiasGemm(const LtBiasGemm&) = delete;
    LtBiasGemm& operator=(const LtBiasGemm&) = delete;

    // Whether cuBLASLt offered an algorithm for this shape and type.
    bool available() const { return available_; }

    void run(const T* x,       // [M, K]
             const T* w,       // [N, K]
             T* y,             // [M, N]
             void* workspace,  // kLtWorkspaceBytes
             cudaStream_t stream) const {
        const float one = 1.0f;
        const float zero = 0.0f;
        VQA_CUBLAS_CHECK(cublasLtMatmul(handle_, op_, &one, w, w_layout_, x, x_layout_, &zero, y, y_layout_, y,
                                        y_layout_, &heuristic_.algo, workspace, kLtWorkspaceBytes, stream));
    }

private:
    cublasLtHandle_t handle_ = nullptr;
    cublasLtMatmulDesc_t op_ = nullptr;
    cublasLtMatrixLayout_t w_layout_ = nullptr;
    cublasLtMatrixLayout_t x_layout_ = nullptr;
    cublasLtMatrixLayout_t y_layout_ = nullptr;
    cublasLtMatmulHeuristicResult_t heuristic_{};
    bool available_ = false;
};

// Args: B, L.
template <typename T>
void BM_qkv_projection(benchmark::State& state) {
    const int batch = static_cast<int>(state.range(0));
    const int seq_len = static_cast<int>(state.range(1));
    const vqa::HeadProjectionParams params =
        vqa::qkv_projection_params(batch, seq_len, kModel, kHeads, 1.0f / std::sqrt(static_cast<float>(kHeadDim)));
    const int rows = static_cast<int>(params.rows());
    const int cols = static_cast<int>(params.cols());
    const size_t head_elems = static_cast<size_t>(rows) * kModel;
    const DeviceArray<T> x(head_elems);
    const DeviceArray<T> w(static_cast<size_t>(cols) * kModel);
    const DeviceArray<T> bias(cols);
    const DeviceArray<T> y(static_cast<size_t>(rows) * cols);  // the baselines' [B·L, 3d] GEMM output
    const DeviceArray<T> out(kGroups * head_elems);
    const DeviceArray<unsigned char> workspace(kLtWorkspaceBytes);
    vqa::HeadOutputs<T> outputs;
    for (int g = 0; g < kGroups; ++g) {
        outputs.group[g] = out.get() + g * head_elems;
    }

    vqa::bench::Timer timer;
    const vqa::bench::CublasHandle cublas(timer.stream());
    const LtBiasGemm<T> lt(rows, cols, kModel, bias.get());
    const cudaDataType_t type = vqa::bench::cuda_type<T>();
    const vqa::HeadsShape slice{batch, seq_len, kHeads, kHeadDim, cols};  // a third of each y row
    const auto split = [&] {
        for (int g = 0; g < kGroups; ++g) {
            vqa::cuda::split_heads(y.get() + g * kModel, outputs.group[g], slice, timer.stream());
        }
    };
    const auto gemm_split = [&] {
        const float one = 1.0f;
        const float zero = 0.0f;
        // Row-major y[M, N] = x[M, K] · W[N, K]ᵀ is column-major yᵀ = W · xᵀ.
        VQA_CUBLAS_CHECK(cublasGemmEx(cublas.get(), CUBLAS_OP_T, CUBLAS_OP_N, cols, rows, kModel, &one, w.get(), type,
                                      kModel, x.get(), type, kModel, &zero, y.get(), type, cols, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT));
        split();
    };
    const auto lt_split = [&] {
        lt.run(x.get(), w.get(), y.get(), workspace.get(), timer.stream());
        split();
    };
    const auto fused = [&] {
        vqa::cuda::fused_qkv_projection(params, x.get(), w.get(), bias.get(), outputs, timer.stream());
    };
    const double cublas_ms = timer.mean_ms(gemm_split);
    double baseline_ms = cublas_ms;
    if (lt.available()) {
        const double lt_ms = timer.mean_ms(lt_split);
        state.counters["cublaslt_us"] = lt_ms * 1e3;
        baseline_ms = std::min(baseline_ms, lt_ms);
    } else {
        std::fprintf(stderr, "qkv_projection_bench: cuBLASLt has no algorithm for B=%d L=%d; cublas only\n", batch,
                     seq_len);
    }
    state.counters["cublas_us"] = cublas_ms * 1e3;
    const double fused_ms = timer.run(state, fused);

    const double bytes = static_cast<double>(x.bytes() + w.bytes() + bias.bytes() + out.bytes());
    const double flops = 2.0 * rows * cols * static_cast<double>(kModel);
    vqa::bench::report<T>(state, fused_ms, baseline_ms, bytes, flops);
}

}  // namespace

int main(int argc, char** argv) {
    vqa::bench::register_element_types("qkv_projection", BM_qkv_projection<__half>, BM_qkv_projection<__nv_bfloat16>,
                                       BM_qkv_projection<float>, vqa::bench::token_shapes);
    return vqa::bench::run_benchmarks("qkv_projection_bench", argc, argv);
}

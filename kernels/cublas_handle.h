// What the code that calls cuBLAS directly shares (the GPU tests that run an op's GEMM half with cuBLAS, the
// benchmarks' cuBLAS baselines): a handle bound to a stream, and the cudaDataType_t of an element type.
#pragma once

#if !defined(__CUDACC__) && !VQA_WITH_CUDA
#error "kernels/cublas_handle.h is CUDA code: include it from .cu files, or from sources built with VQA_WITH_CUDA=1"
#endif

#include <cstdio>
#include <type_traits>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "kernels/cuda_check.h"

namespace vqa::cuda {

// The cuBLAS data type of float, __half or __nv_bfloat16.
template <typename T>
constexpr cudaDataType_t cuda_type() {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>,
                  "cuBLAS is called with float, __half or __nv_bfloat16");
    if constexpr (std::is_same_v<T, float>) {
        return CUDA_R_32F;
    } else if constexpr (std::is_same_v<T, __half>) {
        return CUDA_R_16F;
    } else {
        return CUDA_R_16BF;
    }
}

// A cuBLAS handle whose calls go to `stream`. Neither copied nor moved: it lives in its owner's scope.
class CublasHandle {
public:
    explicit CublasHandle(cudaStream_t stream) {
        VQA_CUBLAS_CHECK(cublasCreate(&handle_));
        VQA_CUBLAS_CHECK(cublasSetStream(handle_, stream));
    }
    ~CublasHandle() {
        const cublasStatus_t status = cublasDestroy(handle_);
        if (status != CUBLAS_STATUS_SUCCESS) {  // a destructor reports and carries on
            std::fprintf(stderr, "vqa: cuBLAS error: %s in `cublasDestroy`\n", cublasGetStatusString(status));
        }
    }
    CublasHandle(const CublasHandle&) = delete;
    CublasHandle& operator=(const CublasHandle&) = delete;

    cublasHandle_t get() const { return handle_; }

private:
    cublasHandle_t handle_ = nullptr;
};

}  // namespace vqa::cuda

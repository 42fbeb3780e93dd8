// Error checks for CUDA runtime, cuBLAS and cuDNN calls, and after kernel launches.
//
//   VQA_CUDA_CHECK(cudaMemcpyAsync(...));     throws vqa::Error: kOutOfMemory for failed allocations, else kCuda
//   VQA_CUBLAS_CHECK(cublasLtMatmul(...));
//   VQA_CUDNN_CHECK(cudnnConvolutionForward(...));
//   kernel<<<grid, block, 0, stream>>>(...);
//   VQA_CUDA_CHECK_LAUNCH(stream);            launch errors, without a sync; with VQA_CUDA_SYNC_CHECK it also
//                                             waits for the kernel, so a fault is reported at the kernel that
//                                             caused it rather than at some later call
//   VQA_CUDA_CHECK_NOTHROW(cudaFree(ptr));    for destructors: prints one line to stderr, never throws
#pragma once

#if !defined(__CUDACC__) && !VQA_WITH_CUDA
#error "kernels/cuda_check.h is CUDA code: include it from .cu files, or from sources built with VQA_WITH_CUDA=1"
#endif

#include <cstdio>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "kernels/check.h"
#include "vqa/error.h"

#if __has_include(<cudnn.h>)
#include <cudnn.h>
#define VQA_HAVE_CUDNN 1
#endif

namespace vqa::detail {

[[noreturn]] __attribute__((noinline, cold)) inline void throw_library_failure(
    ErrorCode code, const char* library, const char* status, const char* expr, const char* file, int line) {
    throw Error(code, str_cat(library, " error: ", status, " in `", expr, "` at ", source_basename(file), ":", line));
}

inline ErrorCode error_code_of(cudaError_t status) noexcept {
    return status == cudaErrorMemoryAllocation ? ErrorCode::kOutOfMemory : ErrorCode::kCuda;
}
inline const char* status_string(cudaError_t status) noexcept {
    return cudaGetErrorString(status);
}

inline ErrorCode error_code_of(cublasStatus_t status) noexcept {
    return status == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::kOutOfMemory : ErrorCode::kCuda;
}
inline const char* status_string(cublasStatus_t status) noexcept {
    return cublasGetStatusString(status);
}

#if VQA_HAVE_CUDNN
inline ErrorCode error_code_of(cudnnStatus_t status) noexcept {
#if CUDNN_MAJOR >= 9
    const bool out_of_memory = status == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
                               status == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED;
#else
    const bool out_of_memory = status == CUDNN_STATUS_ALLOC_FAILED;
#endif
    return out_of_memory ? ErrorCode::kOutOfMemory : ErrorCode::kCuda;
}
inline const char* status_string(cudnnStatus_t status) noexcept {
    return cudnnGetErrorString(status);
}
#endif

// Waits for the work queued on `stream`, unless the stream is being captured into a CUDA graph: a
// synchronisation there would invalidate the capture.
inline cudaError_t synchronize_unless_capturing(cudaStream_t stream) noexcept {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    const cudaError_t status = cudaStreamIsCapturing(stream, &capture);
    if (status != cudaSuccess || capture != cudaStreamCaptureStatusNone) {
        return status;
    }
    return cudaStreamSynchronize(stream);
}

}  // namespace vqa::detail

// Shared body of the three library checks; not for direct use.
#define VQA_DETAIL_LIBRARY_CHECK(status_type, success, library, expr)                                        \
    do {                                                                                                     \
        const status_type vqa_status_ = (expr);                                                              \
        if (vqa_status_ != (success)) {                                                                      \
            ::vqa::detail::throw_library_failure(::vqa::detail::error_code_of(vqa_status_), library,         \
                                                 ::vqa::detail::status_string(vqa_status_), #expr, __FILE__, \
                                                 __LINE__);                                                  \
        }                                                                                                    \
    } while (0)

#define VQA_CUDA_CHECK(expr) VQA_DETAIL_LIBRARY_CHECK(cudaError_t, cudaSuccess, "CUDA", expr)
#define VQA_CUBLAS_CHECK(expr) VQA_DETAIL_LIBRARY_CHECK(cublasStatus_t, CUBLAS_STATUS_SUCCESS, "cuBLAS", expr)
#if VQA_HAVE_CUDNN
#define VQA_CUDNN_CHECK(expr) VQA_DETAIL_LIBRARY_CHECK(cudnnStatus_t, CUDNN_STATUS_SUCCESS, "cuDNN", expr)
#endif

#if defined(VQA_CUDA_SYNC_CHECK)
#define VQA_CUDA_CHECK_LAUNCH(stream)                                        \
    do {                                                                     \
        VQA_CUDA_CHECK(cudaGetLastError());                                  \
        VQA_CUDA_CHECK(::vqa::detail::synchronize_unless_capturing(stream)); \
    } while (0)
#else
#define VQA_CUDA_CHECK_LAUNCH(stream)       \
    do {                                    \
        static_cast<void>(stream);          \
        VQA_CUDA_CHECK(cudaGetLastError()); \
    } while (0)
#endif

#define VQA_CUDA_CHECK_NOTHROW(expr)                                                                               \
    do {                                                                                                           \
        const cudaError_t vqa_status_ = (expr);                                                                    \
        if (vqa_status_ != cudaSuccess) {                                                                          \
            std::fprintf(stderr, "vqa: CUDA error: %s in `%s` at %s:%d\n", cudaGetErrorString(vqa_status_), #expr, \
                         ::vqa::detail::source_basename(__FILE__), __LINE__);                                      \
        }                                                                                                          \
    } while (0)

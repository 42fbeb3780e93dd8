// Bias + residual + activation epilogue over rows (CUDA entry point; the CPU reference is kernels/cpu/bias_act.h:
// cpu::bias_act for the bias and activation, cpu::add_inplace for the residual).
//
//   y[r, c] = act(x[r, c] + residual[r, c] + bias[c])
//
// The order is the CPU linear/conv2d epilogue's, act(x·Wᵀ + bias + residual) (docs/decisions.md): the residual is
// added to x first (where the CPU GEMM accumulates onto it), then the bias, then the activation; the ResNet
// block relu(bn(conv(x)) + identity) is one call with act = kRelu. The sum is float for every element type and
// rounded to T once, at the store.
//
// The bias is float whatever T is: bias vectors are tiny ([cols]), so keeping them in fp32 costs nothing, one
// uploaded copy serves every precision, and it is the type the CPU reference and the LayerNorm parameters use.
#pragma once

#include <cstdint>

#include "kernels/cpu/bias_act.h"

#if VQA_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#endif

namespace vqa {

#if VQA_WITH_CUDA
namespace cuda {

// T is float, __half or __nv_bfloat16 (instantiated in bias_act.cu). bias and residual may be null (not added). y
// may be exactly x or exactly residual (in place); otherwise it must not overlap them. 16-byte loads and stores
// when cols and every pointer allow, element-wise otherwise. Throws vqa::Error(kInvalidArgument) for bad arguments
// before anything is queued. Asynchronous on `stream`; no allocation. Pass a null residual with an explicit T:
// `cuda::bias_act<__half>(x, bias, nullptr, y, ...)`.
template <typename T>
void bias_act(const T* x,         // [rows, cols]
              const float* bias,  // [cols] or null
              const T* residual,  // [rows, cols] or null
              T* y,               // [rows, cols]
              int64_t rows,
              int64_t cols,
              cpu::Activation act,
              cudaStream_t stream);

}  // namespace cuda
#endif

}  // namespace vqa

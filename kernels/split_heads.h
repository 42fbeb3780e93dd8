// Head permutation: split_heads and merge_heads (CUDA entry points; the CPU reference with the same contract is
// in kernels/cpu/split_heads.h).
//
//   split_heads: x [B, L, H*Dh] -> y [B, H, L, Dh]      merge_heads: y [B, H, L, Dh] -> x [B, L, H*Dh]
//
// x is token-major (what a projection GEMM writes and reads) and its rows may be further apart than H*Dh, so x
// can be a column slice of a wider buffer such as a packed [B, L, 3*H*Dh] QKV projection. y is dense and
// head-major (what attention works on). merge_heads writes only the H*Dh columns of each x row and leaves any
// padding between rows as it was. x and y must not overlap.
#pragma once

#include <cstdint>
#include <type_traits>

#include "kernels/check.h"

#if VQA_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#endif

namespace vqa {

struct HeadsShape {
    int batch = 0;             // B
    int seq_len = 0;           // L
    int num_heads = 0;         // H
    int head_dim = 0;          // Dh
    int64_t x_row_stride = 0;  // elements from x[b, l, 0] to x[b, l + 1, 0]; 0 means dense (H * Dh)

    int64_t row_stride() const { return x_row_stride == 0 ? int64_t{num_heads} * head_dim : x_row_stride; }
    int64_t numel() const { return int64_t{batch} * seq_len * num_heads * head_dim; }
};

// Checks a head permutation's arguments (shared by the CUDA entries and the CPU reference); `op` names the
// caller in the message. Throws vqa::Error(kInvalidArgument).
inline void check_heads_args(const HeadsShape& shape, const void* x, const void* y, int elem_size, const char* op) {
    VQA_CHECK(shape.batch >= 0 && shape.seq_len >= 0 && shape.num_heads >= 0 && shape.head_dim >= 0, kInvalidArgument,
              op, ": expected non-negative sizes, got B=", shape.batch, " L=", shape.seq_len, " H=", shape.num_heads,
              " Dh=", shape.head_dim);
    const int64_t row_elems = int64_t{shape.num_heads} * shape.head_dim;
    VQA_CHECK(shape.x_row_stride == 0 || shape.x_row_stride >= row_elems, kInvalidArgument, op,
              ": expected x_row_stride >= H * Dh = ", row_elems, " (or 0 for dense rows), got ", shape.x_row_stride);
    const int64_t rows = int64_t{shape.batch} * shape.seq_len;
    if (rows == 0 || row_elems == 0) {
        return;
    }
    VQA_CHECK(x != nullptr && y != nullptr, kInvalidArgument, op, ": x and y must not be null for a non-empty shape");
    const auto x_begin = reinterpret_cast<uintptr_t>(x);
    const auto y_begin = reinterpret_cast<uintptr_t>(y);
    const auto x_end = x_begin + static_cast<uintptr_t>((rows - 1) * shape.row_stride() + row_elems) * elem_size;
    const auto y_end = y_begin + static_cast<uintptr_t>(shape.numel()) * elem_size;
    VQA_CHECK(x_end <= y_begin || y_end <= x_begin, kInvalidArgument, op,
              ": x and y overlap; the permutation cannot run in place, give y its own buffer");
}

#if VQA_WITH_CUDA
namespace cuda {

// T is float, __half or __nv_bfloat16 (instantiated in split_heads.cu). It is deduced from the source pointer alone
// (std::add_pointer_t<T> keeps the destination out of deduction), so the destination may be a plain nullptr.

// x: [B, L, H*Dh] (rows shape.row_stride() apart) -> y: [B, H, L, Dh]. Asynchronous on `stream`; no allocation.
template <typename T>
void split_heads(const T* x, std::add_pointer_t<T> y, const HeadsShape& shape, cudaStream_t stream);

// y: [B, H, L, Dh] -> x: [B, L, H*Dh] (rows shape.row_stride() apart). Asynchronous on `stream`; no allocation.
template <typename T>
void merge_heads(const T* y, std::add_pointer_t<T> x, const HeadsShape& shape, cudaStream_t stream);

}  // namespace cuda
#endif

}  // namespace vqa

// The small glue ops of the model graph on the GPU: what engine/cpu_model.cpp and engine/cpu_image_encoder.cpp
// do between the GEMMs, convolutions, attentions, norms and poolings (CUDA entry points; the CPU graph is their
// reference, and each test repeats the few lines of it that it checks).
//
//   step of the graph (CPU)                            op here
//   fp32 input to fp16/bf16, T logits to fp32          convert, convert_rows
//   regions ++ box branch columns [Bi·N, F + box]      convert_rows into the first F columns (dst rows F + box
//                                                      apart); the box GEMM writes the rest with ldc = F + box
//   region mask: an all-zero feature row is padding    nonzero_row_mask (on the features only, not the boxes)
//   grid trunk [Bi, C, h·w] -> tokens [Bi, h·w, C]     batched_transpose (not needed when the trunk runs NHWC)
//   tokens / masks / K,V / pooled vectors per question gather_rows (float, half, bf16 and uint8 masks)
//   text mask from lengths                             lengths_to_mask
//   transformer text: embedding + position             add_position
//   greedy decoder: argmax, score, eos bookkeeping     argmax_rows, greedy_step
// Steps that need no kernel: the grid mask (all valid: cudaMemsetAsync to 1), the decoder's first input ids (every
// row is bos: a constant buffer uploaded at load), and copies between equal types (cudaMemcpy2DAsync).
//
// Every entry point checks its arguments on the host (vqa::Error kInvalidArgument), returns at once for an empty
// shape without touching its pointers, launches on `stream` (always the last argument) and allocates nothing.
// Element types: T in {float, __half, __nv_bfloat16} unless said otherwise; arithmetic is float.
#pragma once

#include <cstdint>

#if VQA_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#endif

namespace vqa {

// A [rows, cols] matrix copied between two row-strided buffers.
struct RowsShape {
    int64_t rows = 0;
    int64_t cols = 0;
    int64_t src_row_stride = 0;  // elements from src[r, 0] to src[r + 1, 0]; 0 means dense (cols)
    int64_t dst_row_stride = 0;  // elements from dst[r, 0] to dst[r + 1, 0]; 0 means dense (cols)

    int64_t src_stride() const { return src_row_stride == 0 ? cols : src_row_stride; }
    int64_t dst_stride() const { return dst_row_stride == 0 ? cols : dst_row_stride; }
};

// One step of greedy decoding for a batch (engine/cpu_model.cpp decode_greedy).
struct GreedyStepParams {
    int64_t batch = 0;        // B
    int64_t num_answers = 0;  // A: logits per row
    int64_t step = 0;         // s in [0, max_steps): step 0 starts every row afresh (done = 0, score = 1)
    int64_t max_steps = 0;    // columns of tokens
    int32_t eos_id = 0;       // a row that picks eos records it and is done from the next step on
};

#if VQA_WITH_CUDA
namespace cuda {

// dst[i] = (Dst) src[i] for n elements, rounding to nearest; 16-byte loads/stores when both pointers allow.
// Instantiated for float -> float, float -> __half, float -> __nv_bfloat16, __half -> float and
// __nv_bfloat16 -> float. src and dst must not overlap.
template <typename Src, typename Dst>
void convert(const Src* src,  // [n]
             Dst* dst,        // [n]
             int64_t n,
             cudaStream_t stream);

// dst[r, c] = (Dst) src[r, c] for a [rows, cols] matrix between row-strided buffers (columns of dst outside
// [0, cols) are left as they are). Same instantiations and vectorisation as convert.
template <typename Src, typename Dst>
void convert_rows(const RowsShape& shape,
                  const Src* src,  // [rows, cols], rows shape.src_stride() apart
                  Dst* dst,        // [rows, cols], rows shape.dst_stride() apart
                  cudaStream_t stream);

// dst[b, :] = src[index[b], :] for blocks of `block` elements: image tokens [Bi, Ni, d] -> [B, Ni, d] with
// block = Ni·d, masks [Bi, Ni] -> [B, Ni] with block = Ni, pooled vectors [Bi, d] -> [B, d] with block = d.
// index lives on the device; an index outside [0, src_rows) is the caller's error (validate on the host: the
// kernel cannot throw) and gives a zero block rather than an out-of-bounds read. Moves 16-byte words when the
// block and both pointers allow. Instantiated for float, __half, __nv_bfloat16 and uint8_t. dst must not
// overlap src.
template <typename T>
void gather_rows(const T* src,          // [src_rows, block]
                 int64_t src_rows,      // Bi
                 const int64_t* index,  // [count], device
                 int64_t count,         // B
                 int64_t block,         // elements per row
                 T* dst,                // [count, block]
                 cudaStream_t stream);

// x[b, l, :] += pos[l, :] in place (the transformer text encoder: embedding + position), the sum in float and
// rounded once to T. pos has at least L rows (the table's first L are used).
template <typename T>
void add_position(T* x,          // [B, L, d]
                  const T* pos,  // [>= L, d]
                  int64_t batch,
                  int64_t seq_len,
                  int64_t dim,
                  cudaStream_t stream);

// mask[b, l] = l < lengths[b] ? 1 : 0 (1 = valid position, the mask convention of kernels/cpu/masked_softmax.h).
void lengths_to_mask(const int64_t* lengths,  // [B], device
                     int64_t batch,
                     int64_t seq_len,
                     uint8_t* mask,  // [B, L]
                     cudaStream_t stream);

// mask[r] = 1 if any element of feat[r, :] is not zero, else 0: the region rule of cpu_image_encoder.cpp
// (PyTorch's `(regions == 0).all(-1)` masks a row): -0.0 counts as zero, a NaN as not zero. Decided on the
// region features alone, never the box features. Run it on the fp32 input before converting to fp16/bf16, where
// a tiny value can round to zero.
template <typename T>
void nonzero_row_mask(const T* feat,  // [rows, cols]
                      int64_t rows,
                      int64_t cols,
                      uint8_t* mask,  // [rows]
                      cudaStream_t stream);

// ids[r] = the first index of the maximum of row r: ties go to the lower index, and NaN is treated as
// std::max_element treats it (what the CPU decoder's first_argmax uses): a NaN never replaces the running
// maximum, and a NaN in column 0 is never replaced, so a row starting with NaN gives 0, and otherwise the result
// is the first maximum of the row's other values (0 when they are all NaN). One block per row.
template <typename T>
void argmax_rows(const T* x,  // [rows, cols]
                 int64_t rows,
                 int64_t cols,
                 int32_t* ids,  // [rows]
                 cudaStream_t stream);

// One greedy decoding step after the output projection: for every row b,
//   next[b] = argmax_rows(logits[b, :]) (the same tie and NaN rules), the next step's input id, for every row;
//   if b is not done (step 0: no row is): scores[b] *= softmax(logits[b, :])[next[b]] (step 0: scores[b] = that
//   probability), tokens[b, step] = next[b], done[b] = next[b] == eos_id;
//   else tokens[b, step] = -1, scores and done unchanged.
// A row's answer is tokens[b, 0..] up to its first -1 (eos included). The probability is 1 / Σ_j exp(logit_j −
// logit_next) in float, the CPU's softmax value at the argmax. All steps can run without reading done back
// (CUDA graphs); finished rows then cost one block each. next, done, scores and tokens are four separate buffers.
template <typename T>
void greedy_step(const GreedyStepParams& params,
                 const T* logits,  // [B, A]
                 int32_t* next,    // [B]
                 uint8_t* done,    // [B]
                 float* scores,    // [B]
                 int32_t* tokens,  // [B, max_steps]
                 cudaStream_t stream);

// dst[n, c, r] = src[n, r, c]: the grid trunk's [Bi, C, h·w] feature maps to [Bi, h·w, C] tokens. 32 × 32 tiles
// through shared memory, so both the reads and the writes are coalesced. dst must not overlap src.
template <typename T>
void batched_transpose(const T* src,  // [N, R, C]
                       T* dst,        // [N, C, R]
                       int64_t batch,
                       int64_t rows,
                       int64_t cols,
                       cudaStream_t stream);

#define VQA_DETAIL_DECLARE_CONVERT(Src, Dst)                                         \
    extern template void convert<Src, Dst>(const Src*, Dst*, int64_t, cudaStream_t); \
    extern template void convert_rows<Src, Dst>(const RowsShape&, const Src*, Dst*, cudaStream_t);
VQA_DETAIL_DECLARE_CONVERT(float, float)
VQA_DETAIL_DECLARE_CONVERT(float, __half)
VQA_DETAIL_DECLARE_CONVERT(float, __nv_bfloat16)
VQA_DETAIL_DECLARE_CONVERT(__half, float)
VQA_DETAIL_DECLARE_CONVERT(__nv_bfloat16, float)
#undef VQA_DETAIL_DECLARE_CONVERT

extern template void gather_rows<uint8_t>(
    const uint8_t*, int64_t, const int64_t*, int64_t, int64_t, uint8_t*, cudaStream_t);

#define VQA_DETAIL_DECLARE_TENSOR_OPS(T)                                                                         \
    extern template void gather_rows<T>(const T*, int64_t, const int64_t*, int64_t, int64_t, T*, cudaStream_t);  \
    extern template void add_position<T>(T*, const T*, int64_t, int64_t, int64_t, cudaStream_t);                 \
    extern template void nonzero_row_mask<T>(const T*, int64_t, int64_t, uint8_t*, cudaStream_t);                \
    extern template void argmax_rows<T>(const T*, int64_t, int64_t, int32_t*, cudaStream_t);                     \
    extern template void greedy_step<T>(const GreedyStepParams&, const T*, int32_t*, uint8_t*, float*, int32_t*, \
                                        cudaStream_t);                                                           \
    extern template void batched_transpose<T>(const T*, T*, int64_t, int64_t, int64_t, cudaStream_t);
VQA_DETAIL_DECLARE_TENSOR_OPS(float)
VQA_DETAIL_DECLARE_TENSOR_OPS(__half)
VQA_DETAIL_DECLARE_TENSOR_OPS(__nv_bfloat16)
#undef VQA_DETAIL_DECLARE_TENSOR_OPS

}  // namespace cuda
#endif

}  // namespace vqa

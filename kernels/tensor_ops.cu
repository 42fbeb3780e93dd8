// The glue ops of the model graph on the GPU (kernels/tensor_ops.h): conversions, gathers, masks, position add,
// argmax and the greedy decoder's bookkeeping, and the feature-map transpose.
//
// Everything here is memory- or latency-bound, so the kernels aim at full-width accesses and no idle warps rather
// than at arithmetic: element-wise kernels run a 2-D grid-stride loop (rows × units of a row, no index division)
// and move 16 bytes per thread where the pointers and row lengths allow, with an element-wide instantiation as
// the fallback; pure data movement (gather) is templated on the storage word, not on the element type.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "kernels/check.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_reduce.cuh"
#include "kernels/element_convert.cuh"
#include "kernels/tensor_ops.h"
#include "kernels/trace.h"
#include "kernels/vector_io.cuh"

namespace vqa::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / kWarpSize;
constexpr int64_t kMaxGridX = int64_t{1} << 16;  // grid-stride beyond: 2^16 blocks already fill any GPU
constexpr int64_t kMaxGridYZ = 65535;            // the hardware limit of gridDim.y and gridDim.z

constexpr int kTile = 32;     // batched_transpose: a 32 × 32 tile per block ...
constexpr int kTileRows = 8;  // ... read and written by 32 × 8 threads, 4 elements each

int64_t ceil_div(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

struct Launch {
    dim3 grid;
    dim3 block;
};

// Threads along a row's units (a multiple of the warp size, at most kThreads), the rest of the block along rows,
// so that short rows (a mask of 14 positions, Hd = 31) still fill whole warps.
Launch launch_2d(int64_t rows, int64_t units) {
    const int64_t warps_x = std::clamp<int64_t>(ceil_div(units, kWarpSize), 1, kWarpsPerBlock);
    Launch l;
    l.block = dim3(static_cast<unsigned>(warps_x * kWarpSize), static_cast<unsigned>(kWarpsPerBlock / warps_x));
    l.grid = dim3(static_cast<unsigned>(std::min(ceil_div(units, l.block.x), kMaxGridX)),
                  static_cast<unsigned>(std::min(ceil_div(rows, l.block.y), kMaxGridYZ)));
    return l;
}

// 2-D grid-stride loop over rows r and units u of launch_2d's grid.
#define VQA_FOR_EACH_ROW(r, rows) \
    for (int64_t r = int64_t{blockIdx.y} * blockDim.y + threadIdx.y; r < (rows); r += int64_t{gridDim.y} * blockDim.y)
#define VQA_FOR_EACH_UNIT(u, units) \
    for (int64_t u = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; u < (units); u += int64_t{gridDim.x} * blockDim.x)

// N elements loaded and stored as one access of N·sizeof(T) bytes (the pointer must be aligned to that).
template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
    T v[N];
};

template <typename Dst, typename Src>
__device__ __forceinline__ Dst convert_element(Src v) {
    return from_float<Dst>(to_float(v));
}

// ---- convert ----------------------------------------------------------------------------------------------------

// Each row is cols / kVec packs and then cols % kVec single elements (a tail only when rows == 1 or kVec == 1:
// the launcher vectorises multi-row copies only when every row start is aligned).
template <typename Src, typename Dst, int kVec>
__global__ void __launch_bounds__(kThreads) convert_kernel(const Src* __restrict__ src,  // [rows, cols]
                                                           int64_t src_stride,
                                                           Dst* __restrict__ dst,  // [rows, cols]
                                                           int64_t dst_stride,
                                                           int64_t rows,
                                                           int64_t cols) {
    const int64_t packs = cols / kVec;
    const int64_t units = packs + (cols - packs * kVec);
    VQA_FOR_EACH_ROW(r, rows) {
        const Src* s = src + r * src_stride;
        Dst* d = dst + r * dst_stride;
        VQA_FOR_EACH_UNIT(u, units) {
            if (u < packs) {
                const Pack<Src, kVec> in = *reinterpret_cast<const Pack<Src, kVec>*>(s + u * kVec);
                Pack<Dst, kVec> out;
#pragma unroll
                for (int i = 0; i < kVec; ++i) {
                    out.v[i] = convert_element<Dst>(in.v[i]);
                }
                *reinterpret_cast<Pack<Dst, kVec>*>(d + u * kVec) = out;
            } else {
                const int64_t c = packs * kVec + (u - packs);
                d[c] = convert_element<Dst>(s[c]);
            }
        }
    }
}

template <typename Src, typename Dst>
void convert_cuda(const RowsShape& shape, const Src* src, Dst* dst, const char* op, cudaStream_t stream) {
    VQA_CHECK(shape.rows >= 0 && shape.cols >= 0, kInvalidArgument, op,
              ": expected non-negative sizes, got rows=", shape.rows, " cols=", shape.cols);
    VQA_CHECK((shape.src_row_stride == 0 || shape.src_row_stride >= shape.cols) &&
                  (shape.dst_row_stride == 0 || shape.dst_row_stride >= shape.cols),
              kInvalidArgument, op, ": expected row strides >= cols = ", shape.cols, " (or 0 for dense rows), got src ",
              shape.src_row_stride, " and dst ", shape.dst_row_stride);
    if (shape.rows == 0 || shape.cols == 0) {
        return;
    }
    VQA_CHECK(src != nullptr && dst != nullptr, kInvalidArgument, op, ": src and dst must not be null");
    constexpr int kVec = kVectorBytes / static_cast<int>(std::max(sizeof(Src), sizeof(Dst)));
    const int64_t src_stride = shape.src_stride();
    const int64_t dst_stride = shape.dst_stride();
    const bool vectorised = is_aligned(src, kVec * sizeof(Src)) && is_aligned(dst, kVec * sizeof(Dst)) &&
                            (shape.rows == 1 || (src_stride % kVec == 0 && dst_stride % kVec == 0));
    const int vec = vectorised ? kVec : 1;
    const int64_t packs = shape.cols / vec;
    const Launch l = launch_2d(shape.rows, packs + (shape.cols - packs * vec));
    if (vectorised) {
        convert_kernel<Src, Dst, kVec>
            <<<l.grid, l.block, 0, stream>>>(src, src_stride, dst, dst_stride, shape.rows, shape.cols);
    } else {
        convert_kernel<Src, Dst, 1>
            <<<l.grid, l.block, 0, stream>>>(src, src_stride, dst, dst_stride, shape.rows, shape.cols);
    }
    VQA_CUDA_CHECK_LAUNCH(stream);
}

// ---- gather_rows ------------------------------------------------------------------------------------------------

template <typename Word>
__global__ void __launch_bounds__(kThreads) gather_rows_kernel(const Word* __restrict__ src,  // [src_rows, words]
                                                               int64_t src_rows,
                                                               const int64_t* __restrict__ index,  // [count]
                                                               int64_t count,
                                                               int64_t words,             // per row
                                                               Word* __restrict__ dst) {  // [count, words]
    VQA_FOR_EACH_ROW(b, count) {
        const int64_t s = index[b];
        const bool valid = s >= 0 && s < src_rows;
        const Word* from = src + (valid ? s : 0) * words;
        Word* to = dst + b * words;
        VQA_FOR_EACH_UNIT(u, words) {
            to[u] = valid ? from[u] : Word{};
        }
    }
}

// ---- add_position -----------------------------------------------------------------------------------------------

template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads) add_position_kernel(T* __restrict__ x,          // [B·L, d]
                                                                const T* __restrict__ pos,  // [>= L, d]
                                                                int64_t rows,               // B·L
                                                                int64_t seq_len,            // L
                                                                int64_t dim) {              // d, a multiple of kVec
    const int64_t packs = dim / kVec;
    VQA_FOR_EACH_ROW(r, rows) {
        auto* xr = reinterpret_cast<Pack<T, kVec>*>(x + r * dim);
        const auto* pr = reinterpret_cast<const Pack<T, kVec>*>(pos + (r % seq_len) * dim);
        VQA_FOR_EACH_UNIT(u, packs) {
            Pack<T, kVec> a = xr[u];
            const Pack<T, kVec> p = pr[u];
#pragma unroll
            for (int i = 0; i < kVec; ++i) {
                a.v[i] = from_float<T>(to_float(a.v[i]) + to_float(p.v[i]));
            }
            xr[u] = a;
        }
    }
}

// ---- lengths_to_mask --------------------------------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads) lengths_to_mask_kernel(const int64_t* __restrict__ lengths,  // [B]
                                                                   int64_t batch,
                                                                   int64_t seq_len,
                                                                   uint8_t* __restrict__ mask) {  // [B, L]
    VQA_FOR_EACH_ROW(b, batch) {
        const int64_t length = lengths[b];
        VQA_FOR_EACH_UNIT(l, seq_len) {
            mask[b * seq_len + l] = l < length ? 1 : 0;
        }
    }
}

#undef VQA_FOR_EACH_ROW
#undef VQA_FOR_EACH_UNIT

// ---- nonzero_row_mask -------------------------------------------------------------------------------------------

// The OR of a word's 32-bit parts (a 1- or 2-byte word widened).
template <typename Word>
__device__ __forceinline__ uint32_t or_parts(Word w) {
    if constexpr (std::is_same_v<Word, uint4>) {
        return w.x | w.y | w.z | w.w;
    } else if constexpr (std::is_same_v<Word, uint2>) {
        return w.x | w.y;
    } else {
        return w;
    }
}

// One warp per row. A float, half or bf16 value is ±0 exactly when its bits other than the sign are 0, and a NaN
// never is, so `magnitude` (the sign bits cleared, per element of a 32-bit part) applied to the OR of the row's
// bits decides the row without converting a single element.
template <typename Word>
__global__ void __launch_bounds__(kThreads) nonzero_row_mask_kernel(const Word* __restrict__ feat,  // [rows, words]
                                                                    int64_t rows,
                                                                    int64_t words,
                                                                    uint32_t magnitude,
                                                                    uint8_t* __restrict__ mask) {  // [rows]
    const int lane = static_cast<int>(threadIdx.x % kWarpSize);
    const int64_t warps = int64_t{gridDim.x} * kWarpsPerBlock;
    // r depends only on the warp, so every lane of a warp runs the same iterations (the full-mask vote is safe).
    for (int64_t r = int64_t{blockIdx.x} * kWarpsPerBlock + threadIdx.x / kWarpSize; r < rows; r += warps) {
        const Word* row = feat + r * words;
        uint32_t bits = 0;
        for (int64_t w = lane; w < words; w += kWarpSize) {
            bits |= or_parts(row[w]);
        }
        const bool any = __any_sync(kFullMask, (bits & magnitude) != 0) != 0;
        if (lane == 0) {
            mask[r] = any ? 1 : 0;
        }
    }
}

// ---- argmax_rows and greedy_step --------------------------------------------------------------------------------

// A candidate maximum; index -1 means none yet. Values of candidates are never NaN.
struct ArgMax {
    float value;
    int index;
};

// The better of two candidates: the larger value, ties to the lower index.
__device__ __forceinline__ ArgMax better(ArgMax a, ArgMax b) {
    if (b.index < 0) {
        return a;
    }
    if (a.index < 0) {
        return b;
    }
    return (b.value > a.value || (b.value == a.value && b.index < a.index)) ? b : a;
}

// The argmax of a row by the whole block, with std::max_element's NaN behaviour (tensor_ops.h): the first maximum
// over the non-NaN values, unless row[0] is NaN, which max_element never replaces. Every thread gets the result.
// `scratch` is reusable when it returns (trailing barrier).
template <typename T>
__device__ ArgMax block_argmax(const T* row, int cols, ArgMax* scratch) {  // scratch: [kWarpsPerBlock]
    ArgMax best{0.0f, -1};
    for (int64_t j = threadIdx.x; j < cols; j += kThreads) {  // 64-bit: j + kThreads may pass 2^31 - 1
        const float v = to_float(row[j]);
        if (!isnan(v) && (best.index < 0 || v > best.value)) {  // j increases: a tie keeps the earlier index
            best = {v, static_cast<int>(j)};
        }
    }
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
        const ArgMax other{__shfl_xor_sync(kFullMask, best.value, offset),
                           __shfl_xor_sync(kFullMask, best.index, offset)};
        best = better(best, other);
    }
    if (threadIdx.x % kWarpSize == 0) {
        scratch[threadIdx.x / kWarpSize] = best;
    }
    __syncthreads();
    best = scratch[0];
    for (int w = 1; w < kWarpsPerBlock; ++w) {
        best = better(best, scratch[w]);
    }
    __syncthreads();
    const float first = to_float(row[0]);
    return isnan(first) ? ArgMax{first, 0} : best;  // also the all-NaN row, where best has no candidate
}

// One block per row; the row loop is uniform over the block, so the barriers inside are safe.
template <typename T>
__global__ void __launch_bounds__(kThreads) argmax_rows_kernel(const T* __restrict__ x,  // [rows, cols]
                                                               int64_t rows,
                                                               int cols,
                                                               int32_t* __restrict__ ids) {  // [rows]
    __shared__ ArgMax scratch[kWarpsPerBlock];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const ArgMax best = block_argmax(x + r * cols, cols, scratch);
        if (threadIdx.x == 0) {
            ids[r] = best.index;
        }
    }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) greedy_step_kernel(GreedyStepParams p,
                                                               const T* __restrict__ logits,    // [B, A]
                                                               int32_t* __restrict__ next,      // [B]
                                                               uint8_t* __restrict__ done,      // [B]
                                                               float* __restrict__ scores,      // [B]
                                                               int32_t* __restrict__ tokens) {  // [B, max_steps]
    __shared__ ArgMax arg_scratch[kWarpsPerBlock];
    __shared__ float sum_scratch[kWarpsPerBlock];
    const int cols = static_cast<int>(p.num_answers);
    for (int64_t b = blockIdx.x; b < p.batch; b += gridDim.x) {
        const T* row = logits + b * cols;
        const ArgMax best = block_argmax(row, cols, arg_scratch);
        // softmax(row)[best] = exp(0) / Σ exp(row_j − max) = 1 / Σ: the CPU's value (its max is the same fmax over
        // the non-NaN values). A NaN anywhere in the row makes the sum, hence the score, NaN, as on the CPU.
        float sum = 0.0f;
        for (int64_t j = threadIdx.x; j < cols; j += kThreads) {
            sum += expf(to_float(row[j]) - best.value);
        }
        sum = block_reduce<kWarpsPerBlock>(sum, sum_scratch, SumOp{});
        if (threadIdx.x == 0) {
            const bool was_done = p.step > 0 && done[b] != 0;
            int32_t* token = tokens + b * p.max_steps + p.step;
            if (was_done) {
                *token = -1;
            } else {
                const float previous = p.step > 0 ? scores[b] : 1.0f;
                scores[b] = previous * (1.0f / sum);
                *token = best.index;
                done[b] = best.index == p.eos_id ? 1 : 0;
            }
            next[b] = best.index;
        }
    }
}

void check_rows_cols(int64_t rows, int64_t cols, const char* op) {
    VQA_CHECK(rows >= 0 && cols >= 1, kInvalidArgument, op, ": expected rows >= 0 and cols >= 1, got rows=", rows,
              " cols=", cols);
    VQA_CHECK(cols <= std::numeric_limits<int>::max(), kInvalidArgument, op, ": cols = ", cols,
              " must fit in 32 bits (the ids are int32)");
}

// ---- batched_transpose ------------------------------------------------------------------------------------------

// Moves bits only, so Word is the unsigned type of the element's size. The +1 column of the tile puts the 32
// elements of a tile column in 32 different banks (for 2-byte words too: a row of 33 halves is 66 bytes).
template <typename Word>
__global__ void __launch_bounds__(kTile* kTileRows) transpose_kernel(const Word* __restrict__ src,  // [N, R, C]
                                                                     Word* __restrict__ dst,        // [N, C, R]
                                                                     int64_t batch,
                                                                     int64_t rows,
                                                                     int64_t cols) {
    __shared__ Word tile[kTile][kTile + 1];
    const int64_t c0 = int64_t{blockIdx.x} * kTile;
    // Both loops are uniform over the block, so the barriers inside are safe.
    for (int64_t n = blockIdx.z; n < batch; n += gridDim.z) {
        const Word* s = src + n * rows * cols;
        Word* d = dst + n * rows * cols;
        for (int64_t r0 = int64_t{blockIdx.y} * kTile; r0 < rows; r0 += int64_t{gridDim.y} * kTile) {
            for (int k = 0; k < kTile; k += kTileRows) {
                const int64_t r = r0 + threadIdx.y + k;
                const int64_t c = c0 + threadIdx.x;
                if (r < rows && c < cols) {
                    tile[threadIdx.y + k][threadIdx.x] = s[r * cols + c];
                }
            }
            __syncthreads();
            for (int k = 0; k < kTile; k += kTileRows) {
                const int64_t c = c0 + threadIdx.y + k;
                const int64_t r = r0 + threadIdx.x;
                if (c < cols && r < rows) {
                    d[c * rows + r] = tile[threadIdx.x][threadIdx.y + k];
                }
            }
            __syncthreads();
        }
    }
}

}  // namespace

template <typename Src, typename Dst>
void convert(const Src* src, Dst* dst, int64_t n, cudaStream_t stream) {
    const TraceRange range("convert", stream);
    RowsShape shape;
    shape.rows = 1;
    shape.cols = n;
    convert_cuda(shape, src, dst, "convert", stream);
}

template <typename Src, typename Dst>
void convert_rows(const RowsShape& shape, const Src* src, Dst* dst, cudaStream_t stream) {
    const TraceRange range("convert_rows", stream);
    convert_cuda(shape, src, dst, "convert_rows", stream);
}

template <typename T>
void gather_rows(
    const T* src, int64_t src_rows, const int64_t* index, int64_t count, int64_t block, T* dst, cudaStream_t stream) {
    const TraceRange range("gather_rows", stream);
    VQA_CHECK(src_rows >= 0 && count >= 0 && block >= 0, kInvalidArgument,
              "gather_rows: expected non-negative sizes, got src_rows=", src_rows, " count=", count, " block=", block);
    if (count == 0 || block == 0) {
        return;
    }
    VQA_CHECK(src != nullptr && index != nullptr && dst != nullptr, kInvalidArgument,
              "gather_rows: src, index and dst must not be null");
    constexpr int kElemBytes = static_cast<int>(sizeof(T));
    const int word = widest_word_bytes(kElemBytes, block * kElemBytes, src, dst);
    const int64_t words = block * kElemBytes / word;
    const Launch l = launch_2d(count, words);
    dispatch_word<kElemBytes>(word, [&](auto word_tag) {
        using Word = decltype(word_tag);
        gather_rows_kernel<Word><<<l.grid, l.block, 0, stream>>>(reinterpret_cast<const Word*>(src), src_rows, index,
                                                                 count, words, reinterpret_cast<Word*>(dst));
    });
    VQA_CUDA_CHECK_LAUNCH(stream);
}

template <typename T>
void add_position(T* x, const T* pos, int64_t batch, int64_t seq_len, int64_t dim, cudaStream_t stream) {
    const TraceRange range("add_position", stream);
    VQA_CHECK(batch >= 0 && seq_len >= 0 && dim >= 0, kInvalidArgument,
              "add_position: expected non-negative sizes, got B=", batch, " L=", seq_len, " d=", dim);
    if (batch == 0 || seq_len == 0 || dim == 0) {
        return;
    }
    VQA_CHECK(x != nullptr && pos != nullptr, kInvalidArgument, "add_position: x and pos must not be null");
    constexpr int kVec = kVectorBytes / static_cast<int>(sizeof(T));
    const bool vectorised = dim % kVec == 0 && is_aligned(x, kVectorBytes) && is_aligned(pos, kVectorBytes);
    const int64_t rows = batch * seq_len;
    const Launch l = launch_2d(rows, vectorised ? dim / kVec : dim);
    if (vectorised) {
        add_position_kernel<T, kVec><<<l.grid, l.block, 0, stream>>>(x, pos, rows, seq_len, dim);
    } else {
        add_position_kernel<T, 1><<<l.grid, l.block, 0, stream>>>(x, pos, rows, seq_len, dim);
    }
    VQA_CUDA_CHECK_LAUNCH(stream);
}

void lengths_to_mask(const int64_t* lengths, int64_t batch, int64_t seq_len, uint8_t* mask, cudaStream_t stream) {
    const TraceRange range("lengths_to_mask", stream);
    VQA_CHECK(batch >= 0 && seq_len >= 0, kInvalidArgument,
              "lengths_to_mask: expected non-negative sizes, got B=", batch, " L=", seq_len);
    if (batch == 0 || seq_len == 0) {
        return;
    }
    VQA_CHECK(lengths != nullptr && mask != nullptr, kInvalidArgument,
              "lengths_to_mask: lengths and mask must not be null");
    const Launch l = launch_2d(batch, seq_len);
    lengths_to_mask_kernel<<<l.grid, l.block, 0, stream>>>(lengths, batch, seq_len, mask);
    VQA_CUDA_CHECK_LAUNCH(stream);
}

template <typename T>
void nonzero_row_mask(const T* feat, int64_t rows, int64_t cols, uint8_t* mask, cudaStream_t stream) {
    const TraceRange range("nonzero_row_mask", stream);
    VQA_CHECK(rows >= 0 && cols >= 0, kInvalidArgument,
              "nonzero_row_mask: expected non-negative sizes, got rows=", rows, " cols=", cols);
    if (rows == 0) {
        return;
    }
    VQA_CHECK(mask != nullptr && (feat != nullptr || cols == 0), kInvalidArgument,
              "nonzero_row_mask: feat and mask must not be null");
    constexpr int kElemBytes = static_cast<int>(sizeof(T));
    const int64_t row_bytes = cols * kElemBytes;
    // With cols = 0 every row is empty (masked); any word size reads nothing.
    const int word = widest_word_bytes(kElemBytes, row_bytes, feat);
    const uint32_t magnitude = sizeof(T) == 4 ? 0x7fffffffu : 0x7fff7fffu;
    const auto blocks = static_cast<unsigned>(std::min(ceil_div(rows, kWarpsPerBlock), kMaxGridX));
    dispatch_word<kElemBytes>(word, [&](auto word_tag) {
        using Word = decltype(word_tag);
        nonzero_row_mask_kernel<Word><<<blocks, kThreads, 0, stream>>>(reinterpret_cast<const Word*>(feat), rows,
                                                                       row_bytes / word, magnitude, mask);
    });
    VQA_CUDA_CHECK_LAUNCH(stream);
}

template <typename T>
void argmax_rows(const T* x, int64_t rows, int64_t cols, int32_t* ids, cudaStream_t stream) {
    const TraceRange range("argmax_rows", stream);
    check_rows_cols(rows, cols, "argmax_rows");
    if (rows == 0) {
        return;
    }
    VQA_CHECK(x != nullptr && ids != nullptr, kInvalidArgument, "argmax_rows: x and ids must not be null");
    const auto blocks = static_cast<unsigned>(std::min<int64_t>(rows, kMaxGridX));
    argmax_rows_kernel<T><<<blocks, kThreads, 0, stream>>>(x, rows, static_cast<int>(cols), ids);
    VQA_CUDA_CHECK_LAUNCH(stream);
}

template <typename T>
void greedy_step(const GreedyStepParams& params,
                 const T* logits,
                 int32_t* next,
                 uint8_t* done,
                 float* scores,
                 int32_t* tokens,
                 cudaStream_t stream) {
    const TraceRange range("greedy_step", stream);
    check_rows_cols(params.batch, params.num_answers, "greedy_step");
    VQA_CHECK(params.step >= 0 && params.step < params.max_steps, kInvalidArgument,
              "greedy_step: expected 0 <= step < max_steps, got step=", params.step, " max_steps=", params.max_steps);
    if (params.batch == 0) {
        return;
    }
    VQA_CHECK(logits != nullptr && next != nullptr && done != nullptr && scores != nullptr && tokens != nullptr,
              kInvalidArgument, "greedy_step: logits, next, done, scores and tokens must not be null");
    const auto blocks = static_cast<unsigned>(std::min<int64_t>(params.batch, kMaxGridX));
    greedy_step_kernel<T><<<blocks, kThreads, 0, stream>>>(params, logits, next, done, scores, tokens);
    VQA_CUDA_CHECK_LAUNCH(stream);
}

template <typename T>
void batched_transpose(const T* src, T* dst, int64_t batch, int64_t rows, int64_t cols, cudaStream_t stream) {
    const TraceRange range("batched_transpose", stream);
    VQA_CHECK(batch >= 0 && rows >= 0 && cols >= 0, kInvalidArgument,
              "batched_transpose: expected non-negative sizes, got N=", batch, " R=", rows, " C=", cols);
    if (batch == 0 || rows == 0 || cols == 0) {
        return;
    }
    VQA_CHECK(src != nullptr && dst != nullptr, kInvalidArgument, "batched_transpose: src and dst must not be null");
    VQA_CHECK(ceil_div(cols, kTile) <= std::numeric_limits<int>::max(), kInvalidArgument,
              "batched_transpose: C = ", cols, " exceeds one launch; split the columns");
    const dim3 block(kTile, kTileRows);
    const dim3 grid(static_cast<unsigned>(ceil_div(cols, kTile)),
                    static_cast<unsigned>(std::min(ceil_div(rows, kTile), kMaxGridYZ)),
                    static_cast<unsigned>(std::min(batch, kMaxGridYZ)));
    using Word = std::conditional_t<sizeof(T) == 4, uint32_t, uint16_t>;
    static_assert(sizeof(Word) == sizeof(T), "elements are 2 or 4 bytes wide");
    transpose_kernel<Word><<<grid, block, 0, stream>>>(reinterpret_cast<const Word*>(src), reinterpret_cast<Word*>(dst),
                                                       batch, rows, cols);
    VQA_CUDA_CHECK_LAUNCH(stream);
}

#define VQA_DETAIL_INSTANTIATE_CONVERT(Src, Dst)                              \
    template void convert<Src, Dst>(const Src*, Dst*, int64_t, cudaStream_t); \
    template void convert_rows<Src, Dst>(const RowsShape&, const Src*, Dst*, cudaStream_t);
VQA_DETAIL_INSTANTIATE_CONVERT(float, float)
VQA_DETAIL_INSTANTIATE_CONVERT(float, __half)
VQA_DETAIL_INSTANTIATE_CONVERT(float, __nv_bfloat16)
VQA_DETAIL_INSTANTIATE_CONVERT(__half, float)
VQA_DETAIL_INSTANTIATE_CONVERT(__nv_bfloat16, float)
#undef VQA_DETAIL_INSTANTIATE_CONVERT

template void gather_rows<uint8_t>(const uint8_t*, int64_t, const int64_t*, int64_t, int64_t, uint8_t*, cudaStream_t);

#define VQA_DETAIL_INSTANTIATE_TENSOR_OPS(T)                                                              \
    template void gather_rows<T>(const T*, int64_t, const int64_t*, int64_t, int64_t, T*, cudaStream_t);  \
    template void add_position<T>(T*, const T*, int64_t, int64_t, int64_t, cudaStream_t);                 \
    template void nonzero_row_mask<T>(const T*, int64_t, int64_t, uint8_t*, cudaStream_t);                \
    template void argmax_rows<T>(const T*, int64_t, int64_t, int32_t*, cudaStream_t);                     \
    template void greedy_step<T>(const GreedyStepParams&, const T*, int32_t*, uint8_t*, float*, int32_t*, \
                                 cudaStream_t);                                                           \
    template void batched_transpose<T>(const T*, T*, int64_t, int64_t, int64_t, cudaStream_t);
VQA_DETAIL_INSTANTIATE_TENSOR_OPS(float)
VQA_DETAIL_INSTANTIATE_TENSOR_OPS(__half)
VQA_DETAIL_INSTANTIATE_TENSOR_OPS(__nv_bfloat16)
#undef VQA_DETAIL_INSTANTIATE_TENSOR_OPS

}  // namespace vqa::cuda

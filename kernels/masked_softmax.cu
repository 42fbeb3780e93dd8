// Scaled masked softmax on the GPU: rows of [R, Lk] scores, float statistics, half/bf16/float I/O.
//
// Rows up to kMaxWarpCols keys run one warp per row with the row held in registers (kElemsPerLane values per
// lane, element j = lane + 32·t so every load and store of a warp is one contiguous run); the row is read once
// and written once, which also makes in-place calls safe. Longer rows run one block per row in three passes
// over global memory (max, sum, write): each thread only ever touches its own elements, so in place is safe too.
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/cuda_check.h"
#include "kernels/cuda_reduce.cuh"
#include "kernels/element_convert.cuh"
#include "kernels/masked_softmax.h"
#include "kernels/trace.h"

namespace vqa::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;  // warp-per-row kernel: 4 rows per 128-thread block
constexpr int kMaxElemsPerLane = 32;
constexpr int kMaxWarpCols = kWarpSize * kMaxElemsPerLane;  // 1024
constexpr int kRowBlockThreads = 256;                       // block-per-row kernel
constexpr int kRowBlockWarps = kRowBlockThreads / kWarpSize;

// The pieces of one row: where its scores, key mask and additive mask start.
struct RowInputs {
    const uint8_t* mask;    // [Lk] or null
    const float* additive;  // [Lk] or null
};

__device__ __forceinline__ RowInputs row_inputs(const SoftmaxParams& p,
                                                const uint8_t* key_mask,
                                                const float* additive,
                                                int64_t row) {
    RowInputs in;
    in.mask = key_mask != nullptr ? key_mask + (row / p.rows_per_mask) * p.cols : nullptr;
    in.additive = additive != nullptr ? additive + ((row / p.rows_per_additive) % p.additive_rows) * p.cols : nullptr;
    return in;
}

// scale · score + additive for key j, or -inf when the key is masked (by the key mask, or by an additive -inf).
template <typename T>
__device__ __forceinline__ float masked_logit(const T* scores, const RowInputs& in, float scale, int64_t j) {
    if (in.mask != nullptr && in.mask[j] == 0) {
        return -INFINITY;
    }
    float x = scale * to_float(scores[j]);
    if (in.additive != nullptr) {
        x += in.additive[j];
    }
    return x;
}

// What a row with no valid key gets (the MaskedRow rule).
__device__ __forceinline__ float masked_row_fill(const SoftmaxParams& p) {
    return p.masked_row == cpu::MaskedRow::kUniform ? 1.0f / static_cast<float>(p.cols) : 0.0f;
}

// One warp per row; Lk <= 32 · kElemsPerLane. Rows are distributed one per warp, kWarpsPerBlock per block.
template <typename T, int kElemsPerLane>
__global__ void __launch_bounds__(kWarpsPerBlock* kWarpSize)
    softmax_warp_per_row_kernel(SoftmaxParams p,
                                const T* scores,          // [R, Lk] (may alias probs)
                                const uint8_t* key_mask,  // [R / rows_per_mask, Lk] or null
                                const float* additive,    // [A, Lk] or null
                                T* probs) {               // [R, Lk]
    const int64_t row = int64_t{blockIdx.x} * kWarpsPerBlock + threadIdx.x / kWarpSize;
    if (row >= p.rows) {
        return;  // the whole warp leaves together: row depends only on the warp
    }
    const int lane = static_cast<int>(threadIdx.x % kWarpSize);
    const T* in_row = scores + row * p.cols;
    T* out_row = probs + row * p.cols;
    const RowInputs in = row_inputs(p, key_mask, additive, row);

    float x[kElemsPerLane];
    float row_max = -INFINITY;
#pragma unroll
    for (int t = 0; t < kElemsPerLane; ++t) {
        const int j = lane + t * kWarpSize;
        x[t] = j < p.cols ? masked_logit(in_row, in, p.scale, j) : -INFINITY;
        row_max = fmaxf(row_max, x[t]);
    }
    row_max = warp_max(row_max);

    if (row_max == -INFINITY) {  // no valid key: the fully masked row rule, never exp(-inf - -inf) = NaN
        const float fill = masked_row_fill(p);
#pragma unroll
        for (int t = 0; t < kElemsPerLane; ++t) {
            const int j = lane + t * kWarpSize;
            if (j < p.cols) {
                out_row[j] = from_float<T>(fill);
            }
        }
        return;
    }
    float sum = 0.0f;
#pragma unroll
    for (int t = 0; t < kElemsPerLane; ++t) {
        x[t] = expf(x[t] - row_max);  // a masked key: expf(-inf) = 0 exactly
        sum += x[t];
    }
    const float inv_sum = 1.0f / warp_sum(sum);
#pragma unroll
    for (int t = 0; t < kElemsPerLane; ++t) {
        const int j = lane + t * kWarpSize;
        if (j < p.cols) {
            out_row[j] = from_float<T>(x[t] * inv_sum);
        }
    }
}

// One block per row, for rows longer than kMaxWarpCols.
template <typename T>
__global__ void __launch_bounds__(kRowBlockThreads)
    softmax_block_per_row_kernel(SoftmaxParams p,
                                 const T* scores,          // [R, Lk] (may alias probs)
                                 const uint8_t* key_mask,  // [R / rows_per_mask, Lk] or null
                                 const float* additive,    // [A, Lk] or null
                                 T* probs) {               // [R, Lk]
    __shared__ float scratch[kRowBlockWarps];
    const int64_t row = blockIdx.x;
    const T* in_row = scores + row * p.cols;
    T* out_row = probs + row * p.cols;
    const RowInputs in = row_inputs(p, key_mask, additive, row);

    float row_max = -INFINITY;
    for (int64_t j = threadIdx.x; j < p.cols; j += kRowBlockThreads) {
        row_max = fmaxf(row_max, masked_logit(in_row, in, p.scale, j));
    }
    row_max = block_reduce<kRowBlockWarps>(row_max, scratch, MaxOp{});
    if (row_max == -INFINITY) {
        const float fill = masked_row_fill(p);
        for (int64_t j = threadIdx.x; j < p.cols; j += kRowBlockThreads) {
            out_row[j] = from_float<T>(fill);
        }
        return;
    }
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < p.cols; j += kRowBlockThreads) {
        sum += expf(masked_logit(in_row, in, p.scale, j) - row_max);
    }
    const float inv_sum = 1.0f / block_reduce<kRowBlockWarps>(sum, scratch, SumOp{});
    for (int64_t j = threadIdx.x; j < p.cols; j += kRowBlockThreads) {
        out_row[j] = from_float<T>(expf(masked_logit(in_row, in, p.scale, j) - row_max) * inv_sum);
    }
}

template <typename T, int kElemsPerLane>
void launch_warp_per_row(const SoftmaxParams& p,
                         const T* scores,
                         const uint8_t* key_mask,
                         const float* additive,
                         T* probs,
                         cudaStream_t stream) {
    const auto blocks = static_cast<unsigned>((p.rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
    softmax_warp_per_row_kernel<T, kElemsPerLane>
        <<<blocks, kWarpsPerBlock * kWarpSize, 0, stream>>>(p, scores, key_mask, additive, probs);
}

template <typename T>
void masked_softmax_cuda(const SoftmaxParams& p,
                         const T* scores,
                         const uint8_t* key_mask,
                         const float* additive,
                         T* probs,
                         cudaStream_t stream) {
    const TraceRange range("masked_softmax", stream);
    check_softmax_args(p, scores, probs, additive, "masked_softmax");
    if (p.rows == 0 || p.cols == 0) {
        return;
    }
    constexpr int64_t kMaxGridX = std::numeric_limits<int>::max();
    if (p.cols <= kMaxWarpCols) {
        VQA_CHECK((p.rows + kWarpsPerBlock - 1) / kWarpsPerBlock <= kMaxGridX, kInvalidArgument,
                  "masked_softmax: ", p.rows, " rows exceed one launch; split the rows into smaller calls");
        const int64_t per_lane = (p.cols + kWarpSize - 1) / kWarpSize;
        if (per_lane <= 1) {
            launch_warp_per_row<T, 1>(p, scores, key_mask, additive, probs, stream);
        } else if (per_lane <= 2) {
            launch_warp_per_row<T, 2>(p, scores, key_mask, additive, probs, stream);
        } else if (per_lane <= 4) {
            launch_warp_per_row<T, 4>(p, scores, key_mask, additive, probs, stream);
        } else if (per_lane <= 8) {
            launch_warp_per_row<T, 8>(p, scores, key_mask, additive, probs, stream);
        } else if (per_lane <= 16) {
            launch_warp_per_row<T, 16>(p, scores, key_mask, additive, probs, stream);
        } else {
            launch_warp_per_row<T, kMaxElemsPerLane>(p, scores, key_mask, additive, probs, stream);
        }
    } else {
        VQA_CHECK(p.rows <= kMaxGridX, kInvalidArgument, "masked_softmax: ", p.rows,
                  " rows exceed one launch; split the rows into smaller calls");
        softmax_block_per_row_kernel<T>
            <<<static_cast<unsigned>(p.rows), kRowBlockThreads, 0, stream>>>(p, scores, key_mask, additive, probs);
    }
    VQA_CUDA_CHECK_LAUNCH(stream);
}

}  // namespace

template <typename T>
void masked_softmax(const SoftmaxParams& params,
                    const T* scores,
                    const uint8_t* key_mask,
                    const float* additive,
                    std::add_pointer_t<T> probs,
                    cudaStream_t stream) {
    masked_softmax_cuda(params, scores, key_mask, additive, probs, stream);
}

// The element types the header promises.
#define VQA_INSTANTIATE_MASKED_SOFTMAX(T) \
    template void masked_softmax<T>(const SoftmaxParams&, const T*, const uint8_t*, const float*, T*, cudaStream_t);
VQA_INSTANTIATE_MASKED_SOFTMAX(float)
VQA_INSTANTIATE_MASKED_SOFTMAX(__half)
VQA_INSTANTIATE_MASKED_SOFTMAX(__nv_bfloat16)
#undef VQA_INSTANTIATE_MASKED_SOFTMAX

}  // namespace vqa::cuda

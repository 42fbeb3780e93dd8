// LayerNorm (+ residual) on the GPU: rows of [M, d], float statistics, float/half/bf16 I/O.
//
// Rows up to kMaxWarpCols elements run one warp per row with the summed row held in registers; longer rows run
// one block per row in three passes over global memory (sum, centred sums, write), which L1/L2 serve after the
// first. In both kernels every element is read and written by one thread only, and always read before that
// thread writes it, so y and pre_norm may alias x or residual without any barrier between reads and writes.
// (Nothing here is __restrict__ or read through the non-coherent path for the same reason.)
//
// Statistics: mean0 = Σs / d in float, then c = s − mean0, and from Σc and Σc² the corrected mean
// mean0 + Σc / d and M2 = Σc² − (Σc)² / d. The correction removes the rounding error of mean0, which matters
// when |mean| is large against the spread (a row around 100 with spread 1 keeps all of float's digits).
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/cuda_check.h"
#include "kernels/cuda_reduce.cuh"
#include "kernels/element_convert.cuh"
#include "kernels/layer_norm.h"
#include "kernels/trace.h"
#include "kernels/vector_io.cuh"

namespace vqa::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;  // warp-per-row kernel: 4 rows per 128-thread block
constexpr int kMaxWarpCols = 1024;
constexpr int kRowBlockThreads = 256;  // block-per-row kernel
constexpr int kRowBlockWarps = kRowBlockThreads / kWarpSize;

// s = x + residual for kVec elements at `offset`, rounded to T as the same sum in T would be.
template <typename T, int kVec>
__device__ __forceinline__ void load_sum(const T* x, const T* residual, int64_t offset, float (&s)[kVec]) {
    load_elems<T, kVec>(x + offset, s);
    if (residual != nullptr) {
        float r[kVec];
        load_elems<T, kVec>(residual + offset, r);
#pragma unroll
        for (int i = 0; i < kVec; ++i) {
            s[i] = to_float(from_float<T>(s[i] + r[i]));
        }
    }
}

// The normalisation of a row from its centred sums: y = ((s − mean0) − shift) · inv · w + b.
struct Normaliser {
    float shift;  // Σc / d: the rounding error of mean0
    float inv;    // 1 / sqrt(var + eps) or 1 / (std + eps)
};

__device__ __forceinline__ Normaliser make_normaliser(const LayerNormParams& p, float sum_c, float sum_c2) {
    const auto n = static_cast<float>(p.dim);
    const float shift = sum_c / n;
    const float m2 = fmaxf(sum_c2 - sum_c * shift, 0.0f);  // Σ(c − shift)²; never negative from rounding
    float inv;
    if (p.variant == cpu::LayerNormVariant::kStandard) {
        inv = 1.0f / sqrtf(m2 / n + p.eps);
    } else {
        inv = 1.0f / (sqrtf(m2 / (n - 1.0f)) + p.eps);
    }
    return {shift, inv};
}

// Writes kVec outputs at `offset` (column `col`), and the pre-norm sum when asked for.
template <typename T, int kVec>
__device__ __forceinline__ void write_outputs(const float (&s)[kVec],
                                              float mean0,
                                              const Normaliser& norm,
                                              const float* weight,
                                              const float* bias,
                                              T* y,
                                              T* pre_norm,
                                              int64_t offset,
                                              int64_t col) {
    if (pre_norm != nullptr) {
        store_elems<T, kVec>(pre_norm + offset, s);
    }
    float w[kVec];
    float b[kVec];
    load_floats<kVec>(weight + col, w);
    load_floats<kVec>(bias + col, b);
    float out[kVec];
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
        out[i] = fmaf(((s[i] - mean0) - norm.shift) * norm.inv, w[i], b[i]);
    }
    store_elems<T, kVec>(y + offset, out);
}

// One warp per row, d <= 32 · kChunks · kVec. Lane `lane` holds the kVec-element chunks lane + 32·t, so each
// load of the warp covers one contiguous run of the row.
template <typename T, int kVec, int kChunks>
__global__ void __launch_bounds__(kWarpsPerBlock* kWarpSize)
    layer_norm_warp_per_row_kernel(LayerNormParams p,
                                   const T* x,           // [M, d]
                                   const T* residual,    // [M, d] or null
                                   const float* weight,  // [d]
                                   const float* bias,    // [d]
                                   T* y,                 // [M, d]
                                   T* pre_norm) {        // [M, d] or null
    const int64_t row = int64_t{blockIdx.x} * kWarpsPerBlock + threadIdx.x / kWarpSize;
    if (row >= p.rows) {
        return;  // the whole warp leaves together: row depends only on the warp
    }
    const int lane = static_cast<int>(threadIdx.x % kWarpSize);
    const int64_t row_offset = row * p.dim;

    float s[kChunks][kVec];
    float sum = 0.0f;
#pragma unroll
    for (int t = 0; t < kChunks; ++t) {
        const int64_t col = int64_t{lane + t * kWarpSize} * kVec;
        if (col < p.dim) {  // d is a multiple of kVec, so a chunk is either whole or past the end
            load_sum<T, kVec>(x, residual, row_offset + col, s[t]);
#pragma unroll
            for (int i = 0; i < kVec; ++i) {
                sum += s[t][i];
            }
        } else {
#pragma unroll
            for (int i = 0; i < kVec; ++i) {
                s[t][i] = 0.0f;
            }
        }
    }
    const float mean0 = warp_sum(sum) / static_cast<float>(p.dim);

    float sum_c = 0.0f;
    float sum_c2 = 0.0f;
#pragma unroll
    for (int t = 0; t < kChunks; ++t) {
        const int64_t col = int64_t{lane + t * kWarpSize} * kVec;
        if (col < p.dim) {
#pragma unroll
            for (int i = 0; i < kVec; ++i) {
                const float c = s[t][i] - mean0;
                sum_c += c;
                sum_c2 += c * c;
            }
        }
    }
    const Normaliser norm = make_normaliser(p, warp_sum(sum_c), warp_sum(sum_c2));

#pragma unroll
    for (int t = 0; t < kChunks; ++t) {
        const int64_t col = int64_t{lane + t * kWarpSize} * kVec;
        if (col < p.dim) {
            write_outputs<T, kVec>(s[t], mean0, norm, weight, bias, y, pre_norm, row_offset + col, col);
        }
    }
}

// Sums kN values over the block; every thread gets the totals. `scratch` holds kN · kRowBlockWarps floats and
// may be reused right after the call returns (the trailing barrier). The kN sums share one pair of barriers, where
// cuda_reduce.cuh's one-value block_reduce would take a pair per sum.
template <int kN>
__device__ void block_sum(float (&v)[kN], float* scratch) {
    const int lane = static_cast<int>(threadIdx.x % kWarpSize);
    const int warp = static_cast<int>(threadIdx.x / kWarpSize);
#pragma unroll
    for (int k = 0; k < kN; ++k) {
        v[k] = warp_sum(v[k]);
        if (lane == 0) {
            scratch[k * kRowBlockWarps + warp] = v[k];
        }
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kN; ++k) {
        v[k] = 0.0f;
        for (int w = 0; w < kRowBlockWarps; ++w) {
            v[k] += scratch[k * kRowBlockWarps + w];
        }
    }
    __syncthreads();
}

// One block per row, for rows longer than kMaxWarpCols. Thread `tid` handles chunks tid + kRowBlockThreads·t in
// all three passes, so it alone reads and writes them.
template <typename T, int kVec>
__global__ void __launch_bounds__(kRowBlockThreads)
    layer_norm_block_per_row_kernel(LayerNormParams p,
                                    const T* x,           // [M, d]
                                    const T* residual,    // [M, d] or null
                                    const float* weight,  // [d]
                                    const float* bias,    // [d]
                                    T* y,                 // [M, d]
                                    T* pre_norm) {        // [M, d] or null
    __shared__ float scratch[2 * kRowBlockWarps];
    const int64_t row_offset = int64_t{blockIdx.x} * p.dim;
    const int64_t chunks = p.dim / kVec;

    float sum[1] = {0.0f};
    for (int64_t k = threadIdx.x; k < chunks; k += kRowBlockThreads) {
        float s[kVec];
        load_sum<T, kVec>(x, residual, row_offset + k * kVec, s);
#pragma unroll
        for (int i = 0; i < kVec; ++i) {
            sum[0] += s[i];
        }
    }
    block_sum<1>(sum, scratch);
    const float mean0 = sum[0] / static_cast<float>(p.dim);

    float centred[2] = {0.0f, 0.0f};  // Σc, Σc²
    for (int64_t k = threadIdx.x; k < chunks; k += kRowBlockThreads) {
        float s[kVec];
        load_sum<T, kVec>(x, residual, row_offset + k * kVec, s);
#pragma unroll
        for (int i = 0; i < kVec; ++i) {
            const float c = s[i] - mean0;
            centred[0] += c;
            centred[1] += c * c;
        }
    }
    block_sum<2>(centred, scratch);
    const Normaliser norm = make_normaliser(p, centred[0], centred[1]);

    for (int64_t k = threadIdx.x; k < chunks; k += kRowBlockThreads) {
        float s[kVec];
        load_sum<T, kVec>(x, residual, row_offset + k * kVec, s);
        write_outputs<T, kVec>(s, mean0, norm, weight, bias, y, pre_norm, row_offset + k * kVec, k * kVec);
    }
}

// Launches the warp-per-row kernel with the smallest kChunks (a power of two) that covers `chunks_per_lane`.
template <typename T, int kVec, int kChunks = 1>
void launch_warp_per_row(int64_t chunks_per_lane,
                         const LayerNormParams& p,
                         const T* x,
                         const T* residual,
                         const float* weight,
                         const float* bias,
                         T* y,
                         T* pre_norm,
                         cudaStream_t stream) {
    if constexpr (kChunks * kWarpSize * kVec < kMaxWarpCols) {
        if (chunks_per_lane > kChunks) {
            launch_warp_per_row<T, kVec, kChunks * 2>(chunks_per_lane, p, x, residual, weight, bias, y, pre_norm,
                                                      stream);
            return;
        }
    }
    const auto blocks = static_cast<unsigned>((p.rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
    layer_norm_warp_per_row_kernel<T, kVec, kChunks>
        <<<blocks, kWarpsPerBlock * kWarpSize, 0, stream>>>(p, x, residual, weight, bias, y, pre_norm);
}

template <typename T, int kVec>
void launch_layer_norm(const LayerNormParams& p,
                       const T* x,
                       const T* residual,
                       const float* weight,
                       const float* bias,
                       T* y,
                       T* pre_norm,
                       cudaStream_t stream) {
    if (p.dim <= kMaxWarpCols) {
        const int64_t chunks_per_lane = (p.dim / kVec + kWarpSize - 1) / kWarpSize;
        launch_warp_per_row<T, kVec>(chunks_per_lane, p, x, residual, weight, bias, y, pre_norm, stream);
    } else {
        layer_norm_block_per_row_kernel<T, kVec>
            <<<static_cast<unsigned>(p.rows), kRowBlockThreads, 0, stream>>>(p, x, residual, weight, bias, y, pre_norm);
    }
}

template <typename T>
void check_layer_norm_args(const LayerNormParams& p,
                           const T* x,
                           const T* residual,
                           const float* weight,
                           const float* bias,
                           const T* y,
                           const T* pre_norm) {
    VQA_CHECK(p.rows >= 0 && p.dim >= 1, kInvalidArgument,
              "layer_norm: expected rows >= 0 and dim >= 1, got rows=", p.rows, " dim=", p.dim);
    VQA_CHECK(p.variant != cpu::LayerNormVariant::kUnbiasedStd || p.dim >= 2, kInvalidArgument,
              "layer_norm: the unbiased_std variant needs dim >= 2 (its std divides by d - 1), got dim=", p.dim);
    VQA_CHECK(std::isfinite(p.eps) && p.eps >= 0.0f, kInvalidArgument, "layer_norm: expected a finite eps >= 0, got ",
              p.eps);
    if (p.rows == 0) {
        return;
    }
    VQA_CHECK(x != nullptr && weight != nullptr && bias != nullptr && y != nullptr, kInvalidArgument,
              "layer_norm: x, weight, bias and y must not be null");
    VQA_CHECK(p.rows <= std::numeric_limits<int64_t>::max() / p.dim, kInvalidArgument, "layer_norm: rows * dim (",
              p.rows, " * ", p.dim, ") overflows");
    const int64_t bytes = p.rows * p.dim * static_cast<int64_t>(sizeof(T));
    for (const T* out : {y, pre_norm}) {
        VQA_CHECK(same_or_disjoint(out, x, bytes) && same_or_disjoint(out, residual, bytes), kInvalidArgument,
                  "layer_norm: y and pre_norm must each be exactly x, exactly residual, or apart from both; a "
                  "partial overlap is not supported");
    }
    VQA_CHECK(!overlaps(y, bytes, pre_norm, bytes), kInvalidArgument, "layer_norm: y and pre_norm must not overlap");
}

}  // namespace

template <typename T>
void layer_norm(const LayerNormParams& params,
                const T* x,
                const T* residual,
                const float* weight,
                const float* bias,
                T* y,
                T* pre_norm,
                cudaStream_t stream) {
    const TraceRange range("layer_norm", stream);
    check_layer_norm_args(params, x, residual, weight, bias, y, pre_norm);
    if (params.rows == 0) {
        return;
    }
    constexpr int64_t kMaxGridX = std::numeric_limits<int>::max();
    const int64_t blocks =
        params.dim <= kMaxWarpCols ? (params.rows + kWarpsPerBlock - 1) / kWarpsPerBlock : params.rows;
    VQA_CHECK(blocks <= kMaxGridX, kInvalidArgument, "layer_norm: ", params.rows,
              " rows exceed one launch; split the rows into smaller calls");

    constexpr int kVec = kWordElems<T>;
    const bool vectorised = params.dim % kVec == 0 && is_aligned(x, kVectorBytes) &&
                            is_aligned(residual, kVectorBytes) && is_aligned(y, kVectorBytes) &&
                            is_aligned(pre_norm, kVectorBytes) && is_aligned(weight, kVectorBytes) &&
                            is_aligned(bias, kVectorBytes);
    if (vectorised) {
        launch_layer_norm<T, kVec>(params, x, residual, weight, bias, y, pre_norm, stream);
    } else {
        launch_layer_norm<T, 1>(params, x, residual, weight, bias, y, pre_norm, stream);
    }
    VQA_CUDA_CHECK_LAUNCH(stream);
}

template void layer_norm<float>(
    const LayerNormParams&, const float*, const float*, const float*, const float*, float*, float*, cudaStream_t);
template void layer_norm<__half>(
    const LayerNormParams&, const __half*, const __half*, const float*, const float*, __half*, __half*, cudaStream_t);
template void layer_norm<__nv_bfloat16>(const LayerNormParams&,
                                        const __nv_bfloat16*,
                                        const __nv_bfloat16*,
                                        const float*,
                                        const float*,
                                        __nv_bfloat16*,
                                        __nv_bfloat16*,
                                        cudaStream_t);

}  // namespace vqa::cuda

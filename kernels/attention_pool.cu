// Attention pooling on the GPU: one block per sample does both steps, so the in-place map never races with a
// reader in another block.
//
//  1. The sample's logits [L, G] are staged in shared memory; warp w normalises glimpses w, w + kWarps, ... (a
//     column of the staged map, elements G apart) with the exact rule of cpu::masked_softmax_row, and the map
//     goes back to global memory.
//  2. z = mapᵀ · x: thread columns own kVec consecutive features (one 16-byte load of x per position when
//     everything is aligned, else one element), kGlimpsesPerPass accumulators each. When d is small, the block's
//     threads split into `groups` sets of `lanes` threads, each set summing every groups-th position, and the
//     sets' partial sums meet in shared memory: d = 64 in fp16 is 8 vectors per row, and without the split 248
//     of 256 threads would idle while 8 walked all L positions.
// Packed samples: the block reads its first row and count from the offsets first; L above is then that count,
// and the launch's L (the largest count) only sizes the shared map.
#include <cmath>
#include <cstdint>

#include "kernels/attention_pool.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_reduce.cuh"
#include "kernels/element_convert.cuh"
#include "kernels/trace.h"
#include "kernels/vector_io.cuh"

namespace vqa::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kGlimpsesPerPass = 4;  // accumulators per feature: G = 1..4 (the model's range) read x once
static_assert(kAttentionPoolMaxMapSize * sizeof(float) + 8 * kThreads * sizeof(float) <= 48 * 1024,
              "the staged map and the partial sums of the widest vector fit in the default 48 KB");

template <typename T>
struct PoolArgs {
    const T* x;              // [B, L, d]
    float* weights;          // [B, L, G]: in, the logits; out, the softmax weights
    const uint8_t* mask;     // [B, L] (packed: [total rows]), 1 = valid position, or null
    T* z;                    // [B, G·d]
    const int32_t* offsets;  // [B+1]: packed samples' rows (x, weights and mask are [total rows, ·]), or null
    int seq_len;             // L: positions per sample, the largest count when packed
    int dim;                 // d
    int glimpses;            // G
    int lanes;               // threads per position set in step 2: a power of two in [32, kThreads]
    cpu::MaskedRow masked_row;
};

// One warp: column[l·G] = masked softmax over the L positions, in place. The same steps as
// cpu::masked_softmax_row (validity from the mask alone, fmax ignoring NaN, e = exp(s − max), then e · (1/Σe));
// only the order of the sum differs. Each lane only touches its own positions.
__device__ void softmax_column(float* column,        // [L], elements G apart (shared memory)
                               const uint8_t* mask,  // [L] or null
                               int seq_len,          // L
                               int glimpses,         // G: the stride
                               cpu::MaskedRow masked_row,
                               int lane) {
    bool any_valid = false;
    float row_max = -INFINITY;
    for (int l = lane; l < seq_len; l += kWarpSize) {
        if (mask == nullptr || mask[l] != 0) {
            any_valid = true;
            row_max = fmaxf(row_max, column[l * glimpses]);
        }
    }
    if (!__any_sync(kFullMask, any_valid)) {  // no valid position: the MaskedRow rule, never 0/0
        const float fill = masked_row == cpu::MaskedRow::kUniform ? 1.0f / static_cast<float>(seq_len) : 0.0f;
        for (int l = lane; l < seq_len; l += kWarpSize) {
            column[l * glimpses] = fill;
        }
        return;
    }
    row_max = warp_max(row_max);
    float sum = 0.0f;
    for (int l = lane; l < seq_len; l += kWarpSize) {
        const bool valid = mask == nullptr || mask[l] != 0;
        const float e = valid ? expf(column[l * glimpses] - row_max) : 0.0f;
        column[l * glimpses] = e;
        sum += e;
    }
    const float inv_sum = 1.0f / warp_sum(sum);
    for (int l = lane; l < seq_len; l += kWarpSize) {
        column[l * glimpses] *= inv_sum;
    }
}

// kVec consecutive elements of x as floats: one 16-byte load when kVec · sizeof(T) == 16, else one element. x is
// only read, so unlike vector_io.cuh's load_elems this goes through the read-only cache.
template <typename T, int kVec>
__device__ __forceinline__ void load_features(const T* src, float (&out)[kVec]) {
    if constexpr (kVec == 1) {
        out[0] = to_float(src[0]);
    } else {
        static_assert(kVec == kWordElems<T>, "a vector is one 16-byte word");
        unpack_word<T>(__ldg(reinterpret_cast<const uint4*>(src)), out);
    }
}

template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads) attention_pool_kernel(PoolArgs<T> args) {
    extern __shared__ float map[];              // [L, G]: this sample's logits, then its weights
    __shared__ float partial[kVec * kThreads];  // [kVec][kThreads]: step 2's partial sums, conflict-free reads
    const int dim = args.dim;
    const int glimpses = args.glimpses;
    const int64_t b = blockIdx.x;
    // This sample's first row and its number of positions. Packed counts are clamped to 0..L: the shared map holds
    // L·G floats, and a negative count (decreasing offsets) means no rows.
    int64_t first = b * args.seq_len;
    int seq_len = args.seq_len;
    if (args.offsets != nullptr) {
        first = args.offsets[b];
        seq_len = static_cast<int>(min(max(int64_t{args.offsets[b + 1]} - first, int64_t{0}), int64_t{args.seq_len}));
    }
    const int map_size = seq_len * glimpses;
    float* weights = args.weights + first * glimpses;

    for (int i = threadIdx.x; i < map_size; i += kThreads) {
        map[i] = weights[i];
    }
    __syncthreads();
    const uint8_t* mask = args.mask != nullptr ? args.mask + first : nullptr;
    const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
    for (int g = warp; g < glimpses; g += kWarps) {
        softmax_column(map + g, mask, seq_len, glimpses, args.masked_row, static_cast<int>(threadIdx.x) % kWarpSize);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < map_size; i += kThreads) {
        weights[i] = map[i];
    }

    const T* x = args.x + first * dim;
    T* z = args.z + b * glimpses * dim;
    const int lanes = args.lanes;
    const int groups = kThreads / lanes;
    const int group = static_cast<int>(threadIdx.x) / lanes;
    const int lane = static_cast<int>(threadIdx.x) - group * lanes;
    const int vecs = dim / kVec;  // exact: the launcher picks kVec > 1 only when it divides d
    // Every loop bound below is the same for the whole block, so the barriers inside are reached by all threads.
    for (int v0 = 0; v0 < vecs; v0 += lanes) {
        const int v = v0 + lane;
        const bool active = v < vecs;
        const T* x_col = x + int64_t{v} * kVec;
        for (int g0 = 0; g0 < glimpses; g0 += kGlimpsesPerPass) {
            float acc[kGlimpsesPerPass][kVec] = {};
            if (active) {
                for (int l = group; l < seq_len; l += groups) {
                    float features[kVec];
                    load_features<T, kVec>(x_col + int64_t{l} * dim, features);
                    const float* w = map + l * glimpses + g0;
#pragma unroll
                    for (int gi = 0; gi < kGlimpsesPerPass; ++gi) {
                        if (g0 + gi < glimpses) {
#pragma unroll
                            for (int e = 0; e < kVec; ++e) {
                                acc[gi][e] = fmaf(w[gi], features[e], acc[gi][e]);
                            }
                        }
                    }
                }
            }
#pragma unroll
            for (int gi = 0; gi < kGlimpsesPerPass; ++gi) {
                if (g0 + gi >= glimpses) {
                    break;
                }
                if (groups > 1) {
#pragma unroll
                    for (int e = 0; e < kVec; ++e) {
                        partial[e * kThreads + threadIdx.x] = acc[gi][e];
                    }
                    __syncthreads();
                    if (group == 0 && active) {
                        for (int other = 1; other < groups; ++other) {
#pragma unroll
                            for (int e = 0; e < kVec; ++e) {
                                acc[gi][e] += partial[e * kThreads + other * lanes + lane];
                            }
                        }
                    }
                    __syncthreads();  // the buffer is reused by the next glimpse
                }
                if (group == 0 && active) {
                    store_elems<T, kVec>(z + int64_t{g0 + gi} * dim + int64_t{v} * kVec, acc[gi]);
                }
            }
        }
    }
}

template <typename T, int kVec>
void launch_attention_pool(const PoolArgs<T>& args, int64_t batch, cudaStream_t stream) {
    const int vecs = args.dim / kVec;
    PoolArgs<T> launch_args = args;
    launch_args.lanes = kWarpSize;
    while (launch_args.lanes < vecs && launch_args.lanes < kThreads) {
        launch_args.lanes *= 2;
    }
    const auto smem_bytes = static_cast<size_t>(args.seq_len) * args.glimpses * sizeof(float);
    attention_pool_kernel<T, kVec><<<static_cast<unsigned>(batch), kThreads, smem_bytes, stream>>>(launch_args);
}

}  // namespace

template <typename T>
void attention_pool(
    const AttentionPoolParams& params, const T* x, float* weights, const uint8_t* mask, T* z, cudaStream_t stream) {
    const TraceRange range("attention_pool", stream);
    check_attention_pool_args(params, x, weights, z, "attention_pool");
    if (params.batch == 0) {
        return;
    }
    const PoolArgs<T> args{x,
                           weights,
                           mask,
                           z,
                           params.offsets,
                           static_cast<int>(params.seq_len),
                           static_cast<int>(params.dim),
                           static_cast<int>(params.glimpses),
                           kWarpSize,
                           params.masked_row};
    constexpr int kVec = kWordElems<T>;
    if (params.dim % kVec == 0 && is_aligned(x, kVectorBytes) && is_aligned(z, kVectorBytes)) {
        launch_attention_pool<T, kVec>(args, params.batch, stream);
    } else {
        launch_attention_pool<T, 1>(args, params.batch, stream);
    }
    VQA_CUDA_CHECK_LAUNCH(stream);
}

template void attention_pool<float>(
    const AttentionPoolParams&, const float*, float*, const uint8_t*, float*, cudaStream_t);
template void attention_pool<__half>(
    const AttentionPoolParams&, const __half*, float*, const uint8_t*, __half*, cudaStream_t);
template void attention_pool<__nv_bfloat16>(
    const AttentionPoolParams&, const __nv_bfloat16*, float*, const uint8_t*, __nv_bfloat16*, cudaStream_t);

}  // namespace vqa::cuda

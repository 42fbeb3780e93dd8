// Fused attention on the GPU for short sequences: one CTA per (q tile, head, batch), K/V tiles staged in shared
// memory as float, online softmax in float, P recomputed in a second pass only when attention maps are wanted.
//
// Work split inside a CTA (kWarps warps, kBlockQ query rows, kBlockK = 32 keys per tile):
//  - each warp owns kRowsPerWarp consecutive query rows and keeps, per row, the running max m, the running sum l
//    and the output accumulator (lane owns dims lane, lane + 32, ...);
//  - scores: lane j computes the dot products of its rows with key j of the tile (Q read from shared memory as a
//    broadcast, K rows padded by one float so the 32 lanes hit 32 banks);
//  - P·V: each probability is broadcast with a shuffle and multiplies a V row read lane-contiguously.
// At Dh = 128 the shared tiles take (16·128 + 32·129 + 32·128) floats = 41 KB; only the runtime-size fallback
// (Dh up to 256) needs more than 48 KB and raises the limit.
//
// Packed sequences: each CTA reads its sequence's first query row, query count, first key row and key count from
// the offset arrays before anything else, so the grid (sized by the largest count) has CTAs past a short
// sequence's end; they return at once, before the first barrier, every thread of the CTA alike. The counts cannot
// be checked on the host (they live on the device), so the kernel clamps them: a query count above Lq or a key
// count above Lk is cut to Lq or Lk, a negative query count is 0, and a sequence with no keys (kv_count < 1, or a
// negative kv_start) gets zero output rows under either rule and no P entries, never a read outside its run.
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/cuda_reduce.cuh"
#include "kernels/element_convert.cuh"
#include "kernels/fused_attention.h"
#include "kernels/trace.h"

namespace vqa::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarpSize;
constexpr int kBlockQ = 16;  // query rows per CTA
constexpr int kRowsPerWarp = kBlockQ / kWarps;
constexpr int kBlockK = kWarpSize;  // keys per tile: one per lane in the score step
constexpr int kDefaultSharedLimit = 48 * 1024;
static_assert(kBlockQ % kWarps == 0, "every warp owns the same number of query rows");

template <typename T>
struct AttentionArgs {
    cpu::AttentionParams p;
    const T* q;           // p.q view of [B, H, Lq, Dh]
    const T* k;           // p.k view of [B, H, Lk, Dh]
    const T* v;           // p.v view of [B, H, Lk, Dh]
    const uint8_t* mask;  // [B, Lk] (packed: [total key rows]), 1 = valid key, or null
    T* o;                 // p.o view of [B, H, Lq, Dh]
    float* probs;         // [B, H, Lq, Lk] or null (packed too: sequence b fills its top-left block)
    bool vector_loads;    // every head row and base pointer 16-byte aligned, Dh a multiple of 16 / sizeof(T)
};

// Floats of shared memory: Q tile [kBlockQ][Dh], K tile [kBlockK][Dh + 1] (the pad keeps the score step free of
// bank conflicts), V tile [kBlockK][Dh].
constexpr int shared_floats(int head_dim) {
    return kBlockQ * head_dim + kBlockK * (head_dim + 1) + kBlockK * head_dim;
}

// Copies `rows` head rows (row r at src + r·row_stride, Dh elements each) into dst[r][0..Dh) with row pitch
// `pitch` floats, converting to float; rows at or past `valid_rows` become zeros, so nothing uninitialised is
// ever read. 16-byte loads when the launcher found everything aligned, element loads otherwise.
template <typename T>
__device__ void load_head_rows(float* dst,
                               int pitch,
                               const T* src,
                               int64_t row_stride,
                               int rows,
                               int valid_rows,
                               int head_dim,
                               bool vector_loads) {
    if (vector_loads) {
        constexpr int kVec = 16 / static_cast<int>(sizeof(T));
        const int chunks_per_row = head_dim / kVec;
        for (int i = threadIdx.x; i < rows * chunks_per_row; i += kThreads) {
            const int r = i / chunks_per_row;
            const int c = (i - r * chunks_per_row) * kVec;
            float* out = dst + r * pitch + c;
            if (r < valid_rows) {
                float elems[kVec];
                unpack_word<T>(*reinterpret_cast<const uint4*>(src + r * row_stride + c), elems);
#pragma unroll
                for (int e = 0; e < kVec; ++e) {
                    out[e] = elems[e];
                }
            } else {
#pragma unroll
                for (int e = 0; e < kVec; ++e) {
                    out[e] = 0.0f;
                }
            }
        }
    } else {
        for (int i = threadIdx.x; i < rows * head_dim; i += kThreads) {
            const int r = i / head_dim;
            const int c = i - r * head_dim;
            dst[r * pitch + c] = r < valid_rows ? to_float(src[r * row_stride + c]) : 0.0f;
        }
    }
}

// Scores of this warp's kRowsPerWarp query rows (q_rows: their Q tile rows) against key `lane` of the K tile.
template <int kMaxHeadDim, bool kExactHeadDim>
__device__ __forceinline__ void tile_scores(
    float (&s)[kRowsPerWarp], const float* q_rows, const float* k_tile, int head_dim, int lane) {
    const float* k_row = k_tile + lane * (head_dim + 1);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
        s[r] = 0.0f;
    }
    const int dims = kExactHeadDim ? kMaxHeadDim : head_dim;
#pragma unroll 8
    for (int d = 0; d < dims; ++d) {
        const float kd = k_row[d];
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
            s[r] += q_rows[r * head_dim + d] * kd;
        }
    }
}

template <typename T, int kMaxHeadDim, bool kExactHeadDim>
__global__ void __launch_bounds__(kThreads) fused_attention_kernel(AttentionArgs<T> args) {
    constexpr int kDimsPerLane = kMaxHeadDim / kWarpSize;
    static_assert(kMaxHeadDim % kWarpSize == 0, "lanes own whole columns of the head dimension");
    extern __shared__ float shared[];

    const cpu::AttentionParams& p = args.p;
    const int head_dim = kExactHeadDim ? kMaxHeadDim : static_cast<int>(p.head_dim);
    const int q_len = static_cast<int>(p.q_len);    // Lq: rows of a P block
    const int kv_len = static_cast<int>(p.kv_len);  // Lk: the row stride of P
    const int b = blockIdx.z;
    const int h = blockIdx.y;
    const int q0 = blockIdx.x * kBlockQ;
    const int lane = static_cast<int>(threadIdx.x % kWarpSize);
    const int warp = static_cast<int>(threadIdx.x / kWarpSize);
    const int row0 = warp * kRowsPerWarp;  // first Q tile row of this warp

    // Where sequence b's rows start and how many it has. Dense: batch strides and the full lengths.
    int64_t q_first = int64_t{b} * p.q.batch;
    int64_t o_first = int64_t{b} * p.o.batch;
    int64_t k_first = int64_t{b} * p.k.batch;
    int64_t v_first = int64_t{b} * p.v.batch;
    int64_t mask_first = int64_t{b} * kv_len;
    int q_count = q_len;
    int kv_count = kv_len;
    if (p.q_offsets != nullptr) {  // p.packed(), a host-only function
        // Every thread reads the same four values, so the exit below is uniform across the CTA.
        const int64_t q_row = p.q_offsets[b];
        const int64_t kv_row = p.kv_start[b];
        q_count = static_cast<int>(min(max(int64_t{p.q_offsets[b + 1]} - q_row, int64_t{0}), int64_t{q_len}));
        kv_count = kv_row < 0 ? 0 : min(max(p.kv_count[b], 0), kv_len);
        q_first = q_row * p.q.row;
        o_first = q_row * p.o.row;
        k_first = kv_count > 0 ? kv_row * p.k.row : 0;
        v_first = kv_count > 0 ? kv_row * p.v.row : 0;
        mask_first = kv_count > 0 ? kv_row : 0;
    }
    if (q0 >= q_count) {
        return;  // a query tile past this sequence's end: nothing to write, and no barrier passed yet
    }

    float* q_tile = shared;                             // [kBlockQ][Dh]
    float* k_tile = q_tile + kBlockQ * head_dim;        // [kBlockK][Dh + 1]
    float* v_tile = k_tile + kBlockK * (head_dim + 1);  // [kBlockK][Dh]
    const T* q_bh = args.q + q_first + h * p.q.head + q0 * p.q.row;
    const T* k_bh = args.k + k_first + h * p.k.head;
    const T* v_bh = args.v + v_first + h * p.v.head;
    T* o_bh = args.o + o_first + h * p.o.head;
    float* p_bh = args.probs != nullptr ? args.probs + (int64_t{b} * p.heads + h) * q_len * int64_t{kv_len} : nullptr;
    const uint8_t* mask_b = args.mask != nullptr ? args.mask + mask_first : nullptr;

    // The mask row is shared by every query and head of sequence b, so "all keys masked" is one answer per CTA.
    bool any_valid = kv_count > 0;
    if (mask_b != nullptr) {
        int local = 0;
        for (int j = threadIdx.x; j < kv_count; j += kThreads) {
            local |= mask_b[j] != 0;
        }
        any_valid = __syncthreads_or(local) != 0;
    }
    // A sequence without keys has nothing to average even under kUniform: zeros, like kZero.
    if (!any_valid && (p.masked_row == cpu::MaskedRow::kZero || kv_count == 0)) {
        const int rows = min(kBlockQ, q_count - q0);
        for (int i = threadIdx.x; i < rows * head_dim; i += kThreads) {
            o_bh[(q0 + i / head_dim) * p.o.row + i % head_dim] = from_float<T>(0.0f);
        }
        if (p_bh != nullptr) {
            for (int i = threadIdx.x; i < rows * kv_count; i += kThreads) {
                p_bh[int64_t{q0 + i / kv_count} * kv_len + i % kv_count] = 0.0f;
            }
        }
        return;
    }
    // kUniform with every key masked: each of the sequence's kv_count keys weighs 1 / kv_count, i.e. equal scores
    // over all its keys, mask ignored.
    const bool uniform = !any_valid;

    load_head_rows(q_tile, head_dim, q_bh, p.q.row, kBlockQ, q_count - q0, head_dim, args.vector_loads);

    float m[kRowsPerWarp];
    float l[kRowsPerWarp];
    float acc[kRowsPerWarp][kDimsPerLane];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int t = 0; t < kDimsPerLane; ++t) {
            acc[r][t] = 0.0f;
        }
    }
    const bool warp_active = q0 + row0 < q_count;  // warp-uniform: a warp of padding rows only joins the barriers
    const float* q_rows = q_tile + row0 * head_dim;

    for (int k0 = 0; k0 < kv_count; k0 += kBlockK) {
        const int tile_keys = min(kBlockK, kv_count - k0);
        __syncthreads();  // every warp is done with the previous tiles
        load_head_rows(k_tile, head_dim + 1, k_bh + k0 * p.k.row, p.k.row, kBlockK, tile_keys, head_dim,
                       args.vector_loads);
        load_head_rows(v_tile, head_dim, v_bh + k0 * p.v.row, p.v.row, kBlockK, tile_keys, head_dim, args.vector_loads);
        __syncthreads();
        if (!warp_active) {
            continue;
        }
        const int j = k0 + lane;
        const bool key_valid = j < kv_count && (uniform || mask_b == nullptr || mask_b[j] != 0);
        float s[kRowsPerWarp];
        tile_scores<kMaxHeadDim, kExactHeadDim>(s, q_rows, k_tile, head_dim, lane);
        float prob[kRowsPerWarp];
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
            s[r] = key_valid ? (uniform ? 0.0f : p.scale * s[r]) : -INFINITY;
            // m_new is -inf only while no valid key has been seen; then every prob is 0 and alpha is unused.
            const float m_new = fmaxf(m[r], warp_max(s[r]));
            prob[r] = key_valid ? expf(s[r] - m_new) : 0.0f;
            const float alpha = m[r] == -INFINITY ? 0.0f : expf(m[r] - m_new);
            l[r] = l[r] * alpha + warp_sum(prob[r]);
            m[r] = m_new;
#pragma unroll
            for (int t = 0; t < kDimsPerLane; ++t) {
                acc[r][t] *= alpha;
            }
        }
        for (int jj = 0; jj < tile_keys; ++jj) {
            const float* v_row = v_tile + jj * head_dim;
#pragma unroll
            for (int r = 0; r < kRowsPerWarp; ++r) {
                const float pj = __shfl_sync(kFullMask, prob[r], jj);
#pragma unroll
                for (int t = 0; t < kDimsPerLane; ++t) {
                    const int d = lane + t * kWarpSize;
                    if (kExactHeadDim || d < head_dim) {
                        acc[r][t] += pj * v_row[d];
                    }
                }
            }
        }
    }

    float inv_l[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
        inv_l[r] = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        const int i = q0 + row0 + r;
        if (i < q_count) {
#pragma unroll
            for (int t = 0; t < kDimsPerLane; ++t) {
                const int d = lane + t * kWarpSize;
                if (kExactHeadDim || d < head_dim) {
                    o_bh[i * p.o.row + d] = from_float<T>(acc[r][t] * inv_l[r]);
                }
            }
        }
    }
    if (p_bh == nullptr) {
        return;  // CTA-uniform
    }

    // Attention maps: the scores again, tile by tile, normalised with the final max and sum.
    for (int k0 = 0; k0 < kv_count; k0 += kBlockK) {
        __syncthreads();
        load_head_rows(k_tile, head_dim + 1, k_bh + k0 * p.k.row, p.k.row, kBlockK, min(kBlockK, kv_count - k0),
                       head_dim, args.vector_loads);
        __syncthreads();
        if (!warp_active) {
            continue;
        }
        const int j = k0 + lane;
        const bool key_valid = j < kv_count && (uniform || mask_b == nullptr || mask_b[j] != 0);
        float s[kRowsPerWarp];
        tile_scores<kMaxHeadDim, kExactHeadDim>(s, q_rows, k_tile, head_dim, lane);
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
            const int i = q0 + row0 + r;
            if (i < q_count && j < kv_count) {
                const float logit = uniform ? 0.0f : p.scale * s[r];
                p_bh[int64_t{i} * kv_len + j] = key_valid ? expf(logit - m[r]) * inv_l[r] : 0.0f;
            }
        }
    }
}

bool is_aligned(const void* ptr, int64_t stride_a, int64_t stride_b, int64_t stride_c, int elems) {
    return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && stride_a % elems == 0 && stride_b % elems == 0 &&
           stride_c % elems == 0;
}

template <typename T, int kMaxHeadDim, bool kExactHeadDim>
void launch_fused_attention(const AttentionArgs<T>& args, cudaStream_t stream) {
    const cpu::AttentionParams& p = args.p;
    const int smem_bytes = shared_floats(static_cast<int>(p.head_dim)) * static_cast<int>(sizeof(float));
    auto* kernel = fused_attention_kernel<T, kMaxHeadDim, kExactHeadDim>;
    if (smem_bytes > kDefaultSharedLimit) {
        VQA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes));
    }
    const dim3 grid(static_cast<unsigned>((p.q_len + kBlockQ - 1) / kBlockQ), static_cast<unsigned>(p.heads),
                    static_cast<unsigned>(p.batch));
    kernel<<<grid, kThreads, smem_bytes, stream>>>(args);
}

template <typename T>
void fused_attention_cuda(const cpu::AttentionParams& params,
                          const T* q,
                          const T* k,
                          const T* v,
                          const uint8_t* mask,
                          T* o,
                          float* probs,
                          cudaStream_t stream) {
    const TraceRange range("fused_attention", stream);
    check_fused_attention_args(params, q, k, v, o, "fused_attention");
    if (params.batch == 0 || params.q_len == 0) {
        return;
    }
    constexpr int kVec = 16 / static_cast<int>(sizeof(T));
    AttentionArgs<T> args{params, q, k, v, mask, o, probs, false};
    // Packed sequences start at a multiple of the row stride, and their batch strides are unused.
    const bool packed = params.packed();
    args.vector_loads = params.head_dim % kVec == 0 &&
                        is_aligned(q, packed ? 0 : params.q.batch, params.q.head, params.q.row, kVec) &&
                        is_aligned(k, packed ? 0 : params.k.batch, params.k.head, params.k.row, kVec) &&
                        is_aligned(v, packed ? 0 : params.v.batch, params.v.head, params.v.row, kVec);
    switch (params.head_dim) {
        case 32:
            launch_fused_attention<T, 32, true>(args, stream);
            break;
        case 64:
            launch_fused_attention<T, 64, true>(args, stream);
            break;
        case 128:
            launch_fused_attention<T, 128, true>(args, stream);
            break;
        default:
            launch_fused_attention<T, kFusedAttentionMaxHeadDim, false>(args, stream);
            break;
    }
    VQA_CUDA_CHECK_LAUNCH(stream);
}

}  // namespace

template <typename T>
void fused_attention(const cpu::AttentionParams& params,
                     const T* q,
                     std::add_pointer_t<const T> k,
                     std::add_pointer_t<const T> v,
                     const uint8_t* mask,
                     std::add_pointer_t<T> o,
                     float* probs,
                     cudaStream_t stream) {
    fused_attention_cuda(params, q, k, v, mask, o, probs, stream);
}

// The element types the header promises.
#define VQA_INSTANTIATE_FUSED_ATTENTION(T)                                                                          \
    template void fused_attention<T>(const cpu::AttentionParams&, const T*, const T*, const T*, const uint8_t*, T*, \
                                     float*, cudaStream_t);
VQA_INSTANTIATE_FUSED_ATTENTION(float)
VQA_INSTANTIATE_FUSED_ATTENTION(__half)
VQA_INSTANTIATE_FUSED_ATTENTION(__nv_bfloat16)
#undef VQA_INSTANTIATE_FUSED_ATTENTION

}  // namespace vqa::cuda

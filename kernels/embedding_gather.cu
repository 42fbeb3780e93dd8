// Embedding gather on the GPU: out[i, :] = table[ids[i], :], zeros (and an error flag) for an id outside [0, V).
//
// A gather only moves bits, so the kernel is templated on the storage word it moves (16, 8, 4 or 2 bytes), not on
// the element type: fp16 and bf16 share instantiations, and the launcher picks the widest word that divides a
// table row and both base addresses. One thread moves one word; the threads of a row read its id once each, which
// L1 serves after the first.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "kernels/check.h"
#include "kernels/cuda_check.h"
#include "kernels/embedding_gather.h"
#include "kernels/trace.h"
#include "kernels/vector_io.cuh"

namespace vqa::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // past 2^28 words the grid-stride loop takes over

template <typename Word, typename Id>
__global__ void __launch_bounds__(kThreads) embedding_gather_kernel(const Id* __restrict__ ids,      // [n]
                                                                    const Word* __restrict__ table,  // [V, E / word]
                                                                    Word* __restrict__ out,          // [n, E / word]
                                                                    int64_t n,
                                                                    int64_t vocab_size,  // V
                                                                    int64_t row_words,   // E / word
                                                                    int* error_flag) {   // [1] or null
    const int64_t total = n * row_words;
    for (int64_t k = int64_t{blockIdx.x} * kThreads + threadIdx.x; k < total; k += int64_t{gridDim.x} * kThreads) {
        const int64_t i = k / row_words;
        const int64_t w = k - i * row_words;
        const auto id = static_cast<int64_t>(ids[i]);
        if (id >= 0 && id < vocab_size) {
            out[k] = table[id * row_words + w];
        } else {
            out[k] = Word{};  // all bits zero: +0 in every element type
            if (w == 0 && error_flag != nullptr) {
                *error_flag = 1;  // every writer stores the same value, so the race is benign
            }
        }
    }
}

template <typename T, typename Id>
void check_embedding_gather_args(
    const Id* ids, int64_t n, const T* table, int64_t vocab_size, int64_t dim, const T* out, const int* error_flag) {
    VQA_CHECK(n >= 0 && vocab_size >= 0 && dim >= 1, kInvalidArgument,
              "embedding_gather: expected n, V >= 0 and E >= 1, got n=", n, " V=", vocab_size, " E=", dim);
    if (n == 0) {
        return;
    }
    VQA_CHECK(ids != nullptr && out != nullptr && (table != nullptr || vocab_size == 0), kInvalidArgument,
              "embedding_gather: ids and out (and table when V > 0) must not be null");
    VQA_CHECK(n <= std::numeric_limits<int64_t>::max() / dim && vocab_size <= std::numeric_limits<int64_t>::max() / dim,
              kInvalidArgument, "embedding_gather: n * E or V * E overflows (n=", n, " V=", vocab_size, " E=", dim,
              ")");
    const int64_t out_bytes = n * dim * static_cast<int64_t>(sizeof(T));
    VQA_CHECK(table == nullptr || !overlaps(out, out_bytes, table, vocab_size * dim * static_cast<int64_t>(sizeof(T))),
              kInvalidArgument, "embedding_gather: out must not overlap the table");
    VQA_CHECK(!overlaps(out, out_bytes, ids, n * static_cast<int64_t>(sizeof(Id))), kInvalidArgument,
              "embedding_gather: out must not overlap ids");
    VQA_CHECK(error_flag == nullptr || !overlaps(out, out_bytes, error_flag, sizeof(int)), kInvalidArgument,
              "embedding_gather: out must not overlap error_flag");
}

}  // namespace

template <typename T, typename Id>
void embedding_gather(const Id* ids,
                      int64_t n,
                      const T* table,
                      int64_t vocab_size,
                      int64_t dim,
                      T* out,
                      int* error_flag,
                      cudaStream_t stream) {
    static_assert(sizeof(T) == 2 || sizeof(T) == 4, "element types are 2 or 4 bytes wide");
    const TraceRange range("embedding_gather", stream);
    check_embedding_gather_args(ids, n, table, vocab_size, dim, out, error_flag);
    if (n == 0) {
        return;
    }
    constexpr int kElemBytes = static_cast<int>(sizeof(T));
    const int64_t row_bytes = kElemBytes * dim;
    const int word_bytes = widest_word_bytes(kElemBytes, row_bytes, table, out);
    const int64_t row_words = row_bytes / word_bytes;
    const int64_t blocks = std::min((n * row_words + kThreads - 1) / kThreads, kMaxBlocks);
    dispatch_word<kElemBytes>(word_bytes, [&](auto word) {
        using Word = decltype(word);
        embedding_gather_kernel<Word, Id><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
            ids, reinterpret_cast<const Word*>(table), reinterpret_cast<Word*>(out), n, vocab_size, row_words,
            error_flag);
    });
    VQA_CUDA_CHECK_LAUNCH(stream);
}

#define VQA_INSTANTIATE_EMBEDDING_GATHER(T, Id) \
    template void embedding_gather<T, Id>(const Id*, int64_t, const T*, int64_t, int64_t, T*, int*, cudaStream_t)
VQA_INSTANTIATE_EMBEDDING_GATHER(float, int32_t);
VQA_INSTANTIATE_EMBEDDING_GATHER(float, int64_t);
VQA_INSTANTIATE_EMBEDDING_GATHER(__half, int32_t);
VQA_INSTANTIATE_EMBEDDING_GATHER(__half, int64_t);
VQA_INSTANTIATE_EMBEDDING_GATHER(__nv_bfloat16, int32_t);
VQA_INSTANTIATE_EMBEDDING_GATHER(__nv_bfloat16, int64_t);
#undef VQA_INSTANTIATE_EMBEDDING_GATHER

}  // namespace vqa::cuda

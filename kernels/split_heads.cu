// Head permutation on the GPU: split_heads x [B, L, H*Dh] -> y [B, H, L, Dh] and merge_heads back.
//
// The permutation only moves bits, so the kernel is templated on the storage word it moves (16, 8, 4 or 2
// bytes) rather than on the element type: fp16 and bf16 share instantiations, and the launcher picks the widest
// word that divides a head row, the x row stride and both base addresses (16-byte vector loads and stores for
// Dh = 32..128 in every dtype, element-wide words as the fallback for odd Dh or unaligned pointers).
#include <cstdint>
#include <limits>

#include "kernels/cuda_check.h"
#include "kernels/split_heads.h"
#include "kernels/trace.h"
#include "kernels/vector_io.cuh"

namespace vqa::cuda {

constexpr int kThreads = 256;

// One thread moves one word. The flat index i runs over x's logical layout [B, L, H, Dh / word], so consecutive
// threads read (split) or write (merge) consecutive words of an x row, and consecutive words of a head row in y.
// Offsets are 64-bit because a strided x can span more than 2^31 words even when the tensor itself does not.
template <typename Word, bool kToHeads>
static __global__ void permute_heads_kernel(
    const Word* __restrict__ src,  // split: x [B, L, H*Dh]; merge: y [B, H, L, Dh]
    Word* __restrict__ dst,        // split: y [B, H, L, Dh]; merge: x [B, L, H*Dh]
    int total_words,               // B * L * H * Dh / word
    int seq_len,                   // L
    int num_heads,                 // H
    int head_words,                // Dh / word
    int64_t x_row_stride_words) {  // from x[b, l, 0] to x[b, l + 1, 0]
    const int64_t i = int64_t{blockIdx.x} * kThreads + threadIdx.x;
    if (i >= total_words) {
        return;
    }
    const int row_words = num_heads * head_words;
    const int row = static_cast<int>(i) / row_words;  // b * L + l
    const int col = static_cast<int>(i) - row * row_words;
    const int h = col / head_words;
    const int w = col - h * head_words;
    const int b = row / seq_len;
    const int l = row - b * seq_len;
    const int64_t x_offset = int64_t{row} * x_row_stride_words + col;
    const int64_t y_offset = (int64_t{b * num_heads + h} * seq_len + l) * head_words + w;
    if constexpr (kToHeads) {
        dst[y_offset] = src[x_offset];
    } else {
        dst[x_offset] = src[y_offset];
    }
}

// split (kToHeads): src = x, dst = y; merge: src = y, dst = x.
template <typename T, bool kToHeads>
static void permute_heads_cuda(const T* src, T* dst, const HeadsShape& shape, const char* op, cudaStream_t stream) {
    const TraceRange range(op, stream);
    static_assert(sizeof(T) == 2 || sizeof(T) == 4, "element types are 2 or 4 bytes wide");
    const T* x = kToHeads ? src : dst;
    const T* y = kToHeads ? dst : src;
    check_heads_args(shape, x, y, sizeof(T), op);
    const int64_t numel = shape.numel();
    if (numel == 0) {
        return;
    }
    VQA_CHECK(numel <= std::numeric_limits<int>::max(), kInvalidArgument, op, ": B*L*H*Dh = ", numel,
              " exceeds 2^31-1 elements; split the batch into smaller calls");

    constexpr int kElemBytes = static_cast<int>(sizeof(T));
    const int word_bytes =
        widest_word_bytes(kElemBytes, int64_t{kElemBytes} * shape.head_dim, kElemBytes * shape.row_stride(), x, y);

    const int elems_per_word = word_bytes / static_cast<int>(sizeof(T));
    const int total_words = static_cast<int>(numel / elems_per_word);
    const int head_words = shape.head_dim / elems_per_word;
    const int64_t x_row_stride_words = shape.row_stride() / elems_per_word;
    const unsigned blocks = static_cast<unsigned>((total_words + kThreads - 1) / kThreads);
    dispatch_word<kElemBytes>(word_bytes, [&](auto word) {
        using Word = decltype(word);
        permute_heads_kernel<Word, kToHeads><<<blocks, kThreads, 0, stream>>>(
            reinterpret_cast<const Word*>(src), reinterpret_cast<Word*>(dst), total_words, shape.seq_len,
            shape.num_heads, head_words, x_row_stride_words);
    });
    VQA_CUDA_CHECK_LAUNCH(stream);
}

template <typename T>
void split_heads(const T* x, std::add_pointer_t<T> y, const HeadsShape& shape, cudaStream_t stream) {
    permute_heads_cuda<T, true>(x, y, shape, "split_heads", stream);
}

template <typename T>
void merge_heads(const T* y, std::add_pointer_t<T> x, const HeadsShape& shape, cudaStream_t stream) {
    permute_heads_cuda<T, false>(y, x, shape, "merge_heads", stream);
}

// The element types the header promises.
#define VQA_INSTANTIATE_HEAD_PERMUTATION(T)                                      \
    template void split_heads<T>(const T*, T*, const HeadsShape&, cudaStream_t); \
    template void merge_heads<T>(const T*, T*, const HeadsShape&, cudaStream_t);
VQA_INSTANTIATE_HEAD_PERMUTATION(float)
VQA_INSTANTIATE_HEAD_PERMUTATION(__half)
VQA_INSTANTIATE_HEAD_PERMUTATION(__nv_bfloat16)
#undef VQA_INSTANTIATE_HEAD_PERMUTATION

}  // namespace vqa::cuda

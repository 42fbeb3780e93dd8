// How the kernels move memory in wide words, and the launcher-side checks that decide when they may. Include from
// .cu files only.
//
//  - Device: kVec consecutive elements of T read or written as floats, as one 16-byte word when kVec elements fill
//    it (kVec = kWordElems<T>), else element by element; kVec floats of a float parameter vector (weights, biases)
//    as float4 loads when kVec is a multiple of 4. The helpers add no __restrict__ or __ldg of their own: the ops
//    that use them allow an output to alias an input.
//  - Host: alignment tests, the widest word (16 down to the element size) that divides a set of sizes and
//    addresses, a switch from that width to the unsigned word type for kernels that only move bits, and the
//    overlap tests behind the in-place rules of the entry points.
#pragma once

#include <cstdint>

#include "kernels/element_convert.cuh"

namespace vqa::cuda {

inline constexpr int kVectorBytes = 16;

// Elements of T in one 16-byte word: 4 floats, 8 halves.
template <typename T>
inline constexpr int kWordElems = kVectorBytes / static_cast<int>(sizeof(T));

// ---- device: element vectors ------------------------------------------------------------------------------------

template <typename T, int kVec>
__device__ __forceinline__ void load_elems(const T* p, float (&out)[kVec]) {
    if constexpr (kVec == kWordElems<T>) {
        unpack_word<T>(*reinterpret_cast<const uint4*>(p), out);
    } else {
#pragma unroll
        for (int i = 0; i < kVec; ++i) {
            out[i] = to_float(p[i]);
        }
    }
}

template <typename T, int kVec>
__device__ __forceinline__ void store_elems(T* p, const float (&in)[kVec]) {
    if constexpr (kVec == kWordElems<T>) {
        *reinterpret_cast<uint4*>(p) = pack_word<T>(in);
    } else {
#pragma unroll
        for (int i = 0; i < kVec; ++i) {
            p[i] = from_float<T>(in[i]);
        }
    }
}

// kVec consecutive floats: float4 loads when kVec is a multiple of 4 (the caller checked the 16-byte alignment).
template <int kVec>
__device__ __forceinline__ void load_floats(const float* p, float (&out)[kVec]) {
    if constexpr (kVec % 4 == 0) {
#pragma unroll
        for (int q = 0; q < kVec / 4; ++q) {
            const float4 f = reinterpret_cast<const float4*>(p)[q];
            out[4 * q] = f.x;
            out[4 * q + 1] = f.y;
            out[4 * q + 2] = f.z;
            out[4 * q + 3] = f.w;
        }
    } else {
#pragma unroll
        for (int i = 0; i < kVec; ++i) {
            out[i] = p[i];
        }
    }
}

// ---- host: alignment and word width -----------------------------------------------------------------------------

// A null pointer counts as aligned: an absent optional input never narrows the access width.
inline bool is_aligned(const void* p, int64_t bytes) {
    return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0;
}

// A size in bytes, or an address, that is a whole number of `word_bytes` words.
inline bool is_word_multiple(int64_t bytes, int word_bytes) {
    return bytes % word_bytes == 0;
}
inline bool is_word_multiple(const void* address, int word_bytes) {
    return is_aligned(address, word_bytes);
}

// The widest word, from kVectorBytes down to min_bytes by halves, that divides every size (in bytes) and address of
// `sizes_and_addresses`; min_bytes when none wider does.
template <typename... Args>
int widest_word_bytes(int min_bytes, const Args&... sizes_and_addresses) {
    int word = kVectorBytes;
    while (word > min_bytes && !(is_word_multiple(sizes_and_addresses, word) && ...)) {
        word /= 2;
    }
    return word;
}

// A zero word of the unsigned type that is kBytes bytes wide.
template <int kBytes>
auto unsigned_word() {
    if constexpr (kBytes == 16) {
        return uint4{};
    } else if constexpr (kBytes == 8) {
        return uint2{};
    } else if constexpr (kBytes == 4) {
        return uint32_t{};
    } else if constexpr (kBytes == 2) {
        return uint16_t{};
    } else {
        static_assert(kBytes == 1, "words are 1, 2, 4, 8 or 16 bytes wide");
        return uint8_t{};
    }
}

// Calls f(Word{}) with the unsigned word type of `word_bytes` bytes (a power of two in [kMinBytes, 16], as
// widest_word_bytes(kMinBytes, ...) returns). Words narrower than kMinBytes (the element size) are never
// instantiated; a smaller `word_bytes` gets the kMinBytes word.
template <int kMinBytes, int kBytes = kVectorBytes, typename F>
void dispatch_word(int word_bytes, F&& f) {
    static_assert(kMinBytes >= 1 && kMinBytes <= kBytes && (kMinBytes & (kMinBytes - 1)) == 0,
                  "the narrowest word is 1, 2, 4, 8 or 16 bytes");
    if constexpr (kBytes > kMinBytes) {
        if (word_bytes < kBytes) {
            dispatch_word<kMinBytes, kBytes / 2>(word_bytes, f);
            return;
        }
    }
    f(unsigned_word<kBytes>());
}

// ---- host: overlap of device ranges -----------------------------------------------------------------------------

// Whether [a, a + a_bytes) and [b, b + b_bytes) share a byte; a null pointer overlaps nothing.
inline bool overlaps(const void* a, int64_t a_bytes, const void* b, int64_t b_bytes) {
    if (a == nullptr || b == nullptr) {
        return false;
    }
    const auto a_begin = reinterpret_cast<uintptr_t>(a);
    const auto b_begin = reinterpret_cast<uintptr_t>(b);
    return a_begin < b_begin + static_cast<uintptr_t>(b_bytes) && b_begin < a_begin + static_cast<uintptr_t>(a_bytes);
}

// The in-place rule of the element-wise ops: an output of `bytes` bytes may be exactly an input (same first
// element) or lie apart from it; a partial overlap would let one thread's write land in elements another thread
// has not read yet.
inline bool same_or_disjoint(const void* a, const void* b, int64_t bytes) {
    return a == b || !overlaps(a, bytes, b, bytes);
}

}  // namespace vqa::cuda

// Device-side conversions between the element types the kernels take (float, __half, __nv_bfloat16) and the
// float they compute in. Include from .cu files only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace vqa::cuda {

__device__ __forceinline__ float to_float(float v) {
    return v;
}
__device__ __forceinline__ float to_float(__half v) {
    return __half2float(v);
}
__device__ __forceinline__ float to_float(__nv_bfloat16 v) {
    return __bfloat162float(v);
}

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
    return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
    return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

// The 16 / sizeof(T) elements of a 16-byte word, as floats. Works on the word's bits (no address taken), so the
// word stays in registers.
__device__ __forceinline__ float low_half_to_float(unsigned w, __half /*tag*/) {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(w & 0xffffu)));
}
__device__ __forceinline__ float low_half_to_float(unsigned w, __nv_bfloat16 /*tag*/) {
    return __bfloat162float(__ushort_as_bfloat16(static_cast<unsigned short>(w & 0xffffu)));
}

template <typename T>
__device__ __forceinline__ void unpack_word(const uint4& word, float (&out)[16 / sizeof(T)]) {
    const unsigned parts[4] = {word.x, word.y, word.z, word.w};
    if constexpr (sizeof(T) == 4) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            out[i] = __uint_as_float(parts[i]);
        }
    } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            out[2 * i] = low_half_to_float(parts[i], T{});
            out[2 * i + 1] = low_half_to_float(parts[i] >> 16, T{});
        }
    }
}

// The reverse: 16 / sizeof(T) floats rounded to T and packed into one 16-byte word.
__device__ __forceinline__ unsigned half_bits(float v, __half /*tag*/) {
    return __half_as_ushort(__float2half_rn(v));
}
__device__ __forceinline__ unsigned half_bits(float v, __nv_bfloat16 /*tag*/) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

template <typename T>
__device__ __forceinline__ uint4 pack_word(const float (&in)[16 / sizeof(T)]) {
    unsigned parts[4];
    if constexpr (sizeof(T) == 4) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            parts[i] = __float_as_uint(in[i]);
        }
    } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            parts[i] = half_bits(in[2 * i], T{}) | (half_bits(in[2 * i + 1], T{}) << 16);
        }
    }
    return make_uint4(parts[0], parts[1], parts[2], parts[3]);
}

}  // namespace vqa::cuda

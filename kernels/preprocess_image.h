// Image preprocessing for the grid encoders (CUDA entry points; the CPU reference with the same contract is
// vqa::cpu::preprocess_image in kernels/cpu/preprocess_image.h, docs/model-format.md §4.1):
//
//   dst[c, y, x] = (resize(src / 255)[channel c of channel_order](y, x) − mean[c]) / std[c]
//
// uint8 HWC RGB in (rows may be padded), CHW out in T = float, half or bf16. The arithmetic is the reference's,
// operation for operation in fp32 with no contraction into FMAs (torch's bilinear resize, align_corners=False,
// antialias=False; the scale float(in) / float(out); the resize skipped when the size already matches), so a
// float output equals the CPU's bit for bit; half and bf16 are that float value rounded once.
//
// The batched form preprocesses N decoded images of any sizes, packed one after another in one device staging
// buffer, into one [N, 3, H, W] tensor. The image descriptors stay on the host: the launcher checks each one
// against the staging buffer's size (an image's size comes from an untrusted file) and passes them to the kernel
// as launch arguments, kPreprocessImagesPerLaunch images per launch, so nothing has to be uploaded besides the
// pixels.
#pragma once

#include <cstdint>

#include "kernels/check.h"
#include "kernels/cpu/preprocess_image.h"

#if VQA_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#endif

namespace vqa {

// Largest source or destination side: keeps every coordinate, and the source position computed from it in fp32,
// exact (2^24), and the grid within its limits.
constexpr int64_t kPreprocessMaxSide = int64_t{1} << 16;
// Images per kernel launch of the batched form; a batch of N images is ceil(N / this) launches.
constexpr int kPreprocessImagesPerLaunch = 32;

// What every image of a batch shares: the output size, channel order and normalisation.
struct PreprocessBatchParams {
    int64_t count = 0;  // N: images
    int64_t dst_h = 0;  // H
    int64_t dst_w = 0;  // W
    cpu::ChannelOrder channel_order = cpu::ChannelOrder::kRgb;
    float mean[3] = {0.0f, 0.0f, 0.0f};  // per output plane (in channel_order), on values in [0, 1]
    float std[3] = {1.0f, 1.0f, 1.0f};   // per output plane, > 0
};

// One decoded image inside the staging buffer.
struct PreprocessImageDesc {
    int64_t offset = 0;      // bytes from the staging buffer's start to pixel (0, 0)
    int64_t height = 0;      // h
    int64_t width = 0;       // w
    int64_t row_stride = 0;  // bytes from pixel (y, 0) to pixel (y + 1, 0); 0 means dense (3·w)
};

namespace detail {

inline void check_preprocess_output(const PreprocessBatchParams& p, const char* op) {
    VQA_CHECK(p.count >= 0, kInvalidArgument, op, ": expected N >= 0 images, got ", p.count);
    VQA_CHECK(p.dst_h >= 1 && p.dst_w >= 1 && p.dst_h <= kPreprocessMaxSide && p.dst_w <= kPreprocessMaxSide,
              kInvalidArgument, op, ": expected an output size in [1, ", kPreprocessMaxSide, "], got ", p.dst_h, "x",
              p.dst_w);
    for (int c = 0; c < 3; ++c) {
        VQA_CHECK(p.std[c] > 0.0f, kInvalidArgument, op, ": std[", c, "] must be > 0, got ", p.std[c]);
    }
}

}  // namespace detail

// Checks a batched preprocessing call; `op` names the caller in the message. Throws vqa::Error(kInvalidArgument)
// naming the first bad image.
inline void check_preprocess_batch_args(const PreprocessBatchParams& p,
                                        const PreprocessImageDesc* images,
                                        const void* staging,
                                        int64_t staging_bytes,
                                        const void* dst,
                                        const char* op) {
    detail::check_preprocess_output(p, op);
    if (p.count == 0) {
        return;
    }
    VQA_CHECK(images != nullptr && staging != nullptr && dst != nullptr, kInvalidArgument, op,
              ": images, staging and dst must not be null for a non-empty batch");
    for (int64_t n = 0; n < p.count; ++n) {
        const PreprocessImageDesc& image = images[n];
        VQA_CHECK(image.height >= 1 && image.width >= 1 && image.height <= kPreprocessMaxSide &&
                      image.width <= kPreprocessMaxSide,
                  kInvalidArgument, op, ": image ", n, ": expected a size in [1, ", kPreprocessMaxSide, "], got ",
                  image.height, "x", image.width);
        const int64_t row_bytes = 3 * image.width;
        const int64_t stride = image.row_stride == 0 ? row_bytes : image.row_stride;
        VQA_CHECK(stride >= row_bytes, kInvalidArgument, op, ": image ", n, ": row_stride must be >= 3·w = ", row_bytes,
                  " (or 0 for dense rows), got ", image.row_stride);
        // offset + (h − 1)·stride + 3·w <= staging_bytes, written so that nothing can overflow
        const bool inside = image.offset >= 0 && image.offset <= staging_bytes &&
                            row_bytes <= staging_bytes - image.offset &&
                            image.height - 1 <= (staging_bytes - image.offset - row_bytes) / stride;
        VQA_CHECK(inside, kInvalidArgument, op, ": image ", n, " (", image.height, "x", image.width, ", offset ",
                  image.offset, ", row stride ", stride, ") does not lie inside the ", staging_bytes,
                  "-byte staging buffer");
    }
}

#if VQA_WITH_CUDA
namespace cuda {

// One image in device memory. Asynchronous on `stream`; no allocation. Instantiated for T = float, __half and
// __nv_bfloat16.
template <typename T>
void preprocess_image(const cpu::PreprocessParams& params,
                      const uint8_t* src,  // [h, w, 3] RGB, rows params.src_row_stride bytes apart (0: dense)
                      T* dst,              // [3, H, W]
                      cudaStream_t stream);

// N images packed in one device staging buffer. The descriptors are host memory, read before the call returns
// (so they may change right after it). Asynchronous on `stream`; no allocation.
template <typename T>
void preprocess_images(const PreprocessBatchParams& params,
                       const PreprocessImageDesc* images,  // [N], host memory
                       const uint8_t* staging,             // [staging_bytes], device memory
                       int64_t staging_bytes,
                       T* dst,  // [N, 3, H, W]
                       cudaStream_t stream);

extern template void preprocess_image<float>(const cpu::PreprocessParams&, const uint8_t*, float*, cudaStream_t);
extern template void preprocess_image<__half>(const cpu::PreprocessParams&, const uint8_t*, __half*, cudaStream_t);
extern template void preprocess_image<__nv_bfloat16>(const cpu::PreprocessParams&,
                                                     const uint8_t*,
                                                     __nv_bfloat16*,
                                                     cudaStream_t);
extern template void preprocess_images<float>(
    const PreprocessBatchParams&, const PreprocessImageDesc*, const uint8_t*, int64_t, float*, cudaStream_t);
extern template void preprocess_images<__half>(
    const PreprocessBatchParams&, const PreprocessImageDesc*, const uint8_t*, int64_t, __half*, cudaStream_t);
extern template void preprocess_images<__nv_bfloat16>(
    const PreprocessBatchParams&, const PreprocessImageDesc*, const uint8_t*, int64_t, __nv_bfloat16*, cudaStream_t);

}  // namespace cuda
#endif

}  // namespace vqa

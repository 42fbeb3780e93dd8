// JPEG decoding with libjpeg(-turbo), the decoder behind Pillow: with its defaults (islow IDCT, fancy
// upsampling) the pixels are bit-identical to the PyTorch reference's, which stb_image's decoder is not (±3).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/image_io.h"

namespace vqa {

// True when the bytes start with a JPEG SOI marker.
bool has_jpeg_signature(const uint8_t* data, std::size_t size);

// Decodes to 8-bit RGB (grey replicated; CMYK/YCCK converted as Pillow does). kImageDecode naming `name` for a
// corrupt or truncated stream or more than `max_pixels` pixels (checked before decoding).
ImageU8 decode_jpeg(const uint8_t* data, std::size_t size, const std::string& name, int64_t max_pixels);

}  // namespace vqa

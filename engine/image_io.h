// Image decoding to 8-bit RGB, docs/model-format.md §4.1 step 1. JPEG through libjpeg-turbo (bit-identical to
// the Pillow decode of the PyTorch reference); PNG, BMP, GIF, PSD, PIC, PNM (8-bit: stb_image 2.27 misreads 16-bit
// PNM) and HDR through stb_image (TGA is disabled: it has no signature, so any file could pass for one).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace vqa {

// Row-major HWC RGB, 8 bits per sample.
struct ImageU8 {
    int height = 0;
    int width = 0;
    std::vector<uint8_t> pixels;  // [height, width, 3]
};

struct ImageDecodeOptions {
    // Images with more pixels are refused before decoding (a corrupt or hostile header can claim anything).
    int64_t max_pixels = 64'000'000;
};

// Grey is replicated to three channels, alpha dropped (no compositing), 16-bit samples keep their high byte,
// palettes expanded; the first frame of an animation. kIo if the file cannot be read; kImageDecode, naming
// the file and the reason, for an empty, truncated, corrupt, unrecognised or too large image.
ImageU8 decode_image_file(const std::string& path, const ImageDecodeOptions& options = {});
// The same from encoded bytes in memory; `name` labels the buffer in messages.
ImageU8 decode_image_memory(const void* data,
                            std::size_t size,
                            const std::string& name,
                            const ImageDecodeOptions& options = {});

// The decoders' shared refusal: kImageDecode "NAME: image is W x H = N pixels, outside the limit of 1 to MAX".
[[noreturn]] void throw_image_too_large(const std::string& name, int64_t width, int64_t height, int64_t max_pixels);

}  // namespace vqa

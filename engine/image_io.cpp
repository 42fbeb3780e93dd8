#include "engine/image_io.h"

#include <climits>
#include <cstring>
#include <memory>

#include "engine/jpeg_decode.h"
#include "engine/json_util.h"

// The one definition of stb_image in the library, with internal linkage so that it cannot clash with another
// copy (libstb.so, or a user's own) in the same process.
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_TGA
#define STBI_NO_JPEG  // jpeg_decode.cpp
#include <stb/stb_image.h>

namespace vqa {
namespace {

constexpr int kRgbChannels = 3;

struct StbFree {
    void operator()(stbi_uc* p) const noexcept { stbi_image_free(p); }
};

// stb's PNG header check refuses images over 2^30 decoded bytes itself, and then reports the last format it
// tried ("unknown image type"); reading IHDR here keeps the message about the size.
bool png_dimensions(const stbi_uc* bytes, std::size_t size, int64_t* width, int64_t* height) {
    static const stbi_uc kSignatureAndIhdr[16] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n',
                                                  0,    0,   0,   13,  'I',  'H',  'D',  'R'};
    if (size < 24 || std::memcmp(bytes, kSignatureAndIhdr, sizeof(kSignatureAndIhdr)) != 0) {
        return false;
    }
    const auto big_endian = [&](std::size_t at) {
        return (int64_t{bytes[at]} << 24) | (int64_t{bytes[at + 1]} << 16) | (int64_t{bytes[at + 2]} << 8) |
               int64_t{bytes[at + 3]};
    };
    *width = big_endian(16);
    *height = big_endian(20);
    return true;
}

std::string stb_reason() {
    const char* reason = stbi_failure_reason();
    return reason ? reason : "unknown error";
}

}  // namespace

void throw_image_too_large(const std::string& name, int64_t width, int64_t height, int64_t max_pixels) {
    throw_error(ErrorCode::kImageDecode, name, ": image is ", width, " x ", height, " = ", width * height,
                " pixels, outside the limit of 1 to ", max_pixels, " pixels");
}

ImageU8 decode_image_memory(const void* data,
                            std::size_t size,
                            const std::string& name,
                            const ImageDecodeOptions& options) {
    if (size == 0) {
        throw_error(ErrorCode::kImageDecode, name, ": cannot decode image: the file is empty (0 bytes)");
    }
    if (size > static_cast<std::size_t>(INT_MAX)) {
        throw_error(ErrorCode::kImageDecode, name, ": cannot decode image: ", size,
                    " bytes is more than the decoder's limit of ", INT_MAX);
    }
    const auto* bytes = static_cast<const stbi_uc*>(data);
    if (has_jpeg_signature(bytes, size)) {
        return decode_jpeg(bytes, size, name, options.max_pixels);
    }
    const int length = static_cast<int>(size);

    int width = 0;
    int height = 0;
    int channels = 0;
    if (!stbi_info_from_memory(bytes, length, &width, &height, &channels)) {
        int64_t png_width = 0;
        int64_t png_height = 0;
        if (png_dimensions(bytes, size, &png_width, &png_height) && png_width * png_height > options.max_pixels) {
            throw_image_too_large(name, png_width, png_height, options.max_pixels);
        }
        throw_error(ErrorCode::kImageDecode, name,
                    ": cannot decode image: not a recognised image format or a corrupt header (", stb_reason(), ")");
    }
    const int64_t pixels = static_cast<int64_t>(width) * height;
    if (width <= 0 || height <= 0 || pixels > options.max_pixels) {
        throw_image_too_large(name, width, height, options.max_pixels);
    }

    int decoded_width = 0;
    int decoded_height = 0;
    // With 3 requested channels stb replicates grey, drops alpha, expands palettes and reduces 16-bit samples
    // to their high byte (v >> 8): exactly §4.1 step 1.
    std::unique_ptr<stbi_uc, StbFree> decoded(
        stbi_load_from_memory(bytes, length, &decoded_width, &decoded_height, &channels, kRgbChannels));
    if (!decoded) {
        throw_error(ErrorCode::kImageDecode, name, ": cannot decode image: corrupt or truncated data (", stb_reason(),
                    ")");
    }
    if (decoded_width != width || decoded_height != height) {
        throw_error(ErrorCode::kImageDecode, name, ": cannot decode image: header says ", width, " x ", height,
                    " but the data decodes to ", decoded_width, " x ", decoded_height);
    }

    ImageU8 image;
    image.width = width;
    image.height = height;
    image.pixels.resize(static_cast<std::size_t>(pixels) * kRgbChannels);
    std::memcpy(image.pixels.data(), decoded.get(), image.pixels.size());
    return image;
}

ImageU8 decode_image_file(const std::string& path, const ImageDecodeOptions& options) {
    const std::string bytes = read_file_bytes(path, static_cast<std::size_t>(INT_MAX));
    return decode_image_memory(bytes.data(), bytes.size(), path, options);
}

}  // namespace vqa

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

// stb_image 2.27 reads a binary PNM's header numbers into an int without an overflow check, ignores pixel data
// cut short (the image is then whatever its buffer held), and mishandles 16-bit samples (little-endian, and read
// past its buffer when converting grey to RGB). The header is read here first, exactly as stb reads it (each
// number after whitespace and '#' comments; the data starts after the byte that ends maxval), so that such a
// file is refused. Other formats pass through.
void check_pnm(const stbi_uc* bytes, std::size_t size, const std::string& name, int64_t max_pixels) {
    if (size < 2 || bytes[0] != 'P' || (bytes[1] != '5' && bytes[1] != '6')) {
        return;
    }
    std::size_t pos = 2;
    const auto at_eof = [&] { return pos >= size; };
    const auto next = [&] { return pos < size ? static_cast<char>(bytes[pos++]) : '\0'; };
    const auto is_space = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
    char c = next();
    const auto read_number = [&](const char* what) {
        for (;;) {
            while (!at_eof() && is_space(c)) {
                c = next();
            }
            if (at_eof() || c != '#') {
                break;
            }
            while (!at_eof() && c != '\n' && c != '\r') {
                c = next();
            }
        }
        int64_t value = 0;
        while (!at_eof() && c >= '0' && c <= '9') {
            value = value * 10 + (c - '0');
            if (value > INT_MAX) {
                throw_error(ErrorCode::kImageDecode, name, ": cannot decode image: PNM ", what, " is past ", INT_MAX);
            }
            c = next();
        }
        return value;
    };
    const int64_t width = read_number("width");
    const int64_t height = read_number("height");
    const int64_t maxval = read_number("maxval");
    if (maxval > 255) {
        throw_error(ErrorCode::kImageDecode, name, ": cannot decode image: 16-bit PNM (maxval ", maxval,
                    ") is not supported; convert it to PNG");
    }
    if (width * height > max_pixels) {
        throw_image_too_large(name, width, height, max_pixels);
    }
    int64_t expected = 0;
    const bool overflow = __builtin_mul_overflow(width * height, bytes[1] == '6' ? 3 : 1, &expected);
    if (overflow || static_cast<int64_t>(size - pos) < expected) {
        throw_error(ErrorCode::kImageDecode, name, ": cannot decode image: truncated PNM: ", size - pos,
                    " bytes of pixel data, expected ", expected);
    }
}

// stb_image 2.27 grows its buffer to a PNG chunk's declared length before it reads the chunk: a few hundred
// bytes can make it allocate 2 GiB. Every chunk up to IEND must lie inside the file.
void check_png_chunks(const stbi_uc* bytes, std::size_t size, const std::string& name) {
    static const stbi_uc kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    constexpr std::size_t kChunkOverhead = 12;  // length, type, CRC
    if (size < sizeof(kSignature) || std::memcmp(bytes, kSignature, sizeof(kSignature)) != 0) {
        return;
    }
    for (std::size_t pos = sizeof(kSignature); pos + 8 <= size;) {
        const uint64_t length = (uint64_t{bytes[pos]} << 24) | (uint64_t{bytes[pos + 1]} << 16) |
                                (uint64_t{bytes[pos + 2]} << 8) | uint64_t{bytes[pos + 3]};
        const std::string type(reinterpret_cast<const char*>(bytes + pos + 4), 4);
        if (length + kChunkOverhead > size - pos) {
            throw_error(ErrorCode::kImageDecode, name, ": cannot decode image: truncated or corrupt PNG: a chunk of ",
                        length, " bytes at offset ", pos, " runs past the end of the file (", size, " bytes)");
        }
        if (type == "IEND") {
            return;
        }
        pos += kChunkOverhead + length;
    }
}

std::string stb_reason() {
    const char* reason = stbi_failure_reason();
    return reason ? reason : "unknown error";
}

}  // namespace

void throw_image_too_large(const std::string& name, int64_t width, int64_t height, int64_t max_pixels) {
    // The sizes come from 32-bit header fields (PNG allows 2^32 - 1): the product fits in 64 bits unsigned.
    const uint64_t pixels =
        width >= 0 && height >= 0 ? static_cast<uint64_t>(width) * static_cast<uint64_t>(height) : 0;
    throw_error(ErrorCode::kImageDecode, name, ": image is ", width, " x ", height, " = ", pixels,
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
    check_pnm(bytes, size, name, options.max_pixels);
    const int length = static_cast<int>(size);

    int width = 0;
    int height = 0;
    int channels = 0;
    if (!stbi_info_from_memory(bytes, length, &width, &height, &channels)) {
        int64_t png_width = 0;
        int64_t png_height = 0;
        if (png_dimensions(bytes, size, &png_width, &png_height) &&
            static_cast<uint64_t>(png_width) * static_cast<uint64_t>(png_height) >
                static_cast<uint64_t>(options.max_pixels)) {
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
    check_png_chunks(bytes, size, name);
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

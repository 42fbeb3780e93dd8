#include "engine/jpeg_decode.h"

#include <algorithm>
#include <csetjmp>
#include <cstdio>  // jpeglib.h needs FILE
#include <jerror.h>
#include <jpeglib.h>

#include "engine/json_util.h"

namespace vqa {
namespace {

constexpr int kRgbChannels = 3;
constexpr int kCmykChannels = 4;

// libjpeg reports fatal errors through error_exit, which must not return: it longjmps back to decode_raw.
struct ErrorManager {
    jpeg_error_mgr base;  // first member: libjpeg hands &base back as cinfo->err
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void on_fatal(j_common_ptr cinfo) {
    auto* manager = reinterpret_cast<ErrorManager*>(cinfo->err);
    (*cinfo->err->format_message)(cinfo, manager->message);
    std::longjmp(manager->jump, 1);
}

// libjpeg only warns about damaged data and fills the gap with grey; for us a damaged image is an error
// (Pillow also refuses truncated files). Harmless warnings (extra bytes before a marker, unknown JFIF
// revision) and trace messages are dropped instead of printed to stderr.
void on_message(j_common_ptr cinfo, int level) {
    if (level != -1) {
        return;
    }
    switch (cinfo->err->msg_code) {
        case JWRN_JPEG_EOF:
        case JWRN_HIT_MARKER:
        case JWRN_HUFF_BAD_CODE:
        case JWRN_MUST_RESYNC:
        case JWRN_BOGUS_PROGRESSION:
            on_fatal(cinfo);
        default:
            break;
    }
}

// Pillow's CMYK -> RGB on its inverted ("Adobe") samples: rgb = nk - c * nk / 255 (rounded), nk = 255 - k.
void cmyk_row_to_rgb(const uint8_t* cmyk, uint8_t* rgb, int width) {
    for (int x = 0; x < width; ++x, cmyk += kCmykChannels, rgb += kRgbChannels) {
        const int nk = cmyk[3];  // inverted k is 255 - k
        for (int c = 0; c < kRgbChannels; ++c) {
            const int scaled = (255 - cmyk[c]) * nk + 128;
            rgb[c] = static_cast<uint8_t>(std::max(0, nk - (((scaled >> 8) + scaled) >> 8)));
        }
    }
}

enum class Outcome { kDecoded, kCorrupt, kTooLarge };

// Every automatic object here is trivial, so the longjmp back to setjmp skips no destructor. The buffers live
// in the caller; `rgb` and `cmyk_row` are resized only before the first scanline is read.
Outcome decode_raw(const uint8_t* data,
                   std::size_t size,
                   int64_t max_pixels,
                   ErrorManager* errors,
                   int* width,
                   int* height,
                   std::vector<uint8_t>* rgb,
                   std::vector<uint8_t>* cmyk_row) {
    jpeg_decompress_struct cinfo;
    cinfo.err = jpeg_std_error(&errors->base);
    errors->base.error_exit = on_fatal;
    errors->base.emit_message = on_message;
    if (setjmp(errors->jump)) {
        jpeg_destroy_decompress(&cinfo);
        return Outcome::kCorrupt;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
    jpeg_read_header(&cinfo, TRUE);
    *width = static_cast<int>(cinfo.image_width);
    *height = static_cast<int>(cinfo.image_height);
    if (static_cast<int64_t>(cinfo.image_width) * cinfo.image_height > max_pixels) {
        jpeg_destroy_decompress(&cinfo);
        return Outcome::kTooLarge;
    }
    const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;  // libjpeg-turbo replicates grey into RGB itself
    jpeg_start_decompress(&cinfo);
    const std::size_t row_bytes = static_cast<std::size_t>(cinfo.output_width) * kRgbChannels;
    try {
        rgb->resize(row_bytes * cinfo.output_height);
        cmyk_row->resize(cmyk ? static_cast<std::size_t>(cinfo.output_width) * kCmykChannels : 0);
    } catch (...) {
        jpeg_destroy_decompress(&cinfo);
        throw;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t* out = rgb->data() + row_bytes * cinfo.output_scanline;
        JSAMPROW row = cmyk ? cmyk_row->data() : out;
        jpeg_read_scanlines(&cinfo, &row, 1);
        if (cmyk) {
            cmyk_row_to_rgb(cmyk_row->data(), out, static_cast<int>(cinfo.output_width));
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return Outcome::kDecoded;
}

}  // namespace

bool has_jpeg_signature(const uint8_t* data, std::size_t size) {
    return size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff;
}

ImageU8 decode_jpeg(const uint8_t* data, std::size_t size, const std::string& name, int64_t max_pixels) {
    ErrorManager errors{};
    ImageU8 image;
    std::vector<uint8_t> cmyk_row;
    switch (decode_raw(data, size, max_pixels, &errors, &image.width, &image.height, &image.pixels, &cmyk_row)) {
        case Outcome::kDecoded:
            return image;
        case Outcome::kTooLarge:
            throw_image_too_large(name, image.width, image.height, max_pixels);
        case Outcome::kCorrupt:
            break;
    }
    throw_error(ErrorCode::kImageDecode, name,
                ": cannot decode image: corrupt or truncated JPEG data (libjpeg: ", errors.message, ")");
}

}  // namespace vqa

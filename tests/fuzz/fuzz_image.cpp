// libFuzzer target: image decoding (decode_image_memory: libjpeg-turbo and stb_image) with a small pixel limit,
// then the preprocessing the engine applies to a decoded image (resize + normalise to 24 x 24).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "engine/image_io.h"
#include "kernels/cpu/preprocess_image.h"
#include "vqa/error.h"

namespace {

constexpr int64_t kMaxPixels = 1 << 16;  // large images are refused before decoding: keeps each run fast
constexpr int64_t kOutputSide = 24;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    vqa::ImageDecodeOptions options;
    options.max_pixels = kMaxPixels;
    vqa::ImageU8 image;
    try {
        image = vqa::decode_image_memory(data, size, "fuzz input", options);
    } catch (const vqa::Error& e) {
        if (e.code() != vqa::ErrorCode::kImageDecode) {
            std::abort();
        }
        return 0;
    }
    const int64_t pixels = int64_t{image.height} * image.width;
    if (image.height < 1 || image.width < 1 || pixels > kMaxPixels ||
        image.pixels.size() != static_cast<std::size_t>(pixels) * 3) {
        std::abort();
    }
    vqa::cpu::PreprocessParams params;
    params.src_h = image.height;
    params.src_w = image.width;
    params.dst_h = kOutputSide;
    params.dst_w = kOutputSide;
    std::vector<float> out(static_cast<std::size_t>(3 * kOutputSide * kOutputSide));
    vqa::cpu::preprocess_image(params, image.pixels.data(), out.data());
    return 0;
}

// CUDA image preprocessing against the CPU reference (cpu::preprocess_image): sources 1×1, 7×13, 64×64 (the
// copy path at 64×64), 480×640 and 333×517 into 64×64, 224×224 and 448×448, dense and padded source rows, RGB and
// BGR, fp32/fp16/bf16; the batched form with mixed sizes at odd staging offsets, and with more images than one
// launch takes.
#include <algorithm>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/preprocess_image.h"
#include "kernels/preprocess_image.h"
#include "tests/kernels/gpu_case.h"
#include "tests/kernels/test_util.h"

namespace vqa {
namespace {

using test::Precision;

struct Size {
    int height;
    int width;
};

struct Case {
    std::vector<Size> sources;  // one image for the single-image form
    bool batched = false;       // preprocess_images (one staging buffer) instead of preprocess_image
    int dst_h = 224;            // H
    int dst_w = 224;            // W
    Precision precision = Precision::kFp32;
    cpu::ChannelOrder order = cpu::ChannelOrder::kRgb;
    int row_pad = 0;  // bytes after each source row; 0 passes a dense row stride (0)
};

// src480x640_dst224x224_fp16_bgr_pad5, batch5_dst64x64_fp32
std::string case_string(const Case& c) {
    std::string name = c.batched
                           ? "batch" + std::to_string(c.sources.size())
                           : "src" + std::to_string(c.sources[0].height) + "x" + std::to_string(c.sources[0].width);
    name += "_dst" + std::to_string(c.dst_h) + "x" + std::to_string(c.dst_w) + "_" + test::precision_name(c.precision);
    name += c.order == cpu::ChannelOrder::kBgr ? "_bgr" : "";
    name += c.row_pad > 0 ? "_pad" + std::to_string(c.row_pad) : "";
    return name;
}
void PrintTo(const Case& c, std::ostream* out) {
    *out << case_string(c);
}

constexpr Size kSources[] = {{1, 1}, {7, 13}, {64, 64}, {480, 640}, {333, 517}};
constexpr int kDstSides[] = {64, 224, 448};

std::vector<Case> single_cases() {
    std::vector<Case> cases;
    for (const Size source : kSources) {
        for (const int side : kDstSides) {
            cases.push_back({{source}, false, side, side, Precision::kFp32});
        }
        cases.push_back({{source}, false, 224, 224, Precision::kFp32, cpu::ChannelOrder::kBgr, 5});
        for (const Precision precision : {Precision::kFp16, Precision::kBf16}) {
            cases.push_back({{source}, false, 224, 224, precision, cpu::ChannelOrder::kBgr, 7});
            cases.push_back({{source}, false, 64, 64, precision});
        }
    }
    // Non-square outputs, one side resized and the other kept, and a row stride that is a multiple of 4.
    cases.push_back({{{64, 64}}, false, 64, 100, Precision::kFp32, cpu::ChannelOrder::kRgb, 4});
    cases.push_back({{{7, 13}}, false, 31, 13, Precision::kFp32, cpu::ChannelOrder::kBgr});
    return cases;
}

std::vector<Case> batched_cases() {
    const std::vector<Size> mixed(std::begin(kSources), std::end(kSources));
    std::vector<Size> many;  // more than kPreprocessImagesPerLaunch: two launches
    for (int i = 0; i < kPreprocessImagesPerLaunch + 8; ++i) {
        many.push_back(i % 3 == 0 ? Size{64, 64} : Size{5 + i, 40 - i / 2});
    }
    std::vector<Case> cases;
    for (const Precision precision : test::kPrecisions) {
        cases.push_back({mixed, true, 224, 224, precision});
        cases.push_back({mixed, true, 64, 64, precision, cpu::ChannelOrder::kBgr, 3});
    }
    cases.push_back({many, true, 64, 64, Precision::kFp32, cpu::ChannelOrder::kRgb, 1});
    cases.push_back({many, true, 64, 64, Precision::kBf16, cpu::ChannelOrder::kBgr});
    return cases;
}

// ImageNet statistics, in the case's plane order.
cpu::PreprocessParams reference_params(const Case& c, const Size& source) {
    cpu::PreprocessParams p;
    p.src_h = source.height;
    p.src_w = source.width;
    p.src_row_stride = c.row_pad > 0 ? 3 * source.width + c.row_pad : 0;
    p.dst_h = c.dst_h;
    p.dst_w = c.dst_w;
    p.channel_order = c.order;
    const float rgb_mean[3] = {0.485f, 0.456f, 0.406f};
    const float rgb_std[3] = {0.229f, 0.224f, 0.225f};
    for (int plane = 0; plane < 3; ++plane) {
        const int channel = c.order == cpu::ChannelOrder::kRgb ? plane : 2 - plane;
        p.mean[plane] = rgb_mean[channel];
        p.std[plane] = rgb_std[channel];
    }
    return p;
}

// h rows of `stride` bytes, padding included, from a fixed seed: every byte value occurs, 0 and 255 too.
std::vector<uint8_t> random_image(int height, int64_t stride, uint64_t seed) {
    const std::vector<float> u = test::random_vector(static_cast<size_t>(height * stride), seed, 0.0f, 256.0f);
    std::vector<uint8_t> image(u.size());
    std::transform(u.begin(), u.end(), image.begin(), [](float v) { return static_cast<uint8_t>(v); });
    return image;
}

template <typename T>
void check_preprocess(const Case& c) {
    const int64_t image_elems = 3 * int64_t{c.dst_h} * c.dst_w;
    const auto count = static_cast<int64_t>(c.sources.size());
    std::vector<float> expected(static_cast<size_t>(count * image_elems));
    std::vector<uint8_t> staging;
    std::vector<PreprocessImageDesc> descs;
    for (int64_t n = 0; n < count; ++n) {
        const cpu::PreprocessParams p = reference_params(c, c.sources[n]);
        const int64_t stride = p.src_row_stride == 0 ? 3 * p.src_w : p.src_row_stride;
        const std::vector<uint8_t> image = random_image(c.sources[n].height, stride, 61 + n);
        cpu::preprocess_image(p, image.data(), expected.data() + n * image_elems);
        PreprocessImageDesc desc;
        desc.offset = static_cast<int64_t>(staging.size());
        desc.height = p.src_h;
        desc.width = p.src_w;
        desc.row_stride = p.src_row_stride;
        descs.push_back(desc);
        staging.insert(staging.end(), image.begin(), image.end());
        staging.insert(staging.end(), 13, uint8_t{0xEE});  // a gap, so the next image starts at an odd offset
    }

    test::CudaStream stream;
    test::DeviceBuffer<uint8_t> staging_dev(staging.size());
    test::DeviceBuffer<T> dst_dev(static_cast<size_t>(count * image_elems));
    staging_dev.upload(staging);
    dst_dev.poison_nan();
    if (c.batched) {
        const cpu::PreprocessParams common = reference_params(c, c.sources[0]);
        PreprocessBatchParams batch;
        batch.count = count;
        batch.dst_h = c.dst_h;
        batch.dst_w = c.dst_w;
        batch.channel_order = c.order;
        std::copy(common.mean, common.mean + 3, batch.mean);
        std::copy(common.std, common.std + 3, batch.std);
        cuda::preprocess_images(batch, descs.data(), staging_dev.data(), static_cast<int64_t>(staging.size()),
                                dst_dev.data(), stream.get());
    } else {
        cuda::preprocess_image(reference_params(c, c.sources[0]), staging_dev.data(), dst_dev.data(), stream.get());
    }
    stream.synchronize();

    // fp32: the reference's operations in its order without contraction, so bit-identical on x86-64; 1e-6
    // (about 4 ulps at |v| = 2.6) leaves room for a host compiler that fuses the reference's a·b + c·d into an FMA
    // (GCC does on AArch64). fp16/bf16: that value rounded once (2^-9 relative in bf16).
    const test::Tolerance tol =
        c.precision == Precision::kFp32 ? test::Tolerance{1e-12, 1e-6, 0.0} : test::Tolerance{1e-5, 1e-3, 1e-2};
    EXPECT_TRUE(test::all_close(test::to_float(dst_dev.download()), expected, tol, {count, 3, c.dst_h, c.dst_w}));
    EXPECT_TRUE(dst_dev.check_guards());
}

class PreprocessImageGpuTest : public ::testing::TestWithParam<Case> {};

TEST_P(PreprocessImageGpuTest, MatchesReference) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    test::with_element_type(GetParam().precision,
                            [&](auto element) { check_preprocess<decltype(element)>(GetParam()); });
}

INSTANTIATE_TEST_SUITE_P(Single, PreprocessImageGpuTest, ::testing::ValuesIn(single_cases()), test::case_name<Case>);
INSTANTIATE_TEST_SUITE_P(Batched, PreprocessImageGpuTest, ::testing::ValuesIn(batched_cases()), test::case_name<Case>);

}  // namespace
}  // namespace vqa

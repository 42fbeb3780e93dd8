// CPU image preprocessing: a hand-computed 2×2 → 3×3 resize, identity when the size matches, and the spec's
// formula (docs/model-format.md §4.1) at odd up- and down-scales, BGR order and padded source rows; the float
// bilinear_resize against the same formula.
#include "kernels/cpu/preprocess_image.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/kernels/test_util.h"
#include "vqa/error.h"

namespace vqa::cpu {
namespace {

using test::all_close;

// Interpolation of values in [0, 1] in float against double: an ulp or two of results of order 1.
constexpr test::Tolerance kResizeTolerance{1e-12, 1e-6, 1e-6};

std::vector<uint8_t> random_image(int64_t h, int64_t row_stride, uint64_t seed) {
    const std::vector<float> u = test::random_vector(h * row_stride, seed, 0.0f, 256.0f);
    std::vector<uint8_t> image(u.size());
    std::transform(u.begin(), u.end(), image.begin(), [](float v) { return static_cast<uint8_t>(v); });
    return image;
}

// The spec's resize of one plane given by at(y, x): source positions in fp32 as torch computes them, the
// interpolation in double.
template <typename At>
std::vector<double> reference_resize(At at, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w) {
    const auto tap = [](int64_t o, int64_t in, int64_t out, int64_t& i0, int64_t& i1, double& l) {
        const float scale = static_cast<float>(in) / static_cast<float>(out);
        const float s = std::max(scale * (static_cast<float>(o) + 0.5f) - 0.5f, 0.0f);
        i0 = static_cast<int64_t>(std::floor(s));
        i1 = std::min(i0 + 1, in - 1);
        l = static_cast<double>(s) - static_cast<double>(i0);
    };
    std::vector<double> out(out_h * out_w);
    for (int64_t oy = 0; oy < out_h; ++oy) {
        int64_t y0, y1, x0, x1;
        double ly, lx;
        tap(oy, in_h, out_h, y0, y1, ly);
        for (int64_t ox = 0; ox < out_w; ++ox) {
            tap(ox, in_w, out_w, x0, x1, lx);
            out[oy * out_w + ox] =
                (1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x1)) + ly * ((1 - lx) * at(y1, x0) + lx * at(y1, x1));
        }
    }
    return out;
}

TEST(PreprocessImage, HandComputedTwoByTwoToThreeByThree) {
    // scale 2/3: output row/column 0 samples input 0, 1 samples halfway between 0 and 1, 2 samples input 1
    // (source 1.1667 clamps to the last pixel). Channel R holds 0, 255, 51, 102, i.e. 0, 1, 0.2, 0.4.
    const std::vector<uint8_t> image = {0,  10, 20, 255, 10, 20,   // (0,0), (0,1)
                                        51, 10, 20, 102, 10, 20};  // (1,0), (1,1)
    PreprocessParams p;
    p.src_h = p.src_w = 2;
    p.dst_h = p.dst_w = 3;
    p.mean[0] = 0.5f;
    p.std[0] = 0.25f;
    std::vector<float> out(3 * 9);
    test::poison_nan(out);
    preprocess_image(p, image.data(), out.data());
    const std::vector<float> r_plane = {0.0f, 0.5f, 1.0f, 0.1f, 0.4f, 0.7f, 0.2f, 0.3f, 0.4f};
    std::vector<float> expected;
    for (const float v : r_plane) {
        expected.push_back((v - 0.5f) / 0.25f);
    }
    expected.insert(expected.end(), 9, 10.0f / 255.0f);  // G and B are constant: resize keeps them
    expected.insert(expected.end(), 9, 20.0f / 255.0f);
    EXPECT_TRUE(all_close(out, expected, kResizeTolerance, {3, 3, 3}));
}

TEST(PreprocessImage, SameSizeIsPointwise) {
    const int64_t h = 7, w = 5;
    const std::vector<uint8_t> image = random_image(h, 3 * w, 1);
    PreprocessParams p;
    p.src_h = p.dst_h = h;
    p.src_w = p.dst_w = w;
    p.mean[0] = 0.485f, p.mean[1] = 0.456f, p.mean[2] = 0.406f;
    p.std[0] = 0.229f, p.std[1] = 0.224f, p.std[2] = 0.225f;
    std::vector<float> out(3 * h * w);
    test::poison_nan(out);
    preprocess_image(p, image.data(), out.data());
    std::vector<float> expected(out.size());
    for (int64_t c = 0; c < 3; ++c) {
        for (int64_t i = 0; i < h * w; ++i) {
            expected[c * h * w + i] = (static_cast<float>(image[3 * i + c]) / 255.0f - p.mean[c]) / p.std[c];
        }
    }
    EXPECT_TRUE(all_close(out, expected, test::kExact, {3, h, w}));
}

struct ResizeCase {
    int64_t in_h, in_w, out_h, out_w;
};

class PreprocessResizeTest : public testing::TestWithParam<ResizeCase> {};

TEST_P(PreprocessResizeTest, MatchesSpecFormulaBgrPaddedRows) {
    const ResizeCase& c = GetParam();
    const int64_t row_stride = 3 * c.in_w + 5;  // padded source rows
    const std::vector<uint8_t> image = random_image(c.in_h, row_stride, 2);
    PreprocessParams p;
    p.src_h = c.in_h;
    p.src_w = c.in_w;
    p.src_row_stride = row_stride;
    p.dst_h = c.out_h;
    p.dst_w = c.out_w;
    p.channel_order = ChannelOrder::kBgr;
    p.mean[0] = 0.406f, p.mean[1] = 0.456f, p.mean[2] = 0.485f;  // in BGR order
    p.std[0] = 0.225f, p.std[1] = 0.224f, p.std[2] = 0.229f;
    std::vector<float> out(3 * c.out_h * c.out_w);
    test::poison_nan(out);
    preprocess_image(p, image.data(), out.data());

    std::vector<float> expected;
    for (int64_t plane = 0; plane < 3; ++plane) {
        const int64_t channel = 2 - plane;  // BGR: plane 0 is blue
        const auto at = [&](int64_t y, int64_t x) {
            return static_cast<double>(static_cast<float>(image[y * row_stride + 3 * x + channel]) / 255.0f);
        };
        for (const double v : reference_resize(at, c.in_h, c.in_w, c.out_h, c.out_w)) {
            expected.push_back(static_cast<float>((v - p.mean[plane]) / p.std[plane]));
        }
    }
    // dividing by std ≈ 0.22 scales the interpolation error by about 4.5: atol 5e-6
    EXPECT_TRUE(all_close(out, expected, {1e-12, 5e-6, 1e-6}, {3, c.out_h, c.out_w}));
}

std::string resize_case_name(const testing::TestParamInfo<ResizeCase>& info) {
    const ResizeCase& c = info.param;
    return "in" + std::to_string(c.in_h) + "x" + std::to_string(c.in_w) + "_out" + std::to_string(c.out_h) + "x" +
           std::to_string(c.out_w);
}

INSTANTIATE_TEST_SUITE_P(Sizes,
                         PreprocessResizeTest,
                         testing::Values(ResizeCase{2, 2, 3, 3},
                                         ResizeCase{7, 5, 3, 9},
                                         ResizeCase{33, 31, 64, 64},
                                         ResizeCase{100, 3, 1, 1},
                                         ResizeCase{1, 1, 7, 2},
                                         ResizeCase{480, 640, 224, 224}),
                         resize_case_name);

TEST(BilinearResize, MatchesSpecFormula) {
    for (const ResizeCase& c : {ResizeCase{7, 5, 3, 9}, ResizeCase{31, 33, 32, 32}, ResizeCase{1, 2, 3, 1}}) {
        SCOPED_TRACE(std::to_string(c.in_h) + "x" + std::to_string(c.in_w) + " -> " + std::to_string(c.out_h) + "x" +
                     std::to_string(c.out_w));
        const int64_t planes = 2;
        const std::vector<float> src = test::random_vector(planes * c.in_h * c.in_w, 3);
        std::vector<float> dst(planes * c.out_h * c.out_w);
        test::poison_nan(dst);
        bilinear_resize(src.data(), dst.data(), planes, c.in_h, c.in_w, c.out_h, c.out_w);
        std::vector<float> expected;
        for (int64_t plane = 0; plane < planes; ++plane) {
            const auto at = [&](int64_t y, int64_t x) {
                return static_cast<double>(src[(plane * c.in_h + y) * c.in_w + x]);
            };
            for (const double v : reference_resize(at, c.in_h, c.in_w, c.out_h, c.out_w)) {
                expected.push_back(static_cast<float>(v));
            }
        }
        EXPECT_TRUE(all_close(dst, expected, kResizeTolerance, {planes, c.out_h, c.out_w}));
    }
}

TEST(PreprocessImage, RejectsBadParams) {
    std::vector<uint8_t> image(12);
    std::vector<float> out(27);
    PreprocessParams p;
    p.src_h = p.src_w = 2;
    p.dst_h = p.dst_w = 3;
    p.std[1] = 0.0f;
    EXPECT_THROW(preprocess_image(p, image.data(), out.data()), Error);
    p.std[1] = 1.0f;
    p.src_row_stride = 5;  // shorter than a row of 2 RGB pixels
    EXPECT_THROW(preprocess_image(p, image.data(), out.data()), Error);
    p.src_row_stride = 0;
    p.dst_w = 0;
    EXPECT_THROW(preprocess_image(p, image.data(), out.data()), Error);
}

}  // namespace
}  // namespace vqa::cpu

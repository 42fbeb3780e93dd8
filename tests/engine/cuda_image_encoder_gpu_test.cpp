// The cuDNN image trunk (gpu::CudaImageTrunk) against the CPU backend's (cpu_layers::ImageTrunk) on the grid
// golden models: small CNNs with and without BatchNorm, ResNet-18 (BasicBlock) and ResNet-50 (Bottleneck), also at
// input sizes that make odd feature maps (floor-mode pooling, the stem pool's padding); batches of 1, 3 and 5
// images through one trunk planned for 5; fused and separate conv + bias + ReLU; fp32/fp16/bf16. The arena is
// poisoned with NaN before every pass, so a read of scratch that was never written fails the comparison.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/cpu_image_encoder.h"
#include "engine/cuda_image_encoder.h"
#include "engine/model_dir.h"
#include "tests/engine/engine_test_util.h"
#include "tests/kernels/gpu_case.h"
#include "tests/kernels/test_util.h"

namespace vqa {
namespace {

namespace fs = std::filesystem;
using test::Precision;

const fs::path kGoldens = fs::path(VQA_SOURCE_DIR) / "tests" / "goldens";
constexpr int64_t kMaxImages = 5;
constexpr int64_t kBatchSizes[] = {1, 3, 5};

struct Case {
    const char* variant = "";  // a grid golden model under tests/goldens
    int height = 0;            // image.input override; 0 keeps the model's
    int width = 0;
    Precision precision = Precision::kFp32;
    gpu::ConvFusion fusion = gpu::ConvFusion::kFused;
};

// resnet18_lstm_mcan_37x29_bf16_separate
std::string case_string(const Case& c) {
    std::string name = c.variant;
    name += c.height > 0 ? "_" + std::to_string(c.height) + "x" + std::to_string(c.width) : "";
    name += std::string("_") + test::precision_name(c.precision);
    name += c.fusion == gpu::ConvFusion::kSeparate ? "_separate" : "";
    return name;
}
std::string case_name(const ::testing::TestParamInfo<Case>& info) {
    return case_string(info.param);
}
void PrintTo(const Case& c, std::ostream* out) {
    *out << case_string(c);
}

std::vector<Case> golden_cases() {
    std::vector<Case> cases;
    for (const Precision precision : test::kPrecisions) {
        for (const char* variant :
             {"cnn_lstm_mcan_generate_lstm", "cnn_lstm_mcan_softmax", "cnn_transformer_simple_sigmoid",
              "resnet18_lstm_mcan", "resnet50_transformer_simple"}) {
            cases.push_back({variant, 0, 0, precision});
        }
        // 15x13 -> 7x6 -> 3x3: both pools drop a row or a column (floor mode).
        cases.push_back({"cnn_lstm_mcan_generate_lstm", 15, 13, precision});
        // 37x29 -> stem 19x15 -> pool 10x8 -> 5x4 -> 3x2 -> 2x1: odd maps into every stride-2 conv and the pool.
        cases.push_back({"resnet18_lstm_mcan", 37, 29, precision});
        // Bottleneck blocks on a 2x2 final grid (the golden's own 32x32 input ends at 1x1).
        cases.push_back({"resnet50_transformer_simple", 64, 48, precision});
    }
    return cases;
}

std::vector<Case> separate_cases() {
    std::vector<Case> cases;
    for (const Precision precision : test::kPrecisions) {
        cases.push_back({"cnn_lstm_mcan_softmax", 0, 0, precision, gpu::ConvFusion::kSeparate});
        cases.push_back({"resnet18_lstm_mcan", 37, 29, precision, gpu::ConvFusion::kSeparate});
        cases.push_back({"resnet50_transformer_simple", 64, 48, precision, gpu::ConvFusion::kSeparate});
    }
    return cases;
}

cpu_layers::ImageTrunk load_trunk(const Case& c) {
    const ModelDir dir = load_model_dir((kGoldens / c.variant).string());
    ModelConfig config = dir.config;
    if (c.height > 0) {
        // The trunk's weights do not depend on the input size; only the feature-map sizes do.
        config.image.input.height = c.height;
        config.image.input.width = c.width;
    }
    return cpu_layers::ImageTrunk(config, cpu_layers::WeightReader(dir.weights));
}

// Fills the whole arena with NaN (all bits set, in every element type) and makes it free again.
void poison_arena(gpu::CudaContext& ctx) {
    ctx.arena().reset();
    const std::size_t bytes = ctx.arena().capacity();
    void* all = ctx.arena().take_bytes(bytes);
    VQA_CUDA_CHECK(cudaMemset(all, 0xFF, bytes));
    VQA_CUDA_CHECK(cudaDeviceSynchronize());
    ctx.arena().reset();
}

// The features span a range of about ±rms; an error is judged against |expected| + rms, so that features near 0
// (ReLU outputs, partial cancellations) are held to the scale of the map rather than to their own size.
//  - fp32: cuDNN sums the products in another order than OpenBLAS (and may use Winograd or FFT): rounding only.
//  - fp16/bf16: every stored feature map is rounded to the element type (2^-11, 2^-8 relative), and the errors
//    add up along the layers. Emulating that rounding on the CPU over these models and inputs (fused and separate,
//    batches of 3) gave at most nmse 1.9e-6 and |diff| 0.005·(|expected| + rms) in fp16, nmse 1.1e-4 and
//    |diff| 0.03·(|expected| + rms) in bf16 (ResNet-18 at 64x48, separate steps: three roundings per
//    convolution). The bounds leave 2.5-10x of that, for kernels that also round inside (reduced-precision
//    Winograd or FFT transforms); a wrong layout, bias, identity or pool gives nmse ~1.
test::Tolerance tolerance(Precision precision, const std::vector<float>& expected) {
    double squares = 0.0;
    for (const float v : expected) {
        squares += static_cast<double>(v) * v;
    }
    const double rms = std::sqrt(squares / static_cast<double>(expected.size()));
    switch (precision) {
        case Precision::kFp16:
            return {2e-5, 2e-2 * rms, 2e-2};
        case Precision::kBf16:
            return {5e-4, 8e-2 * rms, 8e-2};
        case Precision::kFp32:
            break;
    }
    return {1e-8, 1e-4 * rms, 1e-4};
}

template <typename T>
void check_trunk(const Case& c) {
    const cpu_layers::ImageTrunk trunk = load_trunk(c);
    const int64_t height = trunk.input_height();
    const int64_t width = trunk.input_width();
    gpu::CudaContext ctx(0);
    const gpu::CudaImageTrunk<T> cuda_trunk(ctx, trunk, kMaxImages, c.fusion);
    ASSERT_EQ(cuda_trunk.tokens(), trunk.tokens());
    ASSERT_EQ(cuda_trunk.feature_dim(), trunk.feature_dim());

    // The engine's load-time pass at the largest batch: it sizes the arena, which then must not grow again.
    {
        test::DeviceBuffer<T> pixels(static_cast<size_t>(kMaxImages * 3 * height * width));
        pixels.upload(test::from_float<T>(test::random_vector(pixels.size(), 100, -2.0f, 2.0f)));
        test::DeviceBuffer<T> features(static_cast<size_t>(kMaxImages * trunk.tokens() * trunk.feature_dim()));
        ctx.arena().reset();
        cuda_trunk.encode(ctx, pixels.data(), kMaxImages, features.data());
        ctx.synchronize();
    }
    poison_arena(ctx);
    const std::size_t arena_bytes = ctx.arena().capacity();
    ASSERT_EQ(ctx.arena().chunk_count(), 1);

    for (const int64_t count : kBatchSizes) {
        SCOPED_TRACE("Bi = " + std::to_string(count));
        // Preprocessed pixels are about (x - mean) / std in [-2.1, 2.6]. The CPU sees the values the GPU sees.
        const std::vector<float> pixels = test::round_to<T>(test::random_vector(
            static_cast<size_t>(count * 3 * height * width), 200 + static_cast<uint64_t>(count), -2.0f, 2.0f));
        ImageBatch batch;
        batch.count = count;
        batch.pixels = pixels.data();
        std::vector<float> expected;
        std::vector<uint8_t> mask;
        trunk.encode(batch, expected, mask);

        test::DeviceBuffer<T> pixels_dev(pixels.size());
        pixels_dev.upload(test::from_float<T>(pixels));
        test::DeviceBuffer<T> features_dev(expected.size());
        features_dev.poison_nan();
        poison_arena(ctx);
        cuda_trunk.encode(ctx, pixels_dev.data(), count, features_dev.data());
        ctx.synchronize();

        EXPECT_TRUE(test::all_close(test::to_float(features_dev.download()), expected, tolerance(c.precision, expected),
                                    {count, trunk.tokens(), trunk.feature_dim()}));
        EXPECT_TRUE(features_dev.check_guards());
        EXPECT_TRUE(pixels_dev.check_guards());
        EXPECT_EQ(ctx.arena().chunk_count(), 1) << "the arena grew after the pass at max_images";
        EXPECT_EQ(ctx.arena().capacity(), arena_bytes) << "the arena grew after the pass at max_images";
    }
}

class CudaImageTrunkTest : public ::testing::TestWithParam<Case> {};

TEST_P(CudaImageTrunkTest, MatchesCpuTrunk) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    test::with_element_type(GetParam().precision, [&](auto element) { check_trunk<decltype(element)>(GetParam()); });
}

INSTANTIATE_TEST_SUITE_P(Goldens, CudaImageTrunkTest, ::testing::ValuesIn(golden_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Separate, CudaImageTrunkTest, ::testing::ValuesIn(separate_cases()), case_name);

TEST(CudaImageTrunkArgsTest, RejectsBadArguments) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    const cpu_layers::ImageTrunk trunk = load_trunk({"cnn_lstm_mcan_softmax"});
    gpu::CudaContext ctx(0);
    EXPECT_VQA_ERROR(static_cast<void>(gpu::CudaImageTrunk<float>(ctx, trunk, 0)), kInvalidArgument, "max_images");
    const ModelDir regions_dir = load_model_dir((kGoldens / "regions_lstm_simple_generate_gru").string());
    const cpu_layers::ImageTrunk regions(regions_dir.config, cpu_layers::WeightReader(regions_dir.weights));
    EXPECT_VQA_ERROR(static_cast<void>(gpu::CudaImageTrunk<float>(ctx, regions, 1)), kUnsupported, "regions");

    const gpu::CudaImageTrunk<float> cuda_trunk(ctx, trunk, 2);
    const auto pixel_count = static_cast<size_t>(3 * 3 * trunk.input_height() * trunk.input_width());
    test::DeviceBuffer<float> pixels(pixel_count);
    pixels.upload(test::random_vector(pixel_count, 300));
    test::DeviceBuffer<float> features(static_cast<size_t>(3 * trunk.tokens() * trunk.feature_dim()) + 1);
    features.poison_nan();
    ctx.arena().reset();
    EXPECT_VQA_ERROR(cuda_trunk.encode(ctx, pixels.data(), 3, features.data()), kInvalidArgument, "max_images = 2");
    EXPECT_VQA_ERROR(cuda_trunk.encode(ctx, pixels.data(), -1, features.data()), kInvalidArgument, "count");
    EXPECT_VQA_ERROR(cuda_trunk.encode(ctx, pixels.data(), 1, nullptr), kInvalidArgument, "null");
    EXPECT_VQA_ERROR(cuda_trunk.encode(ctx, pixels.data(), 1, features.data() + 1), kInvalidArgument, "aligned");

    // count 0 writes nothing.
    cuda_trunk.encode(ctx, pixels.data(), 0, features.data());
    ctx.synchronize();
    for (const float v : features.download()) {
        ASSERT_TRUE(std::isnan(v));
    }
}

}  // namespace
}  // namespace vqa

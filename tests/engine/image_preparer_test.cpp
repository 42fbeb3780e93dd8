// Images prepared on worker threads while the forward passes run (engine/image_preparer.h): every outcome equals
// the calling thread's, a bad image fails only itself, and the engine's answers do not depend on
// EngineOptions::decode_threads or on max_batch splitting the call into several passes.
#include "engine/image_preparer.h"

#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/config.h"
#include "vqa/engine.h"

namespace vqa {
namespace {

namespace fs = std::filesystem;

const fs::path kBundled = fs::path(VQA_SOURCE_DIR) / "models" / "easy-vqa";
const fs::path kImages = fs::path(VQA_SOURCE_DIR) / "examples" / "images";

// Six example images, a missing file and a non-image, in an order the passes would not use.
std::vector<ImageInput> mixed_images() {
    std::vector<ImageInput> images;
    for (int i = 5; i >= 0; --i) {
        images.push_back(ImageInput::file((kImages / ("shape" + std::to_string(i) + ".png")).string()));
    }
    images.push_back(ImageInput::file((kImages / "no-such-image.png").string()));
    images.push_back(ImageInput::encoded({'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'}, "junk"));
    return images;
}

TEST(ImagePreparerTest, WorkersGiveTheCallingThreadsOutcomes) {
    const ModelConfig config = load_model_config((kBundled / "config.json").string());
    const std::vector<ImageInput> images = mixed_images();
    const std::vector<std::size_t> order = {7, 0, 3, 6, 1, 2, 5, 4};
    ImagePreparer inline_preparer(images, order, config, 64'000'000, 0);
    for (const int threads : {1, 3, 8}) {
        SCOPED_TRACE("threads " + std::to_string(threads));
        ImagePreparer preparer(images, order, config, 64'000'000, threads);
        for (auto it = order.rbegin(); it != order.rend(); ++it) {  // waited for out of order
            const ImagePreparer::Outcome& got = preparer.wait(*it);
            const ImagePreparer::Outcome& expected = inline_preparer.wait(*it);
            ASSERT_EQ(got.image.has_value(), expected.image.has_value()) << *it;
            if (got.image) {
                EXPECT_EQ(got.image->pixels, expected.image->pixels);
            } else {
                EXPECT_EQ(got.code, expected.code);
                EXPECT_EQ(got.error, expected.error);
            }
        }
    }
    EXPECT_FALSE(inline_preparer.wait(6).image.has_value());
    EXPECT_EQ(inline_preparer.wait(6).code, ErrorCode::kIo);
    EXPECT_FALSE(inline_preparer.wait(7).image.has_value());
    EXPECT_TRUE(inline_preparer.wait(0).image.has_value());
}

// A preparer destroyed before anyone waited joins its workers without hanging.
TEST(ImagePreparerTest, DestroyedEarlyJoinsItsWorkers) {
    const ModelConfig config = load_model_config((kBundled / "config.json").string());
    const std::vector<ImageInput> images = mixed_images();
    for (int i = 0; i < 20; ++i) {
        ImagePreparer preparer(images, {0, 1, 2, 3, 4, 5, 6, 7}, config, 64'000'000, 4);
    }
}

std::vector<std::string> answers_of(const std::vector<Result>& results) {
    std::vector<std::string> out;
    for (const Result& r : results) {
        out.push_back(r.ok ? r.answers.at(0).text : "error: " + r.error);
    }
    return out;
}

TEST(ImagePreparerTest, EngineAnswersDoNotDependOnDecodeThreads) {
    const std::vector<ImageInput> images = mixed_images();
    std::vector<Query> queries;
    for (int q = 0; q < 24; ++q) {
        queries.push_back({(q * 5) % 8, q % 2 == 0 ? "what color is the shape?" : "is there a circle?"});
    }
    std::vector<std::string> reference;
    for (const int decode_threads : {0, -1, 1, 3}) {
        for (const int max_batch : {64, 5}) {
            SCOPED_TRACE("decode_threads " + std::to_string(decode_threads) + ", max_batch " +
                         std::to_string(max_batch));
            EngineOptions options;
            options.device = Device::kCpu;
            options.threads = 1;
            options.max_batch = max_batch;
            options.decode_threads = decode_threads;
            const std::vector<std::string> got =
                answers_of(Engine::load(kBundled.string(), options).answer(images, queries));
            if (reference.empty()) {
                reference = got;
                for (std::size_t q = 0; q < queries.size(); ++q) {
                    EXPECT_EQ(got[q].rfind("error", 0) == 0, queries[q].image >= 6) << got[q];
                }
            }
            EXPECT_EQ(got, reference);
        }
    }
    EngineOptions bad;
    bad.decode_threads = -2;
    EXPECT_THROW(Engine::load(kBundled.string(), bad), Error);
}

}  // namespace
}  // namespace vqa

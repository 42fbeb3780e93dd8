// A converted openvqa MCAN (tests/goldens-openvqa, written by tools/make_openvqa_golden.py) answers through the
// public API with the logits of the openvqa-layout network: region features with pixel boxes, openvqa's
// tokenizer rules, unbiased-std LayerNorm, sigmoid scores.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include "engine/safetensors.h"
#include "vqa/engine.h"

namespace vqa {
namespace {

namespace fs = std::filesystem;

const fs::path kFixture = fs::path(VQA_SOURCE_DIR) / "tests" / "goldens-openvqa" / "mcan_tiny";
constexpr int kNumImages = 3;
constexpr double kRelTolerance = 1e-4;

ImageInput fixture_image(int i) {
    const SafetensorsFile file((kFixture / ("image" + std::to_string(i) + ".safetensors")).string());
    RegionFeatures rf;
    const auto& shape = file.info("features").shape;  // [N, F]
    rf.num_regions = shape[0];
    rf.feature_dim = shape[1];
    rf.features = file.to_float("features");
    rf.boxes = file.to_float("boxes");  // [N, 4] pixels
    const std::vector<float> size = file.to_float("image_size");
    rf.image_width = size[0];
    rf.image_height = size[1];
    return ImageInput::regions(std::move(rf), "image" + std::to_string(i));
}

TEST(OpenVQAParityTest, LogitsMatchOpenVQALayoutNetwork) {
    const Engine engine = Engine::load(kFixture.string(), EngineOptions{Device::kCpu});
    std::ifstream in(kFixture / "questions.json");
    const auto questions = nlohmann::json::parse(in);
    std::vector<Query> queries;
    for (const auto& q : questions) {
        queries.push_back({q.at("image").get<int64_t>(), q.at("question").get<std::string>()});
    }
    std::vector<ImageInput> images;
    for (int i = 0; i < kNumImages; ++i) {
        images.push_back(fixture_image(i));
    }
    const SafetensorsFile expected((kFixture / "expected.safetensors").string());
    const std::vector<float> logits = expected.to_float("logits");  // [Q, A]
    const int64_t A = expected.info("logits").shape[1];
    ASSERT_EQ(A, engine.info().num_answers);
    AnswerOptions options;
    options.top_k = static_cast<int>(A);
    const std::vector<Result> results = engine.answer(images, queries, options);
    ASSERT_EQ(results.size(), queries.size());
    double worst = 0.0;
    for (std::size_t q = 0; q < results.size(); ++q) {
        SCOPED_TRACE("question " + std::to_string(q) + ": " + queries[q].question);
        const Result& r = results[q];
        ASSERT_TRUE(r.ok) << r.error;
        ASSERT_EQ(r.answers.size(), static_cast<std::size_t>(A));
        const float* row = &logits[q * static_cast<std::size_t>(A)];
        float max_abs = 0.0f;
        for (int64_t a = 0; a < A; ++a) {
            max_abs = std::max(max_abs, std::fabs(row[a]));
        }
        const auto best = std::max_element(row, row + A) - row;
        EXPECT_EQ(r.answers[0].id, best) << "argmax differs";
        for (const Answer& answer : r.answers) {
            // The engine reports sigmoid(logit); invert it (the fixture's logits are small, so this is exact
            // to well under the tolerance) and compare relative to the row's largest logit.
            const double s = answer.score;
            ASSERT_GT(s, 0.0);
            ASSERT_LT(s, 1.0);
            const double got = std::log(s / (1.0 - s));
            const double want = row[answer.id];
            worst = std::max(worst, std::fabs(got - want) / max_abs);
            EXPECT_LE(std::fabs(got - want), kRelTolerance * max_abs)
                << "answer " << answer.id << ": found " << got << ", expected " << want;
        }
    }
    std::printf("max relative logit error: %.3e\n", worst);
}

}  // namespace
}  // namespace vqa

// Load, answer, destroy, twenty times over, through the C++ and the C API, with good and bad inputs: every
// cycle must give the same results, and under LeakSanitizer (scripts/sanitize.sh) or valgrind no cycle may leave
// an allocation, a mapping or a thread behind.
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine_test_util.h"
#include "vqa/engine.h"
#include "vqa/vqa.h"

namespace vqa {
namespace {

namespace fs = std::filesystem;

constexpr int kCycles = 20;
const fs::path kModel = fs::path(VQA_SOURCE_DIR) / "tests" / "goldens" / "cnn_lstm_mcan_softmax";

// What a call's results look like, compactly: the top answer or the error code of each question.
std::vector<std::string> outcome(const std::vector<Result>& results) {
    std::vector<std::string> out;
    for (const Result& r : results) {
        out.push_back(r.ok ? r.answers.at(0).text + " " + std::to_string(r.answers.at(0).score)
                           : std::string("error ") + error_code_name(r.error_code));
    }
    return out;
}

TEST(LifecycleTest, LoadAnswerDestroyGivesTheSameResultsEveryCycle) {
    const std::vector<std::string> questions = {"What color is the shape?", "Is there a RED circle?", "",
                                                "not \xff utf-8", std::string(1000, 'a') + " b c d e f g h i j k"};
    std::vector<std::string> first;
    for (int cycle = 0; cycle < kCycles; ++cycle) {
        EngineOptions options;
        options.device = Device::kCpu;
        options.max_batch = 2;  // several forward passes per call
        const Engine engine = Engine::load(kModel.string(), options);
        AnswerOptions answer_options;
        answer_options.top_k = 3;
        answer_options.return_attention = true;
        const std::vector<Result> results =
            engine.answer(ImageInput::file((kModel / "image0.png").string()), questions, answer_options);
        ASSERT_EQ(results.size(), questions.size());
        EXPECT_TRUE(results[0].ok) << results[0].error;
        EXPECT_FALSE(results[2].ok);
        EXPECT_FALSE(results[3].ok);
        const std::vector<std::string> got = outcome(results);
        if (cycle == 0) {
            first = got;
        } else {
            ASSERT_EQ(got, first) << "cycle " << cycle;
        }
    }
}

TEST(LifecycleTest, FailedLoadsAndBadImagesLeaveNothingBehind) {
    test::TempDir dir;
    for (const char* name : {"config.json", "vocab.json", "answers.json"}) {
        test::write_file(dir.file(name), test::read_file((kModel / name).string()));
    }
    const std::string weights = test::read_file((kModel / "model.safetensors").string());
    test::write_file(dir.file("model.safetensors"), weights.substr(0, weights.size() / 2));  // truncated

    EngineOptions options;
    options.device = Device::kCpu;
    const Engine engine = Engine::load(kModel.string(), options);
    const std::vector<uint8_t> png = [] {
        const std::string bytes = test::read_file((kModel / "image0.png").string());
        return std::vector<uint8_t>(bytes.begin(), bytes.end() - 100);  // truncated
    }();
    for (int cycle = 0; cycle < kCycles; ++cycle) {
        EXPECT_THROW(Engine::load(dir.file("missing"), options), Error);
        EXPECT_VQA_ERROR(Engine::load(dir.path(), options), kModelFormat, "model.safetensors");
        const std::vector<Result> results =
            engine.answer({ImageInput::encoded(png, "truncated.png"), ImageInput::file(dir.file("none.png"))},
                          {{0, "what color is the shape?"}, {1, "what shape is it?"}});
        ASSERT_EQ(results.size(), 2u);
        EXPECT_EQ(results[0].error_code, ErrorCode::kImageDecode) << results[0].error;
        EXPECT_EQ(results[1].error_code, ErrorCode::kIo) << results[1].error;
    }
}

TEST(LifecycleTest, CApiLoadAnswerFree) {
    const std::string image = (kModel / "image0.png").string();
    std::string first;
    for (int cycle = 0; cycle < kCycles; ++cycle) {
        vqa_options options;
        vqa_options_init(&options);
        options.device = VQA_DEVICE_CPU;
        vqa_engine* engine = nullptr;
        ASSERT_EQ(vqa_engine_load(kModel.c_str(), &options, &engine), VQA_OK) << vqa_last_error();
        vqa_result* result = nullptr;
        ASSERT_EQ(vqa_answer_file(engine, image.c_str(), "what color is the shape?", 2, &result), VQA_OK)
            << vqa_last_error();
        ASSERT_EQ(vqa_result_count(result), 2);
        const std::string answer = vqa_result_answer(result, 0);
        if (cycle == 0) {
            first = answer;
        } else {
            EXPECT_EQ(answer, first) << "cycle " << cycle;
        }
        vqa_result_free(result);
        result = nullptr;
        EXPECT_EQ(vqa_answer_file(engine, image.c_str(), "?!", 1, &result), VQA_ERROR_INVALID_ARGUMENT);
        EXPECT_EQ(result, nullptr);
        vqa_engine_free(engine);
    }
}

}  // namespace
}  // namespace vqa

// The public API (vqa/engine.h, vqa/vqa.h) end to end on the golden fixtures: answers equal PyTorch's, one bad
// image or question fails alone, concurrent calls give the serial answers, and the C API reports errors as
// statuses.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "engine/safetensors.h"
#include "vqa/engine.h"
#include "vqa/vqa.h"

namespace vqa {
namespace {

namespace fs = std::filesystem;

const fs::path kGoldens = fs::path(VQA_SOURCE_DIR) / "tests" / "goldens";

std::vector<std::string> golden_questions(const fs::path& dir) {
    std::ifstream in(dir / "questions.json");
    return nlohmann::json::parse(in).get<std::vector<std::string>>();
}

std::vector<uint8_t> read_bytes(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Reference scores of question q: softmax or sigmoid of the golden logits, as the engine reports them.
std::vector<float> reference_scores(const fs::path& dir, int64_t q, bool softmax) {
    SafetensorsFile acts((dir / "activations.safetensors").string());
    const std::vector<float> logits = acts.to_float("logits");
    const int64_t A = acts.info("logits").shape[1];
    std::vector<float> row(logits.begin() + q * A, logits.begin() + (q + 1) * A);
    if (softmax) {
        const float max = *std::max_element(row.begin(), row.end());
        double sum = 0.0;
        for (float& v : row) {
            v = std::exp(v - max);
            sum += v;
        }
        for (float& v : row) {
            v = static_cast<float>(v / sum);
        }
    } else {
        for (float& v : row) {
            v = 1.0f / (1.0f + std::exp(-v));
        }
    }
    return row;
}

// Every answer's score, by answer id, must equal the reference: fp32 on both sides, summation order differs.
void expect_scores(const Result& r, const std::vector<float>& want) {
    ASSERT_TRUE(r.ok) << r.error;
    ASSERT_EQ(r.answers.size(), want.size());
    for (std::size_t i = 0; i < r.answers.size(); ++i) {
        const float expected = want[static_cast<std::size_t>(r.answers[i].id)];
        ASSERT_FALSE(std::isnan(r.answers[i].score));
        EXPECT_NEAR(r.answers[i].score, expected, 1e-6 + 1e-4 * std::fabs(expected)) << "answer " << r.answers[i].id;
        if (i > 0) {
            EXPECT_GE(r.answers[i - 1].score, r.answers[i].score);  // best first
        }
    }
}

struct GridCase {
    const char* variant;
    bool softmax;
};

class GridGoldenTest : public ::testing::TestWithParam<GridCase> {};

// Questions 0 and 1 of every grid golden are about image0.png: decoding, preprocessing, tokenizing and the
// model, all through the public API, against PyTorch.
TEST_P(GridGoldenTest, AnswersMatchReference) {
    const fs::path dir = kGoldens / GetParam().variant;
    ASSERT_TRUE(fs::is_directory(dir)) << dir;
    const Engine engine = Engine::load(dir.string(), EngineOptions{Device::kCpu});
    const std::vector<std::string> questions = golden_questions(dir);
    AnswerOptions options;
    options.top_k = static_cast<int>(engine.info().num_answers);
    const auto results = engine.answer(ImageInput::file((dir / "image0.png").string()),
                                       {questions[0], questions[1]}, options);
    ASSERT_EQ(results.size(), 2u);
    for (int q = 0; q < 2; ++q) {
        SCOPED_TRACE("question " + std::to_string(q));
        expect_scores(results[q], reference_scores(dir, q, GetParam().softmax));
    }
    // The same image as encoded bytes, in the same batch, gives bit-identical answers.
    const auto encoded = engine.answer(ImageInput::encoded(read_bytes(dir / "image0.png")),
                                       {questions[0], questions[1]}, options);
    ASSERT_TRUE(encoded[0].ok);
    EXPECT_EQ(encoded[0].answers[0].score, results[0].answers[0].score);
}

INSTANTIATE_TEST_SUITE_P(Api,
                         GridGoldenTest,
                         ::testing::Values(GridCase{"cnn_lstm_mcan_softmax", true},
                                           GridCase{"cnn_transformer_simple_sigmoid", false},
                                           GridCase{"resnet18_lstm_mcan", true},
                                           GridCase{"resnet50_transformer_simple", true}),
                         [](const auto& info) { return std::string(info.param.variant); });

// Region features from the golden inputs (already padded; boxes given as fractions of a 1x1 image).
std::vector<ImageInput> golden_regions(const fs::path& dir, bool boxes) {
    SafetensorsFile inputs((dir / "inputs.safetensors").string());
    const std::vector<float> regions = inputs.to_float("regions");
    const auto& shape = inputs.info("regions").shape;  // [Bi, N, F]
    std::vector<float> boxes5;
    if (boxes) {
        boxes5 = inputs.to_float("boxes5");
    }
    std::vector<ImageInput> images;
    for (int64_t i = 0; i < shape[0]; ++i) {
        RegionFeatures rf;
        rf.num_regions = shape[1];
        rf.feature_dim = shape[2];
        rf.features.assign(regions.begin() + i * shape[1] * shape[2], regions.begin() + (i + 1) * shape[1] * shape[2]);
        if (boxes) {
            for (int64_t r = 0; r < shape[1]; ++r) {
                const float* b = &boxes5[static_cast<std::size_t>((i * shape[1] + r) * 5)];
                rf.boxes.insert(rf.boxes.end(), b, b + 4);
            }
            rf.image_width = 1.0f;
            rf.image_height = 1.0f;
        }
        images.push_back(ImageInput::regions(std::move(rf), "regions" + std::to_string(i)));
    }
    return images;
}

std::vector<Query> golden_queries(const fs::path& dir) {
    SafetensorsFile inputs((dir / "inputs.safetensors").string());
    const std::vector<int64_t> image_index = inputs.as<int64_t>("image_index");
    const std::vector<std::string> questions = golden_questions(dir);
    std::vector<Query> queries;
    for (std::size_t q = 0; q < questions.size(); ++q) {
        queries.push_back({image_index[q], questions[q]});
    }
    return queries;
}

TEST(ApiTest, RegionFeaturesMatchReference) {
    const fs::path dir = kGoldens / "regions_box_lstm_mcan_openvqa";
    const Engine engine = Engine::load(dir.string(), EngineOptions{Device::kCpu});
    AnswerOptions options;
    options.top_k = static_cast<int>(engine.info().num_answers);
    const auto queries = golden_queries(dir);
    const auto results = engine.answer(golden_regions(dir, true), queries, options);
    ASSERT_EQ(results.size(), queries.size());
    for (std::size_t q = 0; q < queries.size(); ++q) {
        SCOPED_TRACE("question " + std::to_string(q));
        expect_scores(results[q], reference_scores(dir, static_cast<int64_t>(q), false));
    }
}

TEST(ApiTest, GeneratedAnswersMatchReference) {
    const fs::path dir = kGoldens / "regions_lstm_simple_generate_gru";
    const Engine engine = Engine::load(dir.string(), EngineOptions{Device::kCpu});
    SafetensorsFile acts((dir / "activations.safetensors").string());
    const std::vector<int64_t> generated = acts.as<int64_t>("generated");
    const std::vector<float> scores = acts.to_float("scores");
    const int64_t T = acts.info("generated").shape[1];
    std::ifstream config_in(dir / "config.json");
    const auto config = nlohmann::json::parse(config_in);
    const int64_t bos = config["head"]["bos_id"];
    const int64_t eos = config["head"]["eos_id"];
    const auto results = engine.answer(golden_regions(dir, false), golden_queries(dir));
    for (std::size_t q = 0; q < results.size(); ++q) {
        std::string want;
        for (int64_t t = 0; t < T; ++t) {
            const int64_t token = generated[q * T + t];
            if (token < 0 || token == eos) {
                break;
            }
            if (token != bos) {
                want += (want.empty() ? "" : " ") + engine.answers()[static_cast<std::size_t>(token)];
            }
        }
        ASSERT_TRUE(results[q].ok) << results[q].error;
        EXPECT_EQ(results[q].answers[0].text, want) << "question " << q;
        EXPECT_NEAR(results[q].answers[0].score, scores[q], 1e-6 + 1e-4 * scores[q]);
    }
}

const fs::path kCnnDir = kGoldens / "cnn_lstm_mcan_softmax";

TEST(ApiTest, BadImageOrQuestionFailsAlone) {
    const Engine engine = Engine::load(kCnnDir.string(), EngineOptions{Device::kCpu});
    const std::vector<ImageInput> images = {
        ImageInput::file((kCnnDir / "image0.png").string()),
        ImageInput::file((kCnnDir / "no-such-image.png").string()),
        ImageInput::encoded({0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0}, "truncated.png"),
        ImageInput::pixels(2, 2, {1, 2, 3}, "short-pixels"),
    };
    const auto results = engine.answer(images,
                                       {{0, "what color is the shape?"},
                                        {1, "what color is the shape?"},
                                        {2, "what color is the shape?"},
                                        {3, "what color is the shape?"},
                                        {0, "   ?!  "},
                                        {0, std::string("bad \xff utf-8")},
                                        {0, "is there a triangle?"}});
    ASSERT_EQ(results.size(), 7u);
    EXPECT_TRUE(results[0].ok);
    EXPECT_TRUE(results[6].ok);
    EXPECT_EQ(results[1].error_code, ErrorCode::kIo);
    EXPECT_NE(results[1].error.find("no-such-image.png"), std::string::npos) << results[1].error;
    EXPECT_EQ(results[2].error_code, ErrorCode::kImageDecode);
    EXPECT_NE(results[2].error.find("truncated.png"), std::string::npos) << results[2].error;
    EXPECT_EQ(results[3].error_code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(results[4].error_code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(results[5].error_code, ErrorCode::kInvalidArgument);
    EXPECT_NE(results[5].error.find("UTF-8"), std::string::npos) << results[5].error;
    for (int i : {1, 2, 3, 4, 5}) {
        EXPECT_FALSE(results[i].ok) << i;
        EXPECT_TRUE(results[i].answers.empty()) << i;
    }
    // The engine is still usable, and a bad query index is a contract error of the whole call.
    EXPECT_TRUE(engine.answer(images[0], {"is there a circle?"})[0].ok);
    try {
        engine.answer(images, {{7, "what?"}});
        FAIL() << "expected vqa::Error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    }
}

TEST(ApiTest, LongQuestionIsTruncatedWithWarning) {
    const Engine engine = Engine::load(kCnnDir.string(), EngineOptions{Device::kCpu});
    std::string question;
    for (int i = 0; i < 40; ++i) {
        question += "shape ";
    }
    const auto r = engine.answer(ImageInput::file((kCnnDir / "image0.png").string()), {question});
    ASSERT_TRUE(r[0].ok) << r[0].error;
    ASSERT_EQ(r[0].warnings.size(), 1u);
    EXPECT_NE(r[0].warnings[0].find("40 tokens"), std::string::npos) << r[0].warnings[0];
}

TEST(ApiTest, LoadErrorsNameTheFile) {
    const fs::path tmp = fs::temp_directory_path() / "vqa_api_test_model";
    fs::remove_all(tmp);
    fs::copy(kCnnDir, tmp);
    const auto size = fs::file_size(tmp / "model.safetensors");
    fs::resize_file(tmp / "model.safetensors", size / 2);
    try {
        Engine::load(tmp.string());
        FAIL() << "expected vqa::Error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kModelFormat);
        EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
    }
    fs::remove_all(tmp);
    try {
        Engine::load(tmp.string());
        FAIL() << "expected vqa::Error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kIo) << e.what();
    }
}

TEST(ApiTest, ConcurrentCallsGiveSerialAnswers) {
    const Engine engine = Engine::load(kCnnDir.string(), EngineOptions{Device::kCpu});
    const std::vector<std::string> questions = golden_questions(kCnnDir);
    const ImageInput image = ImageInput::file((kCnnDir / "image0.png").string());
    AnswerOptions options;
    options.top_k = 3;
    const auto serial = engine.answer(image, questions, options);
    constexpr int kThreads = 8;
    std::vector<std::vector<Result>> got(kThreads * 4);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 4; ++i) {
                got[t * 4 + i] = engine.answer(image, questions, options);
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    for (const auto& results : got) {
        ASSERT_EQ(results.size(), serial.size());
        for (std::size_t q = 0; q < serial.size(); ++q) {
            ASSERT_EQ(results[q].answers.size(), serial[q].answers.size());
            for (std::size_t k = 0; k < serial[q].answers.size(); ++k) {
                EXPECT_EQ(results[q].answers[k].id, serial[q].answers[k].id);
                EXPECT_EQ(results[q].answers[k].score, serial[q].answers[k].score);
            }
        }
    }
}

TEST(CApiTest, AnswersAndReportsErrors) {
    vqa_engine* engine = nullptr;
    ASSERT_EQ(vqa_engine_load((kCnnDir / "nowhere").c_str(), nullptr, &engine), VQA_ERROR_IO);
    EXPECT_EQ(engine, nullptr);
    EXPECT_NE(std::string(vqa_last_error()).find("nowhere"), std::string::npos) << vqa_last_error();
    EXPECT_EQ(vqa_engine_load(nullptr, nullptr, &engine), VQA_ERROR_INVALID_ARGUMENT);

    vqa_options options;
    vqa_options_init(&options);
    options.device = VQA_DEVICE_CPU;
    ASSERT_EQ(vqa_engine_load(kCnnDir.c_str(), &options, &engine), VQA_OK) << vqa_last_error();
    const std::string image = (kCnnDir / "image0.png").string();
    vqa_result* result = nullptr;
    ASSERT_EQ(vqa_answer_file(engine, image.c_str(), "what color is the shape?", 3, &result), VQA_OK);
    ASSERT_EQ(vqa_result_count(result), 3);
    EXPECT_NE(vqa_result_answer(result, 0), nullptr);
    EXPECT_GE(vqa_result_score(result, 0), vqa_result_score(result, 1));
    EXPECT_EQ(vqa_result_answer(result, 3), nullptr);
    vqa_result_free(result);

    EXPECT_EQ(vqa_answer_file(engine, "missing.png", "what?", 1, &result), VQA_ERROR_IO);
    EXPECT_EQ(result, nullptr);
    EXPECT_NE(std::string(vqa_last_error()).find("missing.png"), std::string::npos);
    EXPECT_EQ(vqa_answer_file(engine, image.c_str(), "", 1, &result), VQA_ERROR_INVALID_ARGUMENT);
    const uint8_t pixels[12] = {255, 0, 0, 255, 0, 0, 0, 0, 255, 0, 0, 255};
    EXPECT_EQ(vqa_answer_pixels(engine, pixels, 2, 2, "what color is the shape?", 1, &result), VQA_OK);
    vqa_result_free(result);
    EXPECT_EQ(vqa_answer_encoded(engine, pixels, sizeof pixels, "what?", 1, &result), VQA_ERROR_IMAGE_DECODE);
    EXPECT_EQ(vqa_engine_num_answers(engine), 7);
    vqa_engine_free(engine);
}

}  // namespace
}  // namespace vqa

// The CPU model against the PyTorch reference: every golden variant (tests/goldens, tools/make_goldens.py) is run
// on its stored inputs, and every activation the model reports is compared with the one PyTorch stored. Also:
// questions sharing an image give what each gives alone, and concurrent forward passes agree.
#include "engine/cpu_model.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "engine/model_dir.h"
#include "engine/safetensors.h"
#include "tests/engine/engine_test_util.h"
#include "tests/kernels/test_util.h"

namespace vqa {
namespace {

namespace fs = std::filesystem;

const fs::path kGoldens = fs::path(VQA_SOURCE_DIR) / "tests" / "goldens";

// Every variant tools/make_goldens.py writes; a missing directory fails its tests.
const char* const kVariants[] = {
    "cnn_lstm_mcan_generate_lstm",      "cnn_lstm_mcan_softmax",
    "cnn_transformer_simple_sigmoid",   "regions_box_lstm_mcan_openvqa",
    "regions_lstm_simple_generate_gru", "resnet18_lstm_mcan",
    "resnet50_transformer_simple",
};

// fp32 on both sides, but a different summation order (OpenBLAS vs MKL-DNN/ATen GEMMs and convolutions, BatchNorm
// folded into the convolution, LayerNorm statistics in double, 1/sqrt(Dh) as a GEMM alpha instead of a division):
// the errors are rounding only, a few ulps amplified through ~10 layers.
constexpr test::Tolerance kGoldenTolerance{1e-8, 1e-5, 1e-4};

// The same model on the same values; only the batch around a question differs, so OpenBLAS may pick other GEMM
// kernels and blockings (a few ulps, observed up to ~1e-6 relative on the logits), nothing else changes.
constexpr test::Tolerance kBatchTolerance{1e-10, 1e-6, 1e-5};

int64_t numel(const std::vector<int64_t>& shape) {
    return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

// A golden variant: the model, its inputs and the reference activations.
struct Golden {
    fs::path dir;
    ModelDir model;
    SafetensorsFile inputs;
    SafetensorsFile activations;
    std::vector<int64_t> ids;
    std::vector<int64_t> lengths;
    std::vector<int64_t> image_index;
    std::vector<float> pixels;
    std::vector<float> regions;
    std::vector<float> boxes5;
    int64_t image_count = 0;

    explicit Golden(const fs::path& path)
        : dir(path),
          model(load_model_dir(path.string())),
          inputs((path / "inputs.safetensors").string()),
          activations((path / "activations.safetensors").string()) {
        ids = inputs.as<int64_t>("ids");
        lengths = inputs.as<int64_t>("lengths");
        image_index = inputs.as<int64_t>("image_index");
        const char* image_tensor = inputs.contains("images") ? "images" : "regions";
        image_count = inputs.info(image_tensor).shape.at(0);
        if (inputs.contains("images")) {
            pixels = inputs.to_float("images");
        } else {
            regions = inputs.to_float("regions");
        }
        if (inputs.contains("boxes5")) {
            boxes5 = inputs.to_float("boxes5");
        }
    }

    int64_t questions() const { return static_cast<int64_t>(lengths.size()); }
    int64_t max_length() const { return static_cast<int64_t>(ids.size()) / questions(); }

    ImageBatch image_batch() const {
        ImageBatch batch;
        batch.count = image_count;
        batch.pixels = pixels.empty() ? nullptr : pixels.data();
        batch.regions = regions.empty() ? nullptr : regions.data();
        batch.boxes5 = boxes5.empty() ? nullptr : boxes5.data();
        return batch;
    }
    // Only image `image`, as a batch of one.
    ImageBatch single_image(int64_t image) const {
        ImageBatch batch = image_batch();
        const auto rows = [&](const std::vector<float>& v, const float* p) {
            return p == nullptr ? nullptr : p + image * (static_cast<int64_t>(v.size()) / image_count);
        };
        batch.count = 1;
        batch.pixels = rows(pixels, batch.pixels);
        batch.regions = rows(regions, batch.regions);
        batch.boxes5 = rows(boxes5, batch.boxes5);
        return batch;
    }
    TextBatch text_batch() const { return {questions(), ids.data(), lengths.data(), image_index.data()}; }
};

struct Captured {
    std::vector<int64_t> shape;
    std::vector<float> values;
};

std::map<std::string, Captured> run_with_sink(const CpuModel& model,
                                              const ImageBatch& images,
                                              const TextBatch& text,
                                              ModelOutput& out) {
    std::map<std::string, Captured> captured;
    const ActivationSink sink = [&](const std::string& name, const std::vector<int64_t>& shape, const float* data) {
        EXPECT_EQ(captured.count(name), 0u) << name << " emitted twice";
        captured[name] = {shape, std::vector<float>(data, data + numel(shape))};
    };
    out = model.forward(images, text, &sink);
    return captured;
}

// The golden generated tokens [B, T] (I64, -1 after eos) as one list per question.
std::vector<std::vector<int32_t>> golden_tokens(const SafetensorsFile& activations) {
    const std::vector<int64_t> shape = activations.info("generated").shape;
    const std::vector<int64_t> flat = activations.as<int64_t>("generated");
    std::vector<std::vector<int32_t>> tokens(static_cast<std::size_t>(shape.at(0)));
    for (int64_t b = 0; b < shape[0]; ++b) {
        for (int64_t t = 0; t < shape[1] && flat[static_cast<std::size_t>(b * shape[1] + t)] >= 0; ++t) {
            tokens[static_cast<std::size_t>(b)].push_back(
                static_cast<int32_t>(flat[static_cast<std::size_t>(b * shape[1] + t)]));
        }
    }
    return tokens;
}

class CpuModelTest : public ::testing::TestWithParam<const char*> {
protected:
    fs::path dir() const { return kGoldens / GetParam(); }

    void SetUp() override {
        ASSERT_TRUE(fs::is_directory(dir()))
            << "missing golden directory " << dir() << " (tools/make_goldens.py --out tests/goldens writes it)";
    }
};

TEST_P(CpuModelTest, MatchesReferenceActivations) {
    const Golden golden(dir());
    const CpuModel model(golden.model, 0);
    ModelOutput out;
    const std::map<std::string, Captured> captured =
        run_with_sink(model, golden.image_batch(), golden.text_batch(), out);

    // Every fp32 tensor of the reference must have been reported, with its shape and values.
    const bool classifier = golden.model.config.head.type == HeadType::kClassifier;
    int compared = 0;
    for (const std::string& name : golden.activations.names()) {
        if (golden.activations.info(name).dtype != DType::kF32) {
            continue;  // `generated` (I64): compared exactly below
        }
        SCOPED_TRACE(name);
        const auto it = captured.find(name);
        if (it == captured.end()) {
            ADD_FAILURE() << "the model did not report " << name;
            continue;
        }
        const std::vector<int64_t>& shape = golden.activations.info(name).shape;
        ASSERT_EQ(it->second.shape, shape) << name;
        const std::vector<float> expected = golden.activations.to_float(name);
        EXPECT_TRUE(test::all_close(it->second.values, expected, kGoldenTolerance, shape)) << name;
        // Observed error, as a fraction of the per-element tolerance, for the log.
        double worst = 0.0;
        double squared_error = 0.0;
        double squared_reference = 0.0;
        for (std::size_t i = 0; i < expected.size(); ++i) {
            const double diff = static_cast<double>(it->second.values[i]) - expected[i];
            const double limit = kGoldenTolerance.atol + kGoldenTolerance.rtol * std::abs(expected[i]);
            worst = std::max(worst, std::abs(diff) / limit);
            squared_error += diff * diff;
            squared_reference += static_cast<double>(expected[i]) * expected[i];
        }
        std::cout << "[ error    ] " << GetParam() << " " << name << ": max |diff|/tolerance " << worst << ", nmse "
                  << (squared_reference > 0.0 ? squared_error / squared_reference : squared_error) << "\n";
        ++compared;
    }
    for (const char* required : {"image_tokens", "text_tokens", "pooled_text", "pooled_image", "fused"}) {
        EXPECT_TRUE(golden.activations.contains(required)) << required;
    }
    EXPECT_GE(compared, 10);

    if (classifier) {
        ASSERT_TRUE(captured.count("logits"));
        EXPECT_EQ(out.logits, captured.at("logits").values);
        EXPECT_TRUE(out.tokens.empty());
    } else {
        EXPECT_EQ(out.tokens, golden_tokens(golden.activations));  // greedy decoding: exactly the same ids
        EXPECT_TRUE(test::all_close(out.sequence_scores, golden.activations.to_float("scores"), kGoldenTolerance));
        EXPECT_TRUE(out.logits.empty());
    }
}

// Several questions about one image (questions 0 and 1 share image 0) give what each question gives alone, and
// each distinct image is encoded once.
TEST_P(CpuModelTest, SharedImageMatchesSingleQuestion) {
    const Golden golden(dir());
    const CpuModel model(golden.model, 0);
    ModelOutput batched;
    const auto captured = run_with_sink(model, golden.image_batch(), golden.text_batch(), batched);
    EXPECT_EQ(captured.at("image_trunk").shape.at(0), golden.image_count);
    EXPECT_LT(golden.image_count, golden.questions()) << "the golden inputs should share an image";

    const int64_t len = golden.max_length();
    for (int64_t q = 0; q < golden.questions(); ++q) {
        SCOPED_TRACE("question " + std::to_string(q));
        const int64_t zero = 0;
        const TextBatch one{1, golden.ids.data() + q * len, golden.lengths.data() + q, &zero};
        const ModelOutput alone =
            model.forward(golden.single_image(golden.image_index[static_cast<std::size_t>(q)]), one);
        if (golden.model.config.head.type == HeadType::kClassifier) {
            const auto a = static_cast<std::ptrdiff_t>(model.num_answers());
            const std::vector<float> row(batched.logits.begin() + q * a, batched.logits.begin() + (q + 1) * a);
            EXPECT_TRUE(test::all_close(alone.logits, row, kBatchTolerance));
        } else {
            ASSERT_EQ(alone.tokens.size(), 1u);
            EXPECT_EQ(alone.tokens[0], batched.tokens[static_cast<std::size_t>(q)]);
            EXPECT_TRUE(test::all_close(alone.sequence_scores, {batched.sequence_scores[static_cast<std::size_t>(q)]},
                                        kBatchTolerance));
        }
    }
}

// forward() is const and keeps its scratch per call: two threads at once get exactly the single-thread result.
TEST_P(CpuModelTest, ConcurrentForwardIsDeterministic) {
    const Golden golden(dir());
    const CpuModel model(golden.model, 0);
    const ModelOutput reference = model.forward(golden.image_batch(), golden.text_batch());
    constexpr int kThreads = 2;
    constexpr int kRepeats = 3;
    std::vector<std::vector<ModelOutput>> results(kThreads);
    std::vector<std::string> errors(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
        threads.emplace_back([&, i] {
            try {
                for (int r = 0; r < kRepeats; ++r) {
                    results[static_cast<std::size_t>(i)].push_back(
                        model.forward(golden.image_batch(), golden.text_batch()));
                }
            } catch (const std::exception& e) {
                errors[static_cast<std::size_t>(i)] = e.what();
            }
        });
    }
    for (std::thread& t : threads) {
        t.join();
    }
    for (int i = 0; i < kThreads; ++i) {
        ASSERT_EQ(errors[static_cast<std::size_t>(i)], "");
        for (const ModelOutput& out : results[static_cast<std::size_t>(i)]) {
            EXPECT_EQ(out.logits, reference.logits);
            EXPECT_EQ(out.tokens, reference.tokens);
            EXPECT_EQ(out.sequence_scores, reference.sequence_scores);
        }
    }
}

// Inputs outside the contract are refused with kInvalidArgument, naming what is wrong.
TEST_P(CpuModelTest, RejectsInvalidInputs) {
    const Golden golden(dir());
    const CpuModel model(golden.model, 1);
    const ImageBatch images = golden.image_batch();
    const auto text_with = [&](const int64_t* ids, const int64_t* lengths, const int64_t* image_index) {
        return TextBatch{golden.questions(), ids, lengths, image_index};
    };

    std::vector<int64_t> lengths = golden.lengths;
    lengths[1] = 0;
    EXPECT_VQA_ERROR(model.forward(images, text_with(golden.ids.data(), lengths.data(), golden.image_index.data())),
                     kInvalidArgument, "question 1 has length 0");
    lengths[1] = golden.max_length() + 1;
    EXPECT_VQA_ERROR(model.forward(images, text_with(golden.ids.data(), lengths.data(), golden.image_index.data())),
                     kInvalidArgument, "expected 1..");

    std::vector<int64_t> image_index = golden.image_index;
    image_index[2] = golden.image_count;
    EXPECT_VQA_ERROR(model.forward(images, text_with(golden.ids.data(), golden.lengths.data(), image_index.data())),
                     kInvalidArgument, "image_index");

    std::vector<int64_t> ids = golden.ids;
    ids[3] = golden.model.weights.info("text.embedding.weight").shape[0];
    EXPECT_VQA_ERROR(model.forward(images, text_with(ids.data(), golden.lengths.data(), golden.image_index.data())),
                     kInvalidArgument, "outside the table");

    ImageBatch missing = images;
    if (images.pixels != nullptr) {
        missing.pixels = nullptr;
        EXPECT_VQA_ERROR(model.forward(missing, golden.text_batch()), kInvalidArgument, "ImageBatch::pixels");
    } else {
        missing.regions = nullptr;
        EXPECT_VQA_ERROR(model.forward(missing, golden.text_batch()), kInvalidArgument, "ImageBatch::regions");
    }
    if (images.boxes5 != nullptr) {
        ImageBatch no_boxes = images;
        no_boxes.boxes5 = nullptr;
        EXPECT_VQA_ERROR(model.forward(no_boxes, golden.text_batch()), kInvalidArgument, "ImageBatch::boxes5");
    }

    const ModelOutput empty = model.forward(images, {0, nullptr, nullptr, nullptr});
    EXPECT_TRUE(empty.logits.empty() && empty.tokens.empty() && empty.sequence_scores.empty());
    EXPECT_VQA_ERROR(CpuModel(golden.model, -1), kInvalidArgument, "threads");
}

// Test names start with cpu_model/ (ctest -R cpu_model): cpu_model/CpuModelTest.<test>/<variant>.
INSTANTIATE_TEST_SUITE_P(cpu_model,
                         CpuModelTest,
                         ::testing::ValuesIn(kVariants),
                         [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

}  // namespace
}  // namespace vqa

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
#include "tests/engine/golden_util.h"
#include "tests/kernels/test_util.h"

namespace vqa {
namespace {

namespace fs = std::filesystem;
using test::Captured;
using test::Golden;
using test::golden_tokens;
using test::kGoldens;
using test::kVariants;
using test::run_with_sink;

// fp32 on both sides, but a different summation order (OpenBLAS vs MKL-DNN/ATen GEMMs and convolutions, BatchNorm
// folded into the convolution, LayerNorm statistics in double, 1/sqrt(Dh) as a GEMM alpha instead of a division):
// the errors are rounding only, a few ulps amplified through ~10 layers.
constexpr test::Tolerance kGoldenTolerance{1e-8, 1e-5, 1e-4};

// The same model on the same values; only the batch around a question differs, so OpenBLAS may pick other GEMM
// kernels and blockings (a few ulps, observed up to ~1e-6 relative on the logits), nothing else changes.
constexpr test::Tolerance kBatchTolerance{1e-10, 1e-6, 1e-5};

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

// Padding removal (engine/packing.h) gives the padded path's outputs: the packed model (the default, used for every
// pass without a sink) against the padded one on the golden inputs, and on inputs made to stress the packing:
// questions of every length, and for region models an image with no valid region (the fully masked rule) and
// zero rows in the middle of an image's regions. The PyTorch logits are the reference for both.
TEST_P(CpuModelTest, PackedMatchesPadded) {
    Golden golden(dir());
    const CpuModel packed(golden.model, 0, /*pack_sequences=*/true);
    const CpuModel padded(golden.model, 0, /*pack_sequences=*/false);
    const bool classifier = golden.model.config.head.type == HeadType::kClassifier;
    const int64_t len = golden.max_length();
    const auto expect_same = [&](const ImageBatch& images, const TextBatch& text) {
        const ModelOutput a = packed.forward(images, text, nullptr, /*pool_weights=*/true);
        const ModelOutput b = padded.forward(images, text, nullptr, /*pool_weights=*/true);
        // The attention maps come back in the padded layout either way (0 where a position was dropped).
        const int64_t glimpses = golden.model.config.pool.glimpses;
        EXPECT_EQ(a.pool_text.size(), static_cast<std::size_t>(text.count * len * glimpses));
        EXPECT_EQ(a.pool_image.size(), static_cast<std::size_t>(text.count * packed.image_tokens() * glimpses));
        EXPECT_TRUE(test::all_close(a.pool_text, b.pool_text, kBatchTolerance));
        EXPECT_TRUE(test::all_close(a.pool_image, b.pool_image, kBatchTolerance));
        // Fewer rows per GEMM and per attention: OpenBLAS may block the sums differently (a few ulps). NaN fails.
        EXPECT_TRUE(test::all_close(a.logits, b.logits, kBatchTolerance));
        EXPECT_EQ(a.tokens, b.tokens);
        EXPECT_TRUE(test::all_close(a.sequence_scores, b.sequence_scores, kBatchTolerance));
    };
    {
        SCOPED_TRACE("golden inputs");
        expect_same(golden.image_batch(), golden.text_batch());
        // The padded maps are the tensors the sink reports.
        ModelOutput reported;
        const auto captured = run_with_sink(padded, golden.image_batch(), golden.text_batch(), reported);
        const ModelOutput maps = padded.forward(golden.image_batch(), golden.text_batch(), nullptr, true);
        EXPECT_EQ(maps.pool_text, captured.at("pool.text.weights").values);
        EXPECT_EQ(maps.pool_image, captured.at("pool.image.weights").values);
        EXPECT_TRUE(reported.pool_text.empty()) << "maps only when asked for";
        const ModelOutput out = packed.forward(golden.image_batch(), golden.text_batch());
        if (classifier) {
            EXPECT_TRUE(test::all_close(out.logits, golden.activations.to_float("logits"), kGoldenTolerance));
        } else {
            EXPECT_EQ(out.tokens, golden_tokens(golden.activations));
        }
    }
    // Every length from 1 to L over the questions, in turn.
    for (int64_t q = 0; q < golden.questions(); ++q) {
        golden.lengths[static_cast<std::size_t>(q)] = 1 + (q * 5 + 3) % len;
    }
    {
        SCOPED_TRACE("lengths 1..L");
        expect_same(golden.image_batch(), golden.text_batch());
    }
    if (!golden.regions.empty()) {
        const int64_t per_image = static_cast<int64_t>(golden.regions.size()) / golden.image_count;
        const int64_t features = golden.model.config.image.regions.feature_dim;
        const int64_t regions = per_image / features;
        // Image 0: no valid region at all; image 1 (if any): every other region zeroed, the first kept.
        std::fill_n(golden.regions.begin(), per_image, 0.0f);
        if (golden.image_count > 1) {
            for (int64_t r = 1; r < regions; r += 2) {
                std::fill_n(golden.regions.begin() + per_image + r * features, features, 0.0f);
            }
        }
        SCOPED_TRACE("an image without regions, and zero rows among the regions");
        expect_same(golden.image_batch(), golden.text_batch());
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

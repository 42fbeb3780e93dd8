// The CUDA model against the PyTorch goldens and against the CPU model, on every golden variant and in every
// precision: fp32 reports every activation the reference stored, within the CPU model's tolerance; fp16 and bf16
// logits stay within about 1e-2 of fp32. Also: the arena is sized at load (no growth while answering), shared
// images, concurrent calls and invalid inputs. Label gpu: skipped without a device.
#include <cmath>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "engine/cpu_model.h"
#include "engine/cuda_model.h"
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

// fp32 on both sides, in other summation orders (cuBLASLt and cuDNN kernels, an online softmax over key tiles,
// float LayerNorm statistics): the CPU model's golden tolerance, which already covers OpenBLAS against ATen.
constexpr test::Tolerance kFp32Tolerance{1e-8, 1e-5, 1e-4};
// fp16/bf16 weights and activations with fp32 accumulation, softmax statistics and LayerNorm, through about ten
// layers: about 1e-2 relative on the logits (DESIGN.md §5); bf16 keeps 8 bits of mantissa to fp16's 11, hence
// its wider bound.
constexpr test::Tolerance kFp16Tolerance{1e-4, 2e-2, 2e-2};
constexpr test::Tolerance kBf16Tolerance{1e-3, 5e-2, 5e-2};

const char* precision_name(Precision p) {
    switch (p) {
        case Precision::kFp16:
            return "fp16";
        case Precision::kBf16:
            return "bf16";
        case Precision::kFp32:
            break;
    }
    return "fp32";
}

CudaModel make_model(const Golden& golden, Precision precision = Precision::kFp32, int64_t max_batch = 8) {
    CudaModelOptions options;
    options.precision = precision;
    options.max_batch = max_batch;
    return CudaModel(golden.model, options);
}

class CudaModelTest : public ::testing::TestWithParam<const char*> {
protected:
    fs::path dir() const { return kGoldens / GetParam(); }
    void SetUp() override {
        VQA_SKIP_WITHOUT_CUDA_DEVICE();
        ASSERT_TRUE(fs::is_directory(dir())) << "missing golden directory " << dir();
    }
};

TEST_P(CudaModelTest, Fp32MatchesReferenceActivations) {
    const Golden golden(dir());
    const CudaModel model = make_model(golden);
    ModelOutput out;
    const std::map<std::string, Captured> captured =
        run_with_sink(model, golden.image_batch(), golden.text_batch(), out);
    int compared = 0;
    for (const std::string& name : golden.activations.names()) {
        if (golden.activations.info(name).dtype != DType::kF32) {
            continue;
        }
        SCOPED_TRACE(name);
        const auto it = captured.find(name);
        if (it == captured.end()) {
            ADD_FAILURE() << "the CUDA model did not report " << name;
            continue;
        }
        const std::vector<int64_t>& shape = golden.activations.info(name).shape;
        ASSERT_EQ(it->second.shape, shape);
        EXPECT_TRUE(test::all_close(it->second.values, golden.activations.to_float(name), kFp32Tolerance, shape));
        ++compared;
    }
    EXPECT_GE(compared, 10);
    if (golden.model.config.head.type == HeadType::kClassifier) {
        ASSERT_TRUE(captured.count("logits"));
        EXPECT_EQ(out.logits, captured.at("logits").values);
    } else {
        EXPECT_EQ(out.tokens, golden_tokens(golden.activations));
        EXPECT_TRUE(test::all_close(out.sequence_scores, golden.activations.to_float("scores"), kFp32Tolerance));
    }
}

// Without a sink (the path answer() takes) the same logits as the CPU backend, and the arena sized at load is
// enough: answering never grows it.
TEST_P(CudaModelTest, MatchesCpuModelWithoutGrowingTheArena) {
    const Golden golden(dir());
    const CudaModel model = make_model(golden);
    const std::size_t workspace = model.workspace_bytes();
    EXPECT_GT(workspace, 0u);
    const ModelOutput gpu = model.forward(golden.image_batch(), golden.text_batch());
    const ModelOutput cpu = CpuModel(golden.model, 0).forward(golden.image_batch(), golden.text_batch());
    EXPECT_TRUE(test::all_close(gpu.logits, cpu.logits, kFp32Tolerance));
    EXPECT_EQ(gpu.tokens, cpu.tokens);
    EXPECT_TRUE(test::all_close(gpu.sequence_scores, cpu.sequence_scores, kFp32Tolerance));
    EXPECT_EQ(model.workspace_bytes(), workspace);
    std::cout << "[ memory   ] " << GetParam() << ": weights " << model.weight_bytes() << " B, workspace " << workspace
              << " B for max_batch " << model.max_batch() << "\n";
}

TEST_P(CudaModelTest, ReducedPrecisionStaysCloseToFp32) {
    const Golden golden(dir());
    const ModelOutput reference = make_model(golden).forward(golden.image_batch(), golden.text_batch());
    for (const Precision precision : {Precision::kFp16, Precision::kBf16}) {
        SCOPED_TRACE(precision_name(precision));
        const ModelOutput out = make_model(golden, precision).forward(golden.image_batch(), golden.text_batch());
        if (golden.model.config.head.type == HeadType::kClassifier) {
            EXPECT_TRUE(test::all_close(out.logits, reference.logits,
                                        precision == Precision::kFp16 ? kFp16Tolerance : kBf16Tolerance));
        } else {
            ASSERT_EQ(out.tokens.size(), reference.tokens.size());
            for (const auto& tokens : out.tokens) {
                EXPECT_FALSE(tokens.empty());
            }
            for (const float score : out.sequence_scores) {
                EXPECT_TRUE(std::isfinite(score) && score >= 0.0f && score <= 1.0f) << score;
            }
        }
    }
}

// Padding removal (engine/packing.h): packed passes give the padded passes' outputs in every precision, on inputs
// that stress the packing (questions of every length; for region models an image with no valid region and zero
// rows among another's regions), and the arena sized at load holds them; graphs off here (eager passes), and on
// for a 32-question pass of short questions, replayed.
TEST_P(CudaModelTest, PackedMatchesPadded) {
    Golden golden(dir());
    const int64_t len = golden.max_length();
    for (int64_t q = 0; q < golden.questions(); ++q) {
        golden.lengths[static_cast<std::size_t>(q)] = 1 + (q * 5 + 3) % len;
    }
    if (!golden.regions.empty()) {
        const int64_t per_image = static_cast<int64_t>(golden.regions.size()) / golden.image_count;
        const int64_t features = golden.model.config.image.regions.feature_dim;
        std::fill_n(golden.regions.begin(), per_image, 0.0f);
        if (golden.image_count > 1) {
            for (int64_t r = 1; r < per_image / features; r += 2) {
                std::fill_n(golden.regions.begin() + per_image + r * features, features, 0.0f);
            }
        }
    }
    const bool classifier = golden.model.config.head.type == HeadType::kClassifier;
    for (const Precision precision : {Precision::kFp32, Precision::kFp16, Precision::kBf16}) {
        SCOPED_TRACE(precision_name(precision));
        const test::Tolerance tolerance = precision == Precision::kFp32   ? kFp32Tolerance
                                          : precision == Precision::kFp16 ? kFp16Tolerance
                                                                          : kBf16Tolerance;
        CudaModelOptions options;
        options.precision = precision;
        options.max_batch = 8;
        options.cuda_graphs = false;
        const CudaModel packed(golden.model, options);
        options.pack_sequences = false;
        const CudaModel padded(golden.model, options);
        const std::size_t workspace = packed.workspace_bytes();
        const ModelOutput a = packed.forward(golden.image_batch(), golden.text_batch());
        const ModelOutput b = padded.forward(golden.image_batch(), golden.text_batch());
        EXPECT_EQ(packed.workspace_bytes(), workspace) << "a packed pass grew the arena";
        if (classifier) {
            EXPECT_TRUE(test::all_close(a.logits, b.logits, tolerance));
        } else if (precision == Precision::kFp32) {
            EXPECT_EQ(a.tokens, b.tokens);
            EXPECT_TRUE(test::all_close(a.sequence_scores, b.sequence_scores, tolerance));
        }
        if (precision == Precision::kFp32) {
            const ModelOutput cpu = CpuModel(golden.model, 0).forward(golden.image_batch(), golden.text_batch());
            EXPECT_TRUE(test::all_close(a.logits, cpu.logits, kFp32Tolerance));
            EXPECT_EQ(a.tokens, cpu.tokens);
            // The attention maps, packed on the device, back in the padded layout.
            const ModelOutput maps = packed.forward(golden.image_batch(), golden.text_batch(), nullptr, true);
            const ModelOutput cpu_maps =
                CpuModel(golden.model, 0).forward(golden.image_batch(), golden.text_batch(), nullptr, true);
            ASSERT_FALSE(cpu_maps.pool_text.empty());
            EXPECT_TRUE(test::all_close(maps.pool_text, cpu_maps.pool_text, kFp32Tolerance));
            EXPECT_TRUE(test::all_close(maps.pool_image, cpu_maps.pool_image, kFp32Tolerance));
            EXPECT_EQ(packed.workspace_bytes(), workspace) << "attention maps grew the arena";
        }
    }
    if (!classifier) {
        return;
    }
    // 32 questions (the golden ones, repeated, short) with graphs on.
    constexpr int64_t kQuestions = 32;
    std::vector<int64_t> ids;
    std::vector<int64_t> lengths;
    std::vector<int64_t> index;
    for (int64_t q = 0; q < kQuestions; ++q) {
        const int64_t source = q % golden.questions();
        ids.insert(ids.end(), golden.ids.begin() + source * len, golden.ids.begin() + (source + 1) * len);
        lengths.push_back(1 + q % 3);
        index.push_back(golden.image_index[static_cast<std::size_t>(source)]);
    }
    const TextBatch text{kQuestions, ids.data(), lengths.data(), index.data()};
    CudaModelOptions options;
    options.max_batch = kQuestions;
    const CudaModel model(golden.model, options);
    const std::size_t workspace = model.workspace_bytes();
    const ModelOutput cpu = CpuModel(golden.model, 0).forward(golden.image_batch(), text);
    for (int pass = 0; pass < 3; ++pass) {  // eager, capture, replay when padded
        SCOPED_TRACE("graphs on, pass " + std::to_string(pass));
        EXPECT_TRUE(test::all_close(model.forward(golden.image_batch(), text).logits, cpu.logits, kFp32Tolerance));
    }
    EXPECT_EQ(model.workspace_bytes(), workspace);
}

// Packed and padded passes interleaved on one model with graphs on, each captured and replayed in its bucket: a
// packed pass with more staged arrays (an image without any region gives a mask) must neither outgrow what the
// load pass sized (pinned staging, arena) nor leave a captured graph reading a freed buffer, and replays of
// packed buckets must answer the passes they replay, not the one they were captured from.
TEST_P(CudaModelTest, PackedPassesBetweenGraphReplays) {
    Golden golden(dir());
    if (golden.model.config.head.type != HeadType::kClassifier) {
        GTEST_SKIP() << "generate heads run eagerly: no graphs to interleave with";
    }
    constexpr int64_t kQuestions = 16;
    const int64_t len = golden.max_length();
    std::vector<int64_t> ids;
    std::vector<int64_t> full_lengths;
    std::vector<int64_t> short_lengths;
    std::vector<int64_t> index;
    for (int64_t q = 0; q < kQuestions; ++q) {
        const int64_t source = q % golden.questions();
        ids.insert(ids.end(), golden.ids.begin() + source * len, golden.ids.begin() + (source + 1) * len);
        full_lengths.push_back(len);
        short_lengths.push_back(1);
        index.push_back(q % golden.image_count);
    }
    const ImageBatch full_images = golden.image_batch();
    Golden emptied(dir());
    if (!emptied.regions.empty()) {
        std::fill_n(emptied.regions.begin(), static_cast<int64_t>(emptied.regions.size()) / emptied.image_count, 0.0f);
    }
    const ImageBatch sparse_images = emptied.image_batch();
    const TextBatch long_text{kQuestions, ids.data(), full_lengths.data(), index.data()};

    CudaModelOptions options;
    options.max_batch = kQuestions;
    const CudaModel model(golden.model, options);
    const std::size_t workspace = model.workspace_bytes();
    const CpuModel cpu(golden.model, 0);
    const ModelOutput long_expected = cpu.forward(full_images, long_text);
    // Each layout three times in a row (eager, capture, replay), then again after the other's replays. The packed
    // passes ask other questions each time (the same lengths, so the same bucket): a replay must answer the pass
    // it replays, not the one it was captured from.
    for (int round = 0; round < 2; ++round) {
        for (int pass = 0; pass < 3; ++pass) {
            SCOPED_TRACE("round " + std::to_string(round) + ", pass " + std::to_string(pass));
            EXPECT_TRUE(
                test::all_close(model.forward(full_images, long_text).logits, long_expected.logits, kFp32Tolerance));
        }
        for (int pass = 0; pass < 3; ++pass) {
            SCOPED_TRACE("round " + std::to_string(round) + ", packed pass " + std::to_string(pass));
            std::vector<int64_t> rotated(ids.size());
            for (int64_t q = 0; q < kQuestions; ++q) {
                const int64_t from = (q + pass + round) % kQuestions;
                std::copy_n(ids.begin() + from * len, len, rotated.begin() + q * len);
            }
            const TextBatch text{kQuestions, rotated.data(), short_lengths.data(), index.data()};
            EXPECT_TRUE(test::all_close(model.forward(sparse_images, text).logits,
                                        cpu.forward(sparse_images, text).logits, kFp32Tolerance));
        }
    }
    // Question lengths that change from pass to pass: new row buckets (each captured on its second pass), and
    // replays of a bucket with other lengths inside it.
    std::vector<int64_t> lengths(kQuestions);
    for (int pass = 0; pass < 6; ++pass) {
        SCOPED_TRACE("mixed lengths, pass " + std::to_string(pass));
        for (int64_t q = 0; q < kQuestions; ++q) {
            lengths[static_cast<std::size_t>(q)] = 1 + (q * (pass / 2 + 1) + pass / 2) % len;
        }
        const TextBatch text{kQuestions, ids.data(), lengths.data(), index.data()};
        EXPECT_TRUE(test::all_close(model.forward(sparse_images, text).logits, cpu.forward(sparse_images, text).logits,
                                    kFp32Tolerance));
    }
    EXPECT_EQ(model.workspace_bytes(), workspace);
}

// Each question alone (its image as a batch of one) gives what it gives inside the batch.
TEST_P(CudaModelTest, SharedImageMatchesSingleQuestion) {
    const Golden golden(dir());
    const CudaModel model = make_model(golden);
    const ModelOutput batched = model.forward(golden.image_batch(), golden.text_batch());
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
            EXPECT_TRUE(test::all_close(alone.logits, row, kFp32Tolerance));
        } else {
            ASSERT_EQ(alone.tokens.size(), 1u);
            EXPECT_EQ(alone.tokens[0], batched.tokens[static_cast<std::size_t>(q)]);
        }
    }
}

// Calls from two threads are serialised on the model's stream and give the single-thread result exactly.
TEST_P(CudaModelTest, ConcurrentForwardIsDeterministic) {
    const Golden golden(dir());
    const CudaModel model = make_model(golden);
    const ModelOutput reference = model.forward(golden.image_batch(), golden.text_batch());
    std::vector<ModelOutput> results(4);
    std::vector<std::string> errors(results.size());
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < results.size(); ++i) {
        threads.emplace_back([&, i] {
            try {
                results[i] = model.forward(golden.image_batch(), golden.text_batch());
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        });
    }
    for (std::thread& t : threads) {
        t.join();
    }
    for (std::size_t i = 0; i < results.size(); ++i) {
        ASSERT_EQ(errors[i], "");
        EXPECT_EQ(results[i].logits, reference.logits);
        EXPECT_EQ(results[i].tokens, reference.tokens);
    }
}

TEST_P(CudaModelTest, RejectsInvalidInputs) {
    const Golden golden(dir());
    const CudaModel model = make_model(golden, Precision::kFp32, golden.questions());
    const ImageBatch images = golden.image_batch();
    std::vector<int64_t> ids = golden.ids;
    ids[3] = golden.model.weights.info("text.embedding.weight").shape[0];
    EXPECT_VQA_ERROR(
        model.forward(images, {golden.questions(), ids.data(), golden.lengths.data(), golden.image_index.data()}),
        kInvalidArgument, "outside the vocabulary");
    std::vector<int64_t> lengths = golden.lengths;
    lengths[1] = 0;
    EXPECT_VQA_ERROR(
        model.forward(images, {golden.questions(), golden.ids.data(), lengths.data(), golden.image_index.data()}),
        kInvalidArgument, "question 1 has length 0");
    std::vector<int64_t> image_index = golden.image_index;
    image_index[2] = golden.image_count;
    EXPECT_VQA_ERROR(
        model.forward(images, {golden.questions(), golden.ids.data(), golden.lengths.data(), image_index.data()}),
        kInvalidArgument, "image_index");
    // A pass larger than max_batch is refused before anything reaches the device; the model stays usable.
    const CudaModel small = make_model(golden, Precision::kFp32, 1);
    EXPECT_VQA_ERROR(small.forward(images, golden.text_batch()), kInvalidArgument, "max_batch");
    const int64_t zero = 0;
    const TextBatch one{1, golden.ids.data(), golden.lengths.data(), &zero};
    EXPECT_NO_THROW(small.forward(golden.single_image(0), one));
    const ModelOutput empty = model.forward(images, {0, nullptr, nullptr, nullptr});
    EXPECT_TRUE(empty.logits.empty() && empty.tokens.empty());
}

INSTANTIATE_TEST_SUITE_P(cuda_model,
                         CudaModelTest,
                         ::testing::ValuesIn(kVariants),
                         [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

}  // namespace
}  // namespace vqa

// Every golden model directory written by tools/make_goldens.py loads, and the tokenizer reproduces the ids that
// the Python reference stored for its questions.
#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include "engine/model_dir.h"
#include "engine/tokenizer.h"
#include "tests/engine/engine_test_util.h"

namespace vqa {
namespace {

namespace fs = std::filesystem;

const fs::path kGoldens = fs::path(VQA_SOURCE_DIR) / "tests" / "goldens";

std::vector<fs::path> golden_dirs() {
    std::vector<fs::path> dirs;
    if (fs::is_directory(kGoldens)) {
        for (const fs::directory_entry& entry : fs::directory_iterator(kGoldens)) {
            if (fs::exists(entry.path() / "config.json")) {
                dirs.push_back(entry.path());
            }
        }
    }
    std::sort(dirs.begin(), dirs.end());
    return dirs;
}

// The goldens are committed: none found is a failure (a broken checkout or a wrong VQA_SOURCE_DIR), not a skip.
std::vector<fs::path> require_goldens() {
    std::vector<fs::path> dirs = golden_dirs();
    if (dirs.empty()) {
        ADD_FAILURE() << "no golden model directories under " << kGoldens
                      << " (tools/make_goldens.py --out tests/goldens writes them)";
    }
    return dirs;
}

TEST(GoldenModelDirTest, EveryGoldenLoads) {
    for (const fs::path& dir : require_goldens()) {
        SCOPED_TRACE(dir.string());
        try {
            const ModelDir model = load_model_dir(dir.string());
            EXPECT_GT(model.weights.size(), 0u);
            EXPECT_FALSE(model.answers.empty());
        } catch (const Error& e) {
            ADD_FAILURE() << e.what();
        }
    }
}

TEST(GoldenModelDirTest, TokenizerMatchesReferenceIds) {
    for (const fs::path& dir : require_goldens()) {
        SCOPED_TRACE(dir.string());
        const ModelDir model = load_model_dir(dir.string());
        const Tokenizer tokenizer(model.config.text.tokenizer, model.vocab);
        const auto questions = nlohmann::json::parse(test::read_file((dir / "questions.json").string()));
        const SafetensorsFile inputs((dir / "inputs.safetensors").string());
        const std::vector<int64_t> ids = inputs.as<int64_t>("ids");
        const std::vector<int64_t> lengths = inputs.as<int64_t>("lengths");
        const auto max_length = static_cast<std::size_t>(tokenizer.max_length());
        ASSERT_EQ(inputs.info("ids").shape,
                  (std::vector<int64_t>{static_cast<int64_t>(questions.size()), static_cast<int64_t>(max_length)}));
        for (std::size_t q = 0; q < questions.size(); ++q) {
            const std::string question = questions[q].get<std::string>();
            const Tokenizer::Encoded encoded = tokenizer.encode(question);
            const std::vector<int64_t> expected(ids.begin() + static_cast<std::ptrdiff_t>(q * max_length),
                                                ids.begin() + static_cast<std::ptrdiff_t>((q + 1) * max_length));
            EXPECT_EQ(encoded.ids, expected) << "question " << q << ": " << question;
            EXPECT_EQ(encoded.result.length, lengths[q]) << "question " << q << ": " << question;
        }
    }
}

}  // namespace
}  // namespace vqa

#include "engine/model_dir.h"

#include <cmath>
#include <sstream>
#include <sys/stat.h>
#include <unordered_set>

#include "engine/json_util.h"

namespace vqa {
namespace {

constexpr const char* kWeightsFile = "model.safetensors";
constexpr const char* kEmbedding = "text.embedding.weight";
constexpr std::size_t kMaxListed = 100;  // per category: the message stays readable for a wholly wrong file

bool shape_matches(const std::vector<int64_t>& expected,
                   const std::vector<int64_t>& found,
                   int64_t vocab_rows,
                   int64_t answers) {
    if (expected.size() != found.size()) {
        return false;
    }
    for (std::size_t i = 0; i < expected.size(); ++i) {
        const int64_t want = expected[i] == kVocabDim ? vocab_rows : expected[i] == kAnswerDim ? answers : expected[i];
        // V is whatever the file says (>= 1); every other dimension is exact.
        if (expected[i] == kVocabDim ? found[i] < 1 : found[i] != want) {
            return false;
        }
    }
    return true;
}

void append_section(std::ostringstream& out, const char* title, const std::vector<std::string>& lines) {
    if (lines.empty()) {
        return;
    }
    out << "\n  " << title << " (" << lines.size() << "):";
    for (std::size_t i = 0; i < lines.size() && i < kMaxListed; ++i) {
        out << "\n    " << lines[i];
    }
    if (lines.size() > kMaxListed) {
        out << "\n    ... and " << lines.size() - kMaxListed << " more";
    }
}

void check_metadata(const SafetensorsFile& weights) {
    // Written by the exporter; files from other writers may lack it, but a different format must not pass.
    const auto& metadata = weights.metadata();
    const std::pair<const char*, const char*> expected[] = {{"format", "vqa-engine"}, {"format_version", "1"}};
    for (const auto& [key, value] : expected) {
        const auto it = metadata.find(key);
        if (it != metadata.end() && it->second != value) {
            throw_error(ErrorCode::kModelFormat, weights.label(), ": __metadata__.", key, ": expected \"", value,
                        "\", got \"", it->second, "\"");
        }
    }
}

}  // namespace

void check_model_tensors(const ModelConfig& config, const SafetensorsFile& weights, int64_t num_answers) {
    int64_t vocab_rows = -1;
    if (weights.contains(kEmbedding) && !weights.info(kEmbedding).shape.empty()) {
        vocab_rows = weights.info(kEmbedding).shape[0];
    }
    std::vector<std::string> missing;
    std::vector<std::string> wrong;
    std::vector<std::string> unexpected;
    std::unordered_set<std::string> implied;
    for (const ExpectedTensor& want : expected_tensors(config)) {
        implied.insert(want.name);
        const std::string want_shape = expected_shape_string(want.shape, -1, num_answers);
        if (!weights.contains(want.name)) {
            missing.push_back(want.name + " " + want_shape);
            continue;
        }
        const TensorInfo& found = weights.info(want.name);
        if (!shape_matches(want.shape, found.shape, vocab_rows, num_answers)) {
            wrong.push_back(want.name + ": expected " + want_shape + ", found " + shape_string(found.shape));
        } else if (!dtype_is_float(found.dtype)) {
            wrong.push_back(want.name + ": expected dtype F32, F16 or BF16, found " + dtype_name(found.dtype));
        }
    }
    for (const std::string& name : weights.names()) {
        if (implied.count(name) == 0) {
            unexpected.push_back(name + " " + shape_string(weights.info(name).shape));
        }
    }
    if (missing.empty() && wrong.empty() && unexpected.empty()) {
        return;
    }
    std::ostringstream message;
    message << weights.label() << ": tensors do not match the config (V = rows of " << kEmbedding
            << ", A = " << num_answers << " entries in answers.json):";
    append_section(message, "missing", missing);
    append_section(message, "wrong shape or dtype", wrong);
    append_section(message, "not implied by the config", unexpected);
    throw Error(ErrorCode::kModelFormat, message.str());
}

void check_finite_weights(const SafetensorsFile& weights) {
    std::vector<std::string> bad;
    for (const std::string& name : weights.names()) {
        int64_t nan = 0;
        int64_t inf = 0;
        for (float v : weights.to_float(name)) {
            nan += std::isnan(v) ? 1 : 0;
            inf += std::isinf(v) ? 1 : 0;
        }
        if (nan + inf > 0) {
            bad.push_back(detail::str_cat("'", name, "': ", nan, " NaN and ", inf, " infinite of ",
                                          weights.info(name).numel, " values"));
        }
    }
    if (!bad.empty()) {
        std::ostringstream out;
        out << weights.label() << ": non-finite weights (a diverged or corrupted model would answer NaN)";
        append_section(out, "tensors", bad);
        throw_error(ErrorCode::kModelFormat, out.str());
    }
}

ModelDir load_model_dir(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        throw_error(ErrorCode::kIo, path, ": not a model directory (expected a directory with config.json)");
    }
    const std::string dir = path.back() == '/' ? path : path + "/";

    ModelConfig config = load_model_config(dir + "config.json");
    std::vector<std::string> answers = load_answers(dir + "answers.json");
    if (answers.empty()) {
        throw_error(ErrorCode::kModelFormat, "answers.json: expected at least one answer, got an empty list");
    }
    const auto num_answers = static_cast<int64_t>(answers.size());
    if (config.head.type == HeadType::kGenerate) {
        const std::pair<const char*, int> ids[] = {{"bos_id", config.head.bos_id}, {"eos_id", config.head.eos_id}};
        for (const auto& [key, id] : ids) {
            if (id >= num_answers) {
                throw_error(ErrorCode::kModelFormat, "config.json: head.", key, ": expected an id < ", num_answers,
                            " (entries in answers.json), got ", id);
            }
        }
    }
    Vocab vocab = Vocab::load(dir + "vocab.json", config.text.tokenizer);

    SafetensorsFile weights(dir + kWeightsFile);
    check_metadata(weights);
    check_model_tensors(config, weights, num_answers);
    check_finite_weights(weights);
    vocab.check_rows(weights.info(kEmbedding).shape[0], kEmbedding);

    return ModelDir{path, std::move(config), std::move(weights), std::move(vocab), std::move(answers)};
}

}  // namespace vqa

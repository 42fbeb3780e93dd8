#include "engine/vocab.h"

#include <algorithm>
#include <limits>

#include "engine/json_util.h"

namespace vqa {
namespace {

constexpr std::size_t kMaxVocabFileBytes = std::size_t{256} << 20;

}  // namespace

Vocab Vocab::parse(std::string_view json_text, const TokenizerConfig& tokenizer, const std::string& label) {
    const nlohmann::json doc = parse_json_strict(json_text, label);
    if (!doc.is_object()) {
        throw_error(ErrorCode::kModelFormat, label, ": expected a JSON object {token: id}, got ", json_type_name(doc));
    }
    Vocab vocab;
    vocab.label_ = label;
    vocab.ids_.reserve(doc.size());
    std::unordered_map<int64_t, const std::string*> tokens_by_id;
    tokens_by_id.reserve(doc.size());
    for (const auto& [token, value] : doc.items()) {
        const bool is_id = value.is_number_unsigned() &&
                           value.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
        if (!is_id) {
            throw_error(ErrorCode::kModelFormat, label, ": entry \"", token, "\": expected an int id >= 0, got ",
                        json_repr(value));
        }
        const int64_t id = value.get<int64_t>();
        const auto [it, inserted] = vocab.ids_.emplace(token, id);
        const auto [seen, first] = tokens_by_id.emplace(id, &it->first);
        if (!first) {
            throw_error(ErrorCode::kModelFormat, label, ": id ", id, " used twice (\"", *seen->second, "\" and \"",
                        token, "\")");
        }
        vocab.max_id_ = std::max(vocab.max_id_, id);
    }
    struct Special {
        const char* token;
        const char* key;
        int id;
    };
    const Special specials[] = {{kPadToken, "pad_id", tokenizer.pad_id}, {kUnkToken, "unk_id", tokenizer.unk_id}};
    for (const auto& [token, key, expected] : specials) {
        const int64_t found = vocab.find(token);
        if (found != expected) {
            throw_error(ErrorCode::kModelFormat, label, ": expected \"", token, "\" with id ", expected,
                        " (text.tokenizer.", key, "), got ",
                        found < 0 ? std::string("no such entry") : "id " + std::to_string(found));
        }
    }
    return vocab;
}

Vocab Vocab::load(const std::string& path, const TokenizerConfig& tokenizer) {
    return parse(read_file_bytes(path, kMaxVocabFileBytes), tokenizer, file_label(path));
}

void Vocab::check_rows(int64_t rows, const std::string& tensor) const {
    if (max_id_ < rows) {
        return;
    }
    for (const auto& [token, id] : ids_) {
        if (id >= rows) {
            throw_error(ErrorCode::kModelFormat, label_, ": entry \"", token, "\": id ", id, " outside [0, ", rows,
                        ") (", tensor, " has ", rows, " rows)");
        }
    }
}

std::vector<std::string> parse_answers(std::string_view json_text, const std::string& label) {
    const nlohmann::json doc = parse_json_strict(json_text, label);
    if (!doc.is_array()) {
        throw_error(ErrorCode::kModelFormat, label, ": expected a JSON array of strings, got ", json_type_name(doc));
    }
    std::vector<std::string> answers;
    answers.reserve(doc.size());
    for (std::size_t i = 0; i < doc.size(); ++i) {
        if (!doc[i].is_string()) {
            throw_error(ErrorCode::kModelFormat, label, ": [", i, "]: expected a string, got ", json_repr(doc[i]));
        }
        answers.push_back(doc[i].get<std::string>());
    }
    return answers;
}

std::vector<std::string> load_answers(const std::string& path) {
    return parse_answers(read_file_bytes(path, kMaxVocabFileBytes), file_label(path));
}

}  // namespace vqa

// vocab.json (question token -> id) and answers.json (answer id -> string) of a model directory.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/config.h"

namespace vqa {

class Vocab {
public:
    static constexpr const char* kPadToken = "<pad>";
    static constexpr const char* kUnkToken = "<unk>";

    Vocab() = default;

    // Parses a JSON object {token: id}: ids are ints >= 0 and unique, "<pad>" has tokenizer.pad_id and "<unk>"
    // has tokenizer.unk_id. Whether ids fit the embedding is checked later (check_rows). kModelFormat on defects.
    static Vocab parse(std::string_view json_text, const TokenizerConfig& tokenizer, const std::string& label);
    static Vocab load(const std::string& path, const TokenizerConfig& tokenizer);

    std::size_t size() const { return ids_.size(); }
    int64_t max_id() const { return max_id_; }  // -1 when empty
    // The id of `token`, or -1.
    int64_t find(const std::string& token) const {
        const auto it = ids_.find(token);
        return it == ids_.end() ? -1 : it->second;
    }

    // kModelFormat unless every id is inside [0, rows), rows = first dimension of `tensor` (the embedding).
    void check_rows(int64_t rows, const std::string& tensor) const;

private:
    std::unordered_map<std::string, int64_t> ids_;
    int64_t max_id_ = -1;
    std::string label_ = "vocab.json";
};

// answers.json: a JSON array of strings (entry i is answer / output word i). kModelFormat on defects.
std::vector<std::string> parse_answers(std::string_view json_text, const std::string& label);
std::vector<std::string> load_answers(const std::string& path);

}  // namespace vqa

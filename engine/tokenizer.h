// The question tokenizer of docs/model-format.md §3: byte-level, on UTF-8 text.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/config.h"
#include "engine/vocab.h"

namespace vqa {

// kInvalidArgument unless `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF); the message names `what` and the byte offset where the bad sequence starts.
void check_utf8(std::string_view text, const char* what);

struct TokenizeResult {
    int length = 0;          // n: ids[0..n) are valid, the rest is pad_id; 0 is an error for the engine to report
    int total_tokens = 0;    // tokens before truncation
    bool truncated = false;  // total_tokens > max_length: the tail was dropped
};

class Tokenizer {
public:
    Tokenizer(const TokenizerConfig& config, Vocab vocab);

    int max_length() const { return config_.max_length; }
    const TokenizerConfig& config() const { return config_; }
    const Vocab& vocab() const { return vocab_; }

    // Steps 1-3: the question's tokens as strings (after lower-casing, removal and splitting).
    std::vector<std::string> words(std::string_view question) const;

    // Steps 1-6 into `ids`, which must hold max_length() entries. Id is int32_t or int64_t.
    template <typename Id>
    TokenizeResult encode(std::string_view question, Id* ids) const;

    struct Encoded {
        std::vector<int64_t> ids;  // max_length entries
        TokenizeResult result;
    };
    Encoded encode(std::string_view question) const;

private:
    enum class ByteAction : uint8_t { kKeep, kDelete, kSpace };

    TokenizerConfig config_;
    Vocab vocab_;
    std::array<ByteAction, 256> actions_{};  // step 2 for each byte value (after step 1)
};

extern template TokenizeResult Tokenizer::encode<int32_t>(std::string_view, int32_t*) const;
extern template TokenizeResult Tokenizer::encode<int64_t>(std::string_view, int64_t*) const;

}  // namespace vqa

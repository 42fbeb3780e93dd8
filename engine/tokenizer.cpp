#include "engine/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <utility>

#include "engine/json_util.h"

namespace vqa {
namespace {

// Step 3's separators: exactly the six ASCII whitespace bytes (not std::isspace, which depends on the locale).
bool is_ascii_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r');
}

bool is_continuation(unsigned char c) {
    return (c & 0xc0) == 0x80;
}

// Length of the well-formed UTF-8 sequence starting at text[i], or 0 (Unicode Table 3-7).
std::size_t utf8_sequence_length(std::string_view text, std::size_t i) {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char lead = byte(i);
    if (lead < 0x80) {
        return 1;
    }
    std::size_t length = 0;
    unsigned char second_min = 0x80;
    unsigned char second_max = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) {
        length = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        length = 3;
        second_min = lead == 0xe0 ? 0xa0 : 0x80;  // no overlong forms
        second_max = lead == 0xed ? 0x9f : 0xbf;  // no surrogates
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        length = 4;
        second_min = lead == 0xf0 ? 0x90 : 0x80;
        second_max = lead == 0xf4 ? 0x8f : 0xbf;  // nothing past U+10FFFF
    } else {
        return 0;
    }
    if (i + length > text.size() || byte(i + 1) < second_min || byte(i + 1) > second_max) {
        return 0;
    }
    for (std::size_t k = 2; k < length; ++k) {
        if (!is_continuation(byte(i + k))) {
            return 0;
        }
    }
    return length;
}

}  // namespace

void check_utf8(std::string_view text, const char* what) {
    for (std::size_t i = 0; i < text.size();) {
        const std::size_t length = utf8_sequence_length(text, i);
        if (length == 0) {
            char hex[8];
            std::snprintf(hex, sizeof(hex), "0x%02x", static_cast<unsigned char>(text[i]));
            throw_error(ErrorCode::kInvalidArgument, what, " is not valid UTF-8: bad sequence at byte offset ", i,
                        " (byte ", hex, ")");
        }
        i += length;
    }
}

Tokenizer::Tokenizer(const TokenizerConfig& config, Vocab vocab) : config_(config), vocab_(std::move(vocab)) {
    VQA_CHECK(config_.max_length >= 1, kInvalidArgument, "Tokenizer: expected max_length >= 1, got ",
              config_.max_length);
    actions_.fill(ByteAction::kKeep);
    for (const char c : config_.to_space) {
        actions_[static_cast<unsigned char>(c)] = ByteAction::kSpace;
    }
    // Removal is listed first in §3 step 2; a byte in both sets (the config rejects that) is deleted.
    for (const char c : config_.remove) {
        actions_[static_cast<unsigned char>(c)] = ByteAction::kDelete;
    }
}

std::vector<std::string> Tokenizer::words(std::string_view question) const {
    check_utf8(question, "question");
    std::vector<std::string> out;
    std::string current;
    for (const char raw : question) {
        auto c = static_cast<unsigned char>(raw);
        if (config_.lowercase && c >= 'A' && c <= 'Z') {
            c = static_cast<unsigned char>(c - 'A' + 'a');
        }
        const ByteAction action = actions_[c];
        if (action == ByteAction::kDelete) {
            continue;
        }
        if (action == ByteAction::kSpace || is_ascii_space(c)) {
            if (!current.empty()) {
                out.push_back(std::move(current));
                current.clear();
            }
            continue;
        }
        current.push_back(static_cast<char>(c));
    }
    if (!current.empty()) {
        out.push_back(std::move(current));
    }
    return out;
}

template <typename Id>
TokenizeResult Tokenizer::encode(std::string_view question, Id* ids) const {
    VQA_CHECK(vocab_.max_id() <= static_cast<int64_t>(std::numeric_limits<Id>::max()), kInvalidArgument,
              "Tokenizer::encode: vocabulary ids up to ", vocab_.max_id(), " do not fit the requested id type");
    const std::vector<std::string> tokens = words(question);
    TokenizeResult result;
    result.total_tokens = static_cast<int>(std::min<std::size_t>(tokens.size(), std::numeric_limits<int>::max()));
    result.truncated = tokens.size() > static_cast<std::size_t>(config_.max_length);
    result.length = result.truncated ? config_.max_length : static_cast<int>(tokens.size());
    for (int i = 0; i < result.length; ++i) {
        const int64_t id = vocab_.find(tokens[static_cast<std::size_t>(i)]);
        ids[i] = static_cast<Id>(id >= 0 ? id : config_.unk_id);
    }
    for (int i = result.length; i < config_.max_length; ++i) {
        ids[i] = static_cast<Id>(config_.pad_id);
    }
    return result;
}

template TokenizeResult Tokenizer::encode<int32_t>(std::string_view, int32_t*) const;
template TokenizeResult Tokenizer::encode<int64_t>(std::string_view, int64_t*) const;

Tokenizer::Encoded Tokenizer::encode(std::string_view question) const {
    Encoded out;
    out.ids.resize(static_cast<std::size_t>(config_.max_length));
    out.result = encode(question, out.ids.data());
    return out;
}

}  // namespace vqa

// libFuzzer target: vocab.json (Vocab::parse) and answers.json (parse_answers), both on every input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string_view>

#include "engine/vocab.h"
#include "vqa/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    vqa::TokenizerConfig rules;
    rules.max_length = 14;
    rules.pad_id = 0;
    rules.unk_id = 1;
    try {
        const vqa::Vocab vocab = vqa::Vocab::parse(text, rules, "vocab.json");
        if (vocab.find(vqa::Vocab::kPadToken) != 0 || vocab.find(vqa::Vocab::kUnkToken) != 1) {
            std::abort();  // parse must have checked the special tokens
        }
        if (vocab.max_id() < std::numeric_limits<int64_t>::max()) {
            vocab.check_rows(vocab.max_id() + 1, "text.embedding.weight");  // every id fits: must not throw
        }
        try {
            vocab.check_rows(1, "text.embedding.weight");
            std::abort();  // <unk> has id 1, outside [0, 1)
        } catch (const vqa::Error&) {
        }
    } catch (const vqa::Error&) {
    }
    try {
        (void)vqa::parse_answers(text, "answers.json");
    } catch (const vqa::Error&) {
    }
    return 0;
}

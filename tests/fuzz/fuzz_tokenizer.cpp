// libFuzzer target: the question tokenizer (engine/tokenizer.h) on arbitrary bytes, invalid UTF-8 included, the
// way the engine calls it: check_utf8 first, then encode. The first input byte picks the rules (lower-casing,
// max_length); the rest is the question. The result is checked against the contract, not just run.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "engine/tokenizer.h"
#include "engine/vocab.h"
#include "vqa/error.h"

namespace {

constexpr const char* kVocabJson =
    R"({"<pad>": 0, "<unk>": 1, "what": 2, "color": 3, "is": 4, "the": 5, "shape": 6, "?": 7, "é": 8, "s": 9})";

void check(bool condition) {
    if (!condition) {
        std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    vqa::TokenizerConfig rules;
    rules.lowercase = (data[0] & 0x80) != 0;
    rules.max_length = 1 + data[0] % 40;
    rules.pad_id = 0;
    rules.unk_id = 1;
    rules.remove = "?'";
    rules.to_space = ",;.";
    static const vqa::Vocab vocab = vqa::Vocab::parse(kVocabJson, rules, "vocab.json");
    const vqa::Tokenizer tokenizer(rules, vocab);
    const std::string_view question(reinterpret_cast<const char*>(data + 1), size - 1);

    try {
        vqa::check_utf8(question, "question");
    } catch (const vqa::Error& e) {
        check(e.code() == vqa::ErrorCode::kInvalidArgument);
        try {
            (void)tokenizer.encode(question);  // encode checks the UTF-8 itself
            std::abort();
        } catch (const vqa::Error&) {
        }
        return 0;
    }
    const std::vector<std::string> words = tokenizer.words(question);
    const vqa::Tokenizer::Encoded wide = tokenizer.encode(question);
    std::vector<int32_t> narrow(static_cast<std::size_t>(rules.max_length), -1);
    const vqa::TokenizeResult r = tokenizer.encode(question, narrow.data());

    check(r.length == wide.result.length && r.truncated == wide.result.truncated);
    check(r.total_tokens == static_cast<int>(words.size()));
    check(r.truncated == (words.size() > static_cast<std::size_t>(rules.max_length)));
    check(r.length >= 0 && r.length <= rules.max_length);
    check(wide.ids.size() == static_cast<std::size_t>(rules.max_length));
    for (int i = 0; i < rules.max_length; ++i) {
        const auto at = static_cast<std::size_t>(i);
        const int64_t id = wide.ids[at];
        check(id == narrow[at]);
        if (i < r.length) {  // §3 step 4: the word's id (even "<pad>"'s), else unk_id
            const int64_t known = vocab.find(words[at]);
            check(id == (known >= 0 ? known : rules.unk_id));
        } else {
            check(id == rules.pad_id);
        }
    }
    for (const std::string& word : words) {
        check(!word.empty());
    }
    return 0;
}

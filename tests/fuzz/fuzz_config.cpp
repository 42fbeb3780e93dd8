// libFuzzer target: config.json (parse_model_config). A config that validates is then used the way the loader
// uses it: the tensors it implies, the image grid, and a tokenizer built from its tokenizer rules.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/config.h"
#include "engine/inputs.h"
#include "engine/tokenizer.h"
#include "engine/vocab.h"
#include "vqa/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    vqa::ModelConfig config;
    try {
        config = vqa::parse_model_config(text);
    } catch (const vqa::Error&) {
        return 0;  // a refused config is the expected outcome
    }
    for (const vqa::ExpectedTensor& t : vqa::expected_tensors(config)) {
        (void)vqa::expected_shape_string(t.shape, 100, 10);
    }
    (void)vqa::image_feature_dim(config);
    (void)vqa::image_grid(config);
    try {
        const vqa::TokenizerConfig& rules = config.text.tokenizer;
        const std::string vocab_json = "{\"<pad>\": " + std::to_string(rules.pad_id) +
                                       ", \"<unk>\": " + std::to_string(rules.unk_id) + ", \"what\": 1000}";
        const vqa::Tokenizer tokenizer(rules, vqa::Vocab::parse(vocab_json, rules, "vocab.json"));
        (void)tokenizer.encode("What, is the SHAPE's colour?  what");
    } catch (const vqa::Error&) {
    }
    return 0;
}

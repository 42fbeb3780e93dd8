#include "engine/tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/config.h"

#include "tests/engine/engine_test_util.h"

namespace vqa {
namespace {

TokenizerConfig spec_tokenizer() {
    TokenizerConfig t;
    t.lowercase = true;
    t.remove = ".,'!?\"()*#:;";
    t.to_space = "-/";
    t.max_length = 14;
    t.pad_id = 0;
    t.unk_id = 1;
    return t;
}

const char* const kVocab = R"({"<pad>": 0, "<unk>": 1, "what": 2, "is": 3, "the": 4, "color": 5, "of": 6,
  "shape": 7, "t": 8, "shirt": 9, "and": 10, "or": 11, "its": 12, "caf\u00e9": 13, "a": 14, "1": 15,
  "what\u00a0is": 16})";

Tokenizer make_tokenizer(TokenizerConfig config = spec_tokenizer()) {
    return Tokenizer(config, Vocab::parse(kVocab, config, "vocab.json"));
}

struct TokenizeCase {
    std::string name;
    std::string question;
    std::vector<int64_t> ids;  // the valid ids; the rest must be pad
    bool truncated = false;
};

class TokenizeTest : public ::testing::TestWithParam<TokenizeCase> {};

TEST_P(TokenizeTest, ExpectedIds) {
    const TokenizeCase& p = GetParam();
    const Tokenizer tokenizer = make_tokenizer();
    const Tokenizer::Encoded encoded = tokenizer.encode(p.question);
    ASSERT_EQ(encoded.ids.size(), 14u);
    std::vector<int64_t> expected = p.ids;
    expected.resize(14, 0);
    EXPECT_EQ(encoded.ids, expected);
    EXPECT_EQ(encoded.result.length, static_cast<int>(p.ids.size()));
    EXPECT_EQ(encoded.result.truncated, p.truncated);

    // The int32 path gives the same ids.
    std::vector<int32_t> ids32(14, -7);
    const TokenizeResult r32 = tokenizer.encode(p.question, ids32.data());
    EXPECT_EQ(r32.length, encoded.result.length);
    EXPECT_EQ(std::vector<int64_t>(ids32.begin(), ids32.end()), expected);
}

INSTANTIATE_TEST_SUITE_P(
    Questions,
    TokenizeTest,
    ::testing::Values(TokenizeCase{"plain", "What is the color of the shape?", {2, 3, 4, 5, 6, 4, 7}},
                      TokenizeCase{"upper_case", "WHAT IS THE SHAPE", {2, 3, 4, 7}},
                      TokenizeCase{"hyphen_becomes_space", "t-shirt", {8, 9}},
                      TokenizeCase{"slash_becomes_space", "and/or", {10, 11}},
                      TokenizeCase{"apostrophe_removed", "it's", {12}},
                      TokenizeCase{
                          "every_removed_byte", "(\"what\")* #is: the; color. of, shape!?", {2, 3, 4, 5, 6, 7}},
                      TokenizeCase{"whitespace_runs", "  what\t\tis\n\rthe\vcolor\f ", {2, 3, 4, 5}},
                      TokenizeCase{"unknown_words", "what is a zebra", {2, 3, 14, 1}},
                      TokenizeCase{"digits", "is 1 a 2", {3, 15, 14, 1}},
                      TokenizeCase{"mixed_case_unknown", "wHaT iS tHe CoLoR oF tHe ShApE", {2, 3, 4, 5, 6, 4, 7}},
                      TokenizeCase{"over_long",
                                   "what is the color of the shape and what is the color of the t shirt or its",
                                   {2, 3, 4, 5, 6, 4, 7, 10, 2, 3, 4, 5, 6, 4},
                                   true},
                      TokenizeCase{"exactly_max_length", "a a a a a a a a a a a a a a", std::vector<int64_t>(14, 14)},
                      TokenizeCase{"empty", "", {}},
                      TokenizeCase{"whitespace_only", " \t\n\v\f\r ", {}},
                      TokenizeCase{"punctuation_only", "?!... --- ///", {}},
                      // Only ASCII letters are lower-cased: "CAFÉ" becomes "cafÉ", which is not in the vocabulary.
                      TokenizeCase{"non_ascii_kept", "Caf\xc3\xa9 CAF\xc3\xa9 CAF\xc3\x89", {13, 13, 1}},
                      // U+00A0 (no-break space) and U+3000 are not ASCII whitespace: no split.
                      TokenizeCase{"unicode_space_not_split", "what\xc2\xa0is what\xe3\x80\x80is", {16, 1}},
                      // 0x1c..0x1f are whitespace for Python's str.split but not for bytes.split: no split.
                      TokenizeCase{"ascii_separator_not_space", "what\x1cis", {1}},
                      TokenizeCase{"emoji", "what is the \xf0\x9f\x8d\x8e", {2, 3, 4, 1}},
                      TokenizeCase{"embedded_nul", std::string("what\0is", 7), {1}}),
    [](const ::testing::TestParamInfo<TokenizeCase>& info) { return info.param.name; });

TEST(TokenizerTest, TruncationCounts) {
    const Tokenizer tokenizer = make_tokenizer();
    std::string question;
    for (int i = 0; i < 20; ++i) {
        question += "what ";
    }
    const TokenizeResult r = tokenizer.encode(question).result;
    EXPECT_EQ(r.length, 14);
    EXPECT_EQ(r.total_tokens, 20);
    EXPECT_TRUE(r.truncated);
}

TEST(TokenizerTest, Words) {
    EXPECT_EQ(
        make_tokenizer().words("Is there a RED-circle/square in the Zebra's picture?!"),
        (std::vector<std::string>{"is", "there", "a", "red", "circle", "square", "in", "the", "zebras", "picture"}));
}

TEST(TokenizerTest, NoLowercase) {
    TokenizerConfig config = spec_tokenizer();
    config.lowercase = false;
    const Tokenizer tokenizer = make_tokenizer(config);
    EXPECT_EQ(tokenizer.encode("What is").ids[0], 1);
    EXPECT_EQ(tokenizer.encode("What is").ids[1], 3);
}

TEST(TokenizerTest, ShortMaxLengthAndOtherPadId) {
    TokenizerConfig config = spec_tokenizer();
    config.max_length = 2;
    const Tokenizer tokenizer = make_tokenizer(config);
    const auto encoded = tokenizer.encode("what");
    EXPECT_EQ(encoded.ids, (std::vector<int64_t>{2, 0}));
    EXPECT_EQ(tokenizer.encode("what is the").result.truncated, true);
}

TEST(TokenizerTest, InvalidUtf8NamesTheOffset) {
    const Tokenizer tokenizer = make_tokenizer();
    EXPECT_VQA_ERROR(tokenizer.encode("what \xff is"), kInvalidArgument,
                     "question is not valid UTF-8: bad sequence at byte offset 5 (byte 0xff)");
    EXPECT_VQA_ERROR(tokenizer.encode("\xc0\xaf"), kInvalidArgument, "byte offset 0 (byte 0xc0)");  // overlong '/'
    EXPECT_VQA_ERROR(tokenizer.encode("ab\xe0\x80\xaf"), kInvalidArgument, "byte offset 2 (byte 0xe0)");  // overlong
    EXPECT_VQA_ERROR(tokenizer.encode("a\xed\xa0\x80"), kInvalidArgument, "byte offset 1 (byte 0xed)");   // surrogate
    EXPECT_VQA_ERROR(tokenizer.encode("abc\xe2\x82"), kInvalidArgument, "byte offset 3 (byte 0xe2)");     // cut short
    EXPECT_VQA_ERROR(tokenizer.encode("\xf4\x90\x80\x80"), kInvalidArgument,
                     "byte offset 0 (byte 0xf4)");  // > U+10FFFF
    EXPECT_VQA_ERROR(tokenizer.encode("what \x80"), kInvalidArgument,
                     "byte offset 5 (byte 0x80)");  // lone continuation
    EXPECT_VQA_ERROR(tokenizer.words("caf\xc3("), kInvalidArgument, "byte offset 3 (byte 0xc3)");
}

TEST(Utf8Test, AcceptsTheWholeRange) {
    check_utf8("\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf",
               "text");
}

TEST(VocabTest, ParsesAndFinds) {
    const Vocab vocab = Vocab::parse(kVocab, spec_tokenizer(), "vocab.json");
    EXPECT_EQ(vocab.size(), 17u);
    EXPECT_EQ(vocab.max_id(), 16);
    EXPECT_EQ(vocab.find("shape"), 7);
    EXPECT_EQ(vocab.find("zebra"), -1);
    vocab.check_rows(17, "text.embedding.weight");
    EXPECT_VQA_ERROR(vocab.check_rows(16, "text.embedding.weight"), kModelFormat,
                     "vocab.json: entry \"what\xc2\xa0is\": id 16 outside [0, 16) (text.embedding.weight has 16 rows)");
}

TEST(VocabTest, Errors) {
    const TokenizerConfig t = spec_tokenizer();
    EXPECT_VQA_ERROR(Vocab::parse("[]", t, "vocab.json"), kModelFormat,
                     "vocab.json: expected a JSON object {token: id}, got array");
    EXPECT_VQA_ERROR(Vocab::parse(R"({"<pad>": 0, "<unk>": 1, "a": 1})", t, "vocab.json"), kModelFormat,
                     "vocab.json: id 1 used twice (\"<unk>\" and \"a\")");
    EXPECT_VQA_ERROR(Vocab::parse(R"({"<pad>": 0, "<unk>": 1, "a": -3})", t, "vocab.json"), kModelFormat,
                     "entry \"a\": expected an int id >= 0, got -3");
    EXPECT_VQA_ERROR(Vocab::parse(R"({"<pad>": 0, "<unk>": 1, "a": "2"})", t, "vocab.json"), kModelFormat,
                     "entry \"a\": expected an int id >= 0, got \"2\"");
    EXPECT_VQA_ERROR(Vocab::parse(R"({"<pad>": 0, "<unk>": 1, "a": 2.0})", t, "vocab.json"), kModelFormat,
                     "expected an int id >= 0, got 2.0");
    EXPECT_VQA_ERROR(Vocab::parse(R"({"<pad>": 0, "a": 1})", t, "vocab.json"), kModelFormat,
                     "expected \"<unk>\" with id 1 (text.tokenizer.unk_id), got no such entry");
    EXPECT_VQA_ERROR(Vocab::parse(R"({"<pad>": 2, "<unk>": 1, "a": 0})", t, "vocab.json"), kModelFormat,
                     "expected \"<pad>\" with id 0 (text.tokenizer.pad_id), got id 2");
    EXPECT_VQA_ERROR(Vocab::parse(R"({"<pad>": 0, "<unk>": 1, "a": 2, "a": 3})", t, "vocab.json"), kModelFormat,
                     "vocab.json: duplicate key \"a\"");
    EXPECT_VQA_ERROR(Vocab::load("/nonexistent/vocab.json", t), kIo, "cannot open");
}

TEST(AnswersTest, ParseAndErrors) {
    EXPECT_EQ(parse_answers(R"(["yes", "no", "red"])", "answers.json"), (std::vector<std::string>{"yes", "no", "red"}));
    EXPECT_VQA_ERROR(parse_answers(R"({"0": "yes"})", "answers.json"), kModelFormat,
                     "answers.json: expected a JSON array of strings, got object");
    EXPECT_VQA_ERROR(parse_answers(R"(["yes", 2])", "answers.json"), kModelFormat,
                     "answers.json: [1]: expected a string, got 2");
    EXPECT_VQA_ERROR(parse_answers(R"(["yes", )", "answers.json"), kModelFormat, "answers.json: invalid JSON");
}

}  // namespace
}  // namespace vqa

namespace vqa {
namespace {

// tests/data/tokenizer_cases.json is written by tools/make_tokenizer_cases.py from the reference tokenizer:
// the C++ tokenizer must give exactly the same ids, lengths and truncation flags.
TEST(TokenizerParityTest, SameIdsAsReference) {
    const std::string root = VQA_SOURCE_DIR;
    std::ifstream in(root + "/tests/data/tokenizer_cases.json");
    ASSERT_TRUE(in) << "tests/data/tokenizer_cases.json is missing";
    const auto doc = nlohmann::json::parse(in);
    const std::string model = root + "/" + doc["model"].get<std::string>();
    const ModelConfig config = load_model_config(model + "/config.json");
    const Tokenizer tokenizer(config.text.tokenizer, Vocab::load(model + "/vocab.json", config.text.tokenizer));
    ASSERT_GE(doc["cases"].size(), 20u);
    for (const auto& c : doc["cases"]) {
        const std::string question = c["question"];
        const Tokenizer::Encoded got = tokenizer.encode(question);
        EXPECT_EQ(got.ids, c["ids"].get<std::vector<int64_t>>()) << "question: " << question;
        EXPECT_EQ(got.result.length, c["length"].get<int>()) << "question: " << question;
        EXPECT_EQ(got.result.truncated, c["truncated"].get<bool>()) << "question: " << question;
    }
}

}  // namespace
}  // namespace vqa

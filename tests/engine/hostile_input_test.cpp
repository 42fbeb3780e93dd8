// Inputs that the fuzzers (tests/fuzz) found to break the readers, kept as regression tests: JSON numbers past the
// range of a double, JSON nested deep enough to overflow the stack when a value is copied or printed, and image
// sizes whose pixel count overflows 64-bit signed arithmetic. Each must be a clean error of its file, image or
// batch line.
#include <climits>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/config.h"
#include "engine/image_io.h"
#include "engine/inputs.h"
#include "engine/json_util.h"
#include "engine/safetensors.h"
#include "engine/vocab.h"
#include "engine_test_util.h"
#include "tools/batch_line.h"

namespace vqa {
namespace {

std::string nested_arrays(int depth) {
    return std::string(static_cast<std::size_t>(depth), '[') + std::string(static_cast<std::size_t>(depth), ']');
}

TokenizerConfig tokenizer_rules() {
    TokenizerConfig rules;
    rules.max_length = 4;
    rules.pad_id = 0;
    rules.unk_id = 1;
    return rules;
}

TEST(HostileInputTest, NumberOutOfRangeIsAFormatError) {
    EXPECT_VQA_ERROR(parse_model_config(R"({"format": 1e400})"), kModelFormat, "number overflow");
    EXPECT_VQA_ERROR(Vocab::parse(R"({"<pad>": 0, "<unk>": -1e999})", tokenizer_rules(), "vocab.json"), kModelFormat,
                     "vocab.json: invalid JSON: number overflow");
    EXPECT_VQA_ERROR(parse_answers("[\"yes\", 2e308]", "answers.json"), kModelFormat, "answers.json");
}

TEST(HostileInputTest, DeepNestingIsAFormatError) {
    const std::string deep = nested_arrays(500'000);
    EXPECT_VQA_ERROR(parse_model_config("{\"format\": " + deep + "}"), kModelFormat, "nested deeper than 64");
    EXPECT_VQA_ERROR(Vocab::parse("{\"<pad>\": " + deep + "}", tokenizer_rules(), "vocab.json"), kModelFormat,
                     "vocab.json: JSON nested deeper than 64 levels");
    EXPECT_VQA_ERROR(parse_answers(deep, "answers.json"), kModelFormat, "nested deeper");
    // Up to the limit is only a type error.
    EXPECT_VQA_ERROR(parse_answers("[" + nested_arrays(kMaxJsonDepth - 1) + "]", "answers.json"), kModelFormat,
                     "[0]: expected a string");
}

TEST(HostileInputTest, SafetensorsHeaderWithDeepNestingOrHugeNumbersIsRefused) {
    test::TempDir dir;
    test::write_file(
        dir.file("deep.safetensors"),
        test::safetensors_bytes(
            "{\"t\": {\"dtype\": \"F32\", \"shape\": " + nested_arrays(100'000) + ", \"data_offsets\": [0, 0]}}", ""));
    EXPECT_VQA_ERROR(SafetensorsFile(dir.file("deep.safetensors")), kModelFormat, "nested deeper");
    test::write_file(
        dir.file("huge.safetensors"),
        test::safetensors_bytes(R"({"t": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}})", "\0\0\0\0"));
    EXPECT_VQA_ERROR(SafetensorsFile(dir.file("huge.safetensors")), kModelFormat, "number overflow");
}

TEST(HostileInputTest, BatchLineWithDeepNestingOrHugeNumbersFailsAlone) {
    std::set<std::string> seen;
    const tools::BatchLine deep = tools::parse_batch_line(
        "{\"id\": " + nested_arrays(500'000) + ", \"image\": \"a.png\", \"question\": \"q\"}", 1, "", seen);
    EXPECT_EQ(deep.error, "line 1: JSON nested deeper than 64 levels");
    const tools::BatchLine huge =
        tools::parse_batch_line(R"({"id": 1e400, "image": "a.png", "question": "q"})", 2, "", seen);
    EXPECT_EQ(huge.error, "line 2: not a JSON object");
    const tools::BatchLine fine =
        tools::parse_batch_line(R"({"id": [[1]], "image": "a.png", "question": "q"})", 3, "dir", seen);
    EXPECT_EQ(fine.error, "");
    EXPECT_EQ(fine.id.dump(), "[[1]]");
    EXPECT_EQ(fine.image, "dir/a.png");
}

TEST(HostileInputTest, PngHeaderOfFourBillionSquaredPixelsIsTooLarge) {
    // Signature, IHDR of 0xffffffff x 0xffffffff, then junk: stb refuses it, and our size check must not overflow.
    std::string png = "\x89PNG\r\n\x1a\n";
    png += std::string("\0\0\0\x0dIHDR", 8) + std::string(8, '\xff') + std::string(40, '\x11');
    EXPECT_VQA_ERROR(decode_image_memory(png.data(), png.size(), "huge.png"), kImageDecode,
                     "huge.png: image is 4294967295 x 4294967295 = 18446744065119617025 pixels, outside the limit");
}

TEST(HostileInputTest, PnmWithHugeNumbersMissingDataOrSixteenBitsIsRefused) {
    const std::string huge = "P5\n9 " + std::string(60, '2') + "\n255\n\x01";
    EXPECT_VQA_ERROR(decode_image_memory(huge.data(), huge.size(), "huge.pgm"), kImageDecode,
                     "huge.pgm: cannot decode image: PNM height is past 2147483647");
    const std::string truncated = "P6\n# a comment\n2 2\n255\n" + std::string(11, '\x7f');
    EXPECT_VQA_ERROR(decode_image_memory(truncated.data(), truncated.size(), "cut.ppm"), kImageDecode,
                     "cut.ppm: cannot decode image: truncated PNM: 11 bytes of pixel data, expected 12");
    // stb_image 2.27 reads 16-bit samples in the wrong byte order, and past its buffer for grey.
    const std::string grey16 = std::string("P5\n2 1\n65535\n") + "\x12\x34\xab\xcd";
    EXPECT_VQA_ERROR(decode_image_memory(grey16.data(), grey16.size(), "grey16.pgm"), kImageDecode,
                     "grey16.pgm: cannot decode image: 16-bit PNM (maxval 65535) is not supported");
    const std::string whole = truncated + "\x7f";
    EXPECT_EQ(decode_image_memory(whole.data(), whole.size(), "whole.ppm").pixels, std::vector<uint8_t>(12, 0x7f));
}

TEST(HostileInputTest, PixelsOfIntMaxSquaredAreRefusedWithoutOverflow) {
    const ModelConfig config =
        load_model_config(std::string(VQA_SOURCE_DIR) + "/tests/goldens/cnn_lstm_mcan_softmax/config.json");
    EXPECT_VQA_ERROR(
        prepare_grid_image(ImageInput::pixels(INT_MAX, INT_MAX, std::vector<uint8_t>(3), "big"), config, 64'000'000),
        kInvalidArgument, "big: expected 2147483647x2147483647x3 = 13835058042397261827 RGB bytes, got 3");
}

}  // namespace
}  // namespace vqa

#include "engine/safetensors.h"

#include <cmath>
#include <limits>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

#include <gtest/gtest.h>

#include "tests/engine/engine_test_util.h"

namespace vqa {
namespace {

using test::SafetensorsWriter;
using test::TempDir;

// Independent reference for F16: value = (-1)^s * m * 2^(e - 25) with the implicit bit, or m * 2^-24.
float half_reference(uint16_t bits) {
    const int sign = (bits >> 15) ? -1 : 1;
    const int exponent = (bits >> 10) & 0x1f;
    const int mantissa = bits & 0x3ff;
    if (exponent == 0x1f) {
        return mantissa ? std::numeric_limits<float>::quiet_NaN() : sign * std::numeric_limits<float>::infinity();
    }
    if (exponent == 0) {
        return static_cast<float>(sign * std::ldexp(mantissa, -24));
    }
    return static_cast<float>(sign * std::ldexp(1024 + mantissa, exponent - 25));
}

TEST(HalfConversion, AllBitPatternsExact) {
    for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
        const float found = half_to_float(static_cast<uint16_t>(bits));
        const float expected = half_reference(static_cast<uint16_t>(bits));
        if (std::isnan(expected)) {
            ASSERT_TRUE(std::isnan(found)) << "bits 0x" << std::hex << bits;
        } else {
            ASSERT_EQ(found, expected) << "bits 0x" << std::hex << bits;
            ASSERT_EQ(std::signbit(found), std::signbit(expected)) << "bits 0x" << std::hex << bits;
        }
    }
}

TEST(HalfConversion, BFloat16IsTheHighHalf) {
    EXPECT_EQ(bfloat16_to_float(0x3f80), 1.0f);
    EXPECT_EQ(bfloat16_to_float(0xc040), -3.0f);
    EXPECT_EQ(bfloat16_to_float(0x0001), std::ldexp(1.0f, -133));  // smallest subnormal
    EXPECT_TRUE(std::isinf(bfloat16_to_float(0xff80)));
}

class SafetensorsTest : public ::testing::Test {
protected:
    std::string write(const std::string& bytes) {
        const std::string path = dir_.file("model.safetensors");
        test::write_file(path, bytes);
        return path;
    }
    // A file with one tensor entry `entry` (the JSON object) and `data_bytes` zero bytes of data.
    std::string write_entry(const std::string& entry, std::size_t data_bytes = 16) {
        return write(test::safetensors_bytes("{\"t\":" + entry + "}", std::string(data_bytes, '\0')));
    }

    TempDir dir_;
};

TEST_F(SafetensorsTest, ReadsEveryDtype) {
    SafetensorsWriter w;
    w.set_metadata(R"({"format":"vqa-engine","format_version":"1"})");
    w.add<float>("a.f32", "F32", {2, 2}, {1.0f, -2.5f, 3.25f, 1e-20f});
    w.add<uint16_t>("b.f16", "F16", {3}, {0x3c00, 0xc000, 0x0001});
    w.add<uint16_t>("c.bf16", "BF16", {2}, {0x3f80, 0x4049});
    w.add<int64_t>("d.i64", "I64", {2}, {-5, int64_t{1} << 40});
    w.add<int32_t>("e.i32", "I32", {1, 2}, {7, -8});
    w.add<uint8_t>("f.u8", "U8", {3}, {0, 128, 255});
    w.add<float>("g.scalar", "F32", {}, {42.0f});
    w.add<float>("h.empty", "F32", {0, 4}, {});
    const SafetensorsFile file(write(w.bytes()));

    EXPECT_EQ(file.label(), "model.safetensors");
    EXPECT_EQ(file.size(), 8u);
    EXPECT_EQ(file.names().front(), "a.f32");
    EXPECT_EQ(file.metadata().at("format_version"), "1");
    EXPECT_EQ(file.to_float("a.f32"), (std::vector<float>{1.0f, -2.5f, 3.25f, 1e-20f}));
    EXPECT_EQ(file.to_float("b.f16"), (std::vector<float>{1.0f, -2.0f, std::ldexp(1.0f, -24)}));
    EXPECT_EQ(file.to_float("c.bf16"), (std::vector<float>{1.0f, 3.140625f}));
    EXPECT_EQ(file.as<int64_t>("d.i64"), (std::vector<int64_t>{-5, int64_t{1} << 40}));
    EXPECT_EQ(file.as<int64_t>("e.i32"), (std::vector<int64_t>{7, -8}));
    EXPECT_EQ(file.as<int32_t>("f.u8"), (std::vector<int32_t>{0, 128, 255}));
    EXPECT_EQ(file.to_float("g.scalar"), std::vector<float>{42.0f});
    EXPECT_EQ(file.info("g.scalar").numel, 1);
    EXPECT_TRUE(file.to_float("h.empty").empty());

    const TensorInfo& info = file.info("e.i32");
    EXPECT_EQ(info.dtype, DType::kI32);
    EXPECT_EQ(info.shape, (std::vector<int64_t>{1, 2}));
    EXPECT_EQ(file.raw("e.i32").size, 8u);
}

TEST_F(SafetensorsTest, ConversionErrors) {
    SafetensorsWriter w;
    w.add<int64_t>("big", "I64", {2}, {1, int64_t{1} << 33});
    w.add<int32_t>("negative", "I32", {1}, {-1});
    w.add<float>("weight", "F32", {1}, {1.0f});
    const SafetensorsFile file(write(w.bytes()));
    EXPECT_VQA_ERROR(file.as<int32_t>("big"), kModelFormat, "element 1 = 8589934592 does not fit");
    EXPECT_VQA_ERROR(file.as<uint8_t>("negative"), kModelFormat, "element 0 = -1 does not fit");
    EXPECT_VQA_ERROR(file.as<int64_t>("weight"), kModelFormat, "expected an integer dtype (I64, I32, U8), found F32");
    EXPECT_VQA_ERROR(file.to_float("big"), kModelFormat, "'big': expected a float dtype (F32, F16, BF16), found I64");
    EXPECT_VQA_ERROR(file.info("nope"), kModelFormat, "model.safetensors: no tensor 'nope'");
}

TEST_F(SafetensorsTest, MoveOnly) {
    static_assert(!std::is_copy_constructible_v<SafetensorsFile>);
    SafetensorsWriter w;
    w.add<float>("x", "F32", {1}, {2.0f});
    SafetensorsFile a(write(w.bytes()));
    SafetensorsFile b(std::move(a));
    EXPECT_EQ(b.to_float("x"), std::vector<float>{2.0f});
    SafetensorsWriter w2;
    w2.add<float>("y", "F32", {1}, {3.0f});
    test::write_file(dir_.file("other.safetensors"), w2.bytes());
    SafetensorsFile c(dir_.file("other.safetensors"));
    c = std::move(b);
    EXPECT_EQ(c.to_float("x"), std::vector<float>{2.0f});
    EXPECT_FALSE(c.contains("y"));
}

TEST_F(SafetensorsTest, MissingFileIsIoError) {
    EXPECT_VQA_ERROR(SafetensorsFile(dir_.file("absent.safetensors")), kIo, "absent.safetensors: cannot open");
    EXPECT_VQA_ERROR(SafetensorsFile(dir_.path()), kIo, "not a regular file");
}

TEST_F(SafetensorsTest, TooShortForLength) {
    EXPECT_VQA_ERROR(SafetensorsFile(write("")), kModelFormat, "file is 0 bytes, too short");
    EXPECT_VQA_ERROR(SafetensorsFile(write(std::string("\x02\x00\x00", 3))), kModelFormat,
                     "file is 3 bytes, too short");
}

TEST_F(SafetensorsTest, TruncatedHeader) {
    const std::string header = R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
    const std::string full = test::safetensors_bytes(header, std::string(4, '\0'));
    EXPECT_VQA_ERROR(SafetensorsFile(write(full.substr(0, 20))), kModelFormat,
                     "header length " + std::to_string(header.size()) + " exceeds the 12 bytes");
}

TEST_F(SafetensorsTest, HeaderLengthHuge) {
    EXPECT_VQA_ERROR(SafetensorsFile(write(test::safetensors_bytes("{}", "", ~uint64_t{0}))), kModelFormat,
                     "header length 18446744073709551615 exceeds");
}

TEST_F(SafetensorsTest, HeaderOverLimit) {
    // A sparse file just large enough for a header over the 100 MB limit (no disk space used).
    const std::string path = write(test::safetensors_bytes("", "", SafetensorsFile::kMaxHeaderBytes + 1));
    ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(SafetensorsFile::kMaxHeaderBytes + 9)), 0);
    EXPECT_VQA_ERROR(SafetensorsFile{path}, kModelFormat, "header length 100000001 exceeds the limit of 100000000");
}

TEST_F(SafetensorsTest, BadJson) {
    EXPECT_VQA_ERROR(SafetensorsFile(write(test::safetensors_bytes("{\"t\": [1, 2", ""))), kModelFormat,
                     "model.safetensors header: invalid JSON");
    EXPECT_VQA_ERROR(SafetensorsFile(write(test::safetensors_bytes("[1, 2]", ""))), kModelFormat,
                     "header must be a JSON object, found array");
    const std::string twice = R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                              R"("t":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})";
    EXPECT_VQA_ERROR(SafetensorsFile(write(test::safetensors_bytes(twice, "ab"))), kModelFormat, "duplicate key \"t\"");
}

TEST_F(SafetensorsTest, BadDtype) {
    EXPECT_VQA_ERROR(SafetensorsFile(write_entry(R"({"dtype":"F64","shape":[2],"data_offsets":[0,16]})")), kModelFormat,
                     "tensor 't': unsupported dtype \"F64\" (supported: F32, F16, BF16, I64, I32, U8)");
    EXPECT_VQA_ERROR(SafetensorsFile(write_entry(R"({"dtype":4,"shape":[1],"data_offsets":[0,4]})")), kModelFormat,
                     "dtype must be a string");
}

TEST_F(SafetensorsTest, BadEntryStructure) {
    EXPECT_VQA_ERROR(SafetensorsFile(write_entry(R"({"dtype":"F32","shape":[1]})")), kModelFormat,
                     "tensor 't': missing \"data_offsets\"");
    EXPECT_VQA_ERROR(SafetensorsFile(write_entry(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1})")),
                     kModelFormat, "unexpected key \"x\"");
    EXPECT_VQA_ERROR(SafetensorsFile(write_entry("[1]")), kModelFormat, "tensor 't': expected an object, found array");
    EXPECT_VQA_ERROR(SafetensorsFile(write_entry(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})")), kModelFormat,
                     "shape must be a list of non-negative ints, found [-1]");
    EXPECT_VQA_ERROR(SafetensorsFile(write_entry(R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})")),
                     kModelFormat, "shape must be a list of non-negative ints");
    EXPECT_VQA_ERROR(SafetensorsFile(write_entry(R"({"dtype":"F32","shape":[1],"data_offsets":[0]})")), kModelFormat,
                     "data_offsets must be [begin, end]");
    EXPECT_VQA_ERROR(SafetensorsFile(write(test::safetensors_bytes(R"({"__metadata__":{"format":1}})", ""))),
                     kModelFormat, "__metadata__.format: expected a string, found int");
}

TEST_F(SafetensorsTest, OffsetsOutOfRange) {
    EXPECT_VQA_ERROR(SafetensorsFile(write_entry(R"({"dtype":"F32","shape":[8],"data_offsets":[0,32]})", 16)),
                     kModelFormat, "tensor 't': data_offsets [0, 32] end past the 16 bytes of data");
    EXPECT_VQA_ERROR(SafetensorsFile(write_entry(R"({"dtype":"F32","shape":[0],"data_offsets":[8,4]})")), kModelFormat,
                     "data_offsets [8, 4] has begin > end");
}

TEST_F(SafetensorsTest, SizeMismatch) {
    EXPECT_VQA_ERROR(SafetensorsFile(write_entry(R"({"dtype":"F32","shape":[2,3],"data_offsets":[0,16]})", 32)),
                     kModelFormat,
                     "tensor 't': data_offsets [0, 16] span 16 bytes, expected 6 elements * 4 bytes (F32 [2, 3]) = 24");
}

TEST_F(SafetensorsTest, OverflowingShape) {
    EXPECT_VQA_ERROR(
        SafetensorsFile(write_entry(R"({"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,16]})")),
        kModelFormat, "element count that overflows 64 bits");
    EXPECT_VQA_ERROR(
        SafetensorsFile(write_entry(R"({"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,1]})")),
        kModelFormat, "shape must be a list of non-negative ints");
}

TEST_F(SafetensorsTest, Overlapping) {
    const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},)"
                               R"("e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})";
    EXPECT_VQA_ERROR(SafetensorsFile(write(test::safetensors_bytes(header, std::string(12, '\0')))), kModelFormat,
                     "tensors 'a' [0, 8) and 'b' [4, 12) overlap");
}

TEST_F(SafetensorsTest, EmptyTensorsShareOffsets) {
    const std::string header = R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                               R"("b":{"dtype":"I64","shape":[3,0],"data_offsets":[0,0]}})";
    const SafetensorsFile file(write(test::safetensors_bytes(header, "")));
    EXPECT_EQ(file.size(), 2u);
}

}  // namespace
}  // namespace vqa

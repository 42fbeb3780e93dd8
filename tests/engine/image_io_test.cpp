#include "engine/image_io.h"

#include <cstdio>
#include <cstdlib>
#include <png.h>

#include <gtest/gtest.h>

#include "tests/engine/engine_test_util.h"

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

namespace vqa {
namespace {

using test::TempDir;

constexpr int kWidth = 5;
constexpr int kHeight = 3;

// Sample (x, y, c) of an 8-bit test pattern with every value distinct enough to catch a swapped axis.
uint8_t pattern(int x, int y, int c) {
    return static_cast<uint8_t>(x * 40 + y * 13 + c * 70 + 3);
}

std::vector<uint8_t> pattern_image(int channels) {
    std::vector<uint8_t> pixels;
    for (int y = 0; y < kHeight; ++y) {
        for (int x = 0; x < kWidth; ++x) {
            for (int c = 0; c < channels; ++c) {
                pixels.push_back(pattern(x, y, c));
            }
        }
    }
    return pixels;
}

// Expected RGB from an image of `channels` samples per pixel: grey replicated, alpha dropped.
std::vector<uint8_t> expected_rgb(const std::vector<uint8_t>& pixels, int channels) {
    std::vector<uint8_t> rgb;
    for (std::size_t p = 0; p < pixels.size() / channels; ++p) {
        for (int c = 0; c < 3; ++c) {
            rgb.push_back(pixels[p * channels + (channels >= 3 ? c : 0)]);
        }
    }
    return rgb;
}

struct PngSpec {
    int color_type = PNG_COLOR_TYPE_RGB;
    int bit_depth = 8;
    bool interlaced = false;
    std::vector<png_color> palette;
    std::vector<uint8_t> alpha_of_palette;  // tRNS
};

// libpng writer for what stb_image_write cannot do: 16-bit, palette, sub-byte depths, interlacing.
void write_png(const std::string& path, const PngSpec& spec, const std::vector<std::vector<uint8_t>>& rows) {
    FILE* file = std::fopen(path.c_str(), "wb");
    ASSERT_NE(file, nullptr);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        std::fclose(file);
        FAIL() << "libpng failed writing " << path;
    }
    png_init_io(png, file);
    png_set_IHDR(png, info, kWidth, static_cast<png_uint_32>(rows.size()), spec.bit_depth, spec.color_type,
                 spec.interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (!spec.palette.empty()) {
        png_set_PLTE(png, info, spec.palette.data(), static_cast<int>(spec.palette.size()));
    }
    if (!spec.alpha_of_palette.empty()) {
        png_set_tRNS(png, info, spec.alpha_of_palette.data(), static_cast<int>(spec.alpha_of_palette.size()), nullptr);
    }
    png_write_info(png, info);
    std::vector<png_bytep> row_pointers;
    for (const auto& row : rows) {
        row_pointers.push_back(const_cast<png_bytep>(row.data()));
    }
    png_write_image(png, row_pointers.data());
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
    std::fclose(file);
}

class ImageIoTest : public ::testing::Test {
protected:
    // Writes an 8-bit PNG with stb_image_write and decodes it.
    ImageU8 roundtrip_stb_png(const std::vector<uint8_t>& pixels, int channels) {
        const std::string path = dir_.file("image.png");
        EXPECT_TRUE(stbi_write_png(path.c_str(), kWidth, kHeight, channels, pixels.data(), kWidth * channels));
        return decode_image_file(path);
    }

    TempDir dir_;
};

void expect_image(const ImageU8& image, const std::vector<uint8_t>& rgb) {
    EXPECT_EQ(image.width, kWidth);
    EXPECT_EQ(image.height, kHeight);
    EXPECT_EQ(image.pixels, rgb);
}

TEST_F(ImageIoTest, RgbPng) {
    const auto pixels = pattern_image(3);
    expect_image(roundtrip_stb_png(pixels, 3), pixels);
}

TEST_F(ImageIoTest, GreyIsReplicated) {
    const auto pixels = pattern_image(1);
    expect_image(roundtrip_stb_png(pixels, 1), expected_rgb(pixels, 1));
}

TEST_F(ImageIoTest, GreyAlphaDropsAlpha) {
    const auto pixels = pattern_image(2);
    expect_image(roundtrip_stb_png(pixels, 2), expected_rgb(pixels, 2));
}

TEST_F(ImageIoTest, RgbaDropsAlphaWithoutCompositing) {
    auto pixels = pattern_image(4);
    for (std::size_t i = 3; i < pixels.size(); i += 4) {
        pixels[i] = i % 8 == 3 ? 0 : 128;  // transparent and half-transparent pixels keep their colour
    }
    expect_image(roundtrip_stb_png(pixels, 4), expected_rgb(pixels, 4));
}

TEST_F(ImageIoTest, SixteenBitKeepsHighByte) {
    for (const int color_type : {PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA}) {
        const int channels = color_type == PNG_COLOR_TYPE_GRAY ? 1 : color_type == PNG_COLOR_TYPE_RGB ? 3 : 4;
        std::vector<std::vector<uint8_t>> rows;
        std::vector<uint8_t> high_bytes;
        for (int y = 0; y < kHeight; ++y) {
            std::vector<uint8_t> row;
            for (int x = 0; x < kWidth; ++x) {
                for (int c = 0; c < channels; ++c) {
                    const uint8_t high = pattern(x, y, c);
                    const uint8_t low = static_cast<uint8_t>(0xff - high);  // rounding would move the high byte
                    row.push_back(high);                                    // big-endian samples
                    row.push_back(low);
                    high_bytes.push_back(high);
                }
            }
            rows.push_back(row);
        }
        const std::string path = dir_.file("sixteen.png");
        PngSpec spec;
        spec.color_type = color_type;
        spec.bit_depth = 16;
        write_png(path, spec, rows);
        expect_image(decode_image_file(path), expected_rgb(high_bytes, channels));
    }
}

TEST_F(ImageIoTest, PaletteIsExpanded) {
    PngSpec spec;
    spec.color_type = PNG_COLOR_TYPE_PALETTE;
    spec.palette = {{255, 0, 0}, {0, 128, 0}, {10, 20, 30}, {200, 201, 202}};
    spec.alpha_of_palette = {255, 0, 128};  // tRNS: transparency must not change the colours
    std::vector<std::vector<uint8_t>> rows;
    std::vector<uint8_t> rgb;
    for (int y = 0; y < kHeight; ++y) {
        std::vector<uint8_t> row;
        for (int x = 0; x < kWidth; ++x) {
            const uint8_t index = static_cast<uint8_t>((x + y) % 4);
            row.push_back(index);
            const png_color& colour = spec.palette[index];
            rgb.insert(rgb.end(), {colour.red, colour.green, colour.blue});
        }
        rows.push_back(row);
    }
    const std::string path = dir_.file("palette.png");
    write_png(path, spec, rows);
    expect_image(decode_image_file(path), rgb);
}

TEST_F(ImageIoTest, OneBitGreyAndInterlaced) {
    PngSpec spec;
    spec.color_type = PNG_COLOR_TYPE_GRAY;
    spec.bit_depth = 1;
    spec.interlaced = true;
    std::vector<std::vector<uint8_t>> rows;
    std::vector<uint8_t> rgb;
    for (int y = 0; y < kHeight; ++y) {
        uint8_t packed = 0;
        for (int x = 0; x < kWidth; ++x) {
            const bool on = (x + y) % 2 == 0;
            packed |= static_cast<uint8_t>(on << (7 - x));
            rgb.insert(rgb.end(), 3, on ? 255 : 0);
        }
        rows.push_back({packed});
    }
    const std::string path = dir_.file("bits.png");
    write_png(path, spec, rows);
    expect_image(decode_image_file(path), rgb);
}

std::string fixture(const std::string& file) {
    return test::read_file(std::string(VQA_SOURCE_DIR) + "/tests/data/images/" + file);
}

TEST_F(ImageIoTest, JpegFromMemoryAndTruncated) {
    const std::string jpeg = fixture("rgb420_q90.jpg");
    ASSERT_FALSE(jpeg.empty());
    const ImageU8 image = decode_image_memory(jpeg.data(), jpeg.size(), "memory.jpg");
    EXPECT_EQ(std::string(image.pixels.begin(), image.pixels.end()), fixture("rgb420_q90.rgb"));

    // Truncated JPEG data is an error, not a partly grey image: at every cut point.
    EXPECT_VQA_ERROR(
        decode_image_memory(jpeg.data(), jpeg.size() * 2 / 3, "cut.jpg"), kImageDecode,
        "cut.jpg: cannot decode image: corrupt or truncated JPEG data (libjpeg: Premature end of JPEG file)");
    for (std::size_t size = 1; size < jpeg.size(); ++size) {
        EXPECT_THROW(decode_image_memory(jpeg.data(), size, "cut.jpg"), Error) << "cut at " << size;
    }
}

// Pillow (libjpeg-turbo) decodes of committed JPEGs: the engine must match them byte for byte.
class JpegParityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(JpegParityTest, MatchesReferenceDecode) {
    const std::string base = std::string(VQA_SOURCE_DIR) + "/tests/data/images/" + GetParam();
    const std::string expected = test::read_file(base + ".rgb");
    ASSERT_EQ(expected.size(), 17u * 12u * 3u) << base << ".rgb";
    const ImageU8 image = decode_image_file(base + ".jpg");
    EXPECT_EQ(image.width, 17);
    EXPECT_EQ(image.height, 12);
    EXPECT_EQ(std::string(image.pixels.begin(), image.pixels.end()), expected);
}

INSTANTIATE_TEST_SUITE_P(Fixtures,
                         JpegParityTest,
                         ::testing::Values("rgb420_q90", "rgb420_progressive", "cmyk"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST_F(ImageIoTest, EmptyFile) {
    const std::string path = dir_.file("empty.png");
    test::write_file(path, "");
    EXPECT_VQA_ERROR(decode_image_file(path), kImageDecode,
                     path + ": cannot decode image: the file is empty (0 bytes)");
}

TEST_F(ImageIoTest, TruncatedPng) {
    const std::string path = dir_.file("image.png");
    const auto pixels = pattern_image(3);
    ASSERT_TRUE(stbi_write_png(path.c_str(), kWidth, kHeight, 3, pixels.data(), kWidth * 3));
    const std::string bytes = test::read_file(path);
    test::write_file(path, bytes.substr(0, bytes.size() / 2));
    EXPECT_VQA_ERROR(decode_image_file(path), kImageDecode, path + ": cannot decode image: corrupt or truncated data");
    test::write_file(path, bytes.substr(0, 20));  // signature and part of IHDR
    EXPECT_VQA_ERROR(decode_image_file(path), kImageDecode, ": cannot decode image: not a recognised image format");
}

TEST_F(ImageIoTest, NotAnImage) {
    const std::string path = dir_.file("notes.txt");
    test::write_file(path, "What color is the shape?\n");
    EXPECT_VQA_ERROR(decode_image_file(path), kImageDecode,
                     path + ": cannot decode image: not a recognised image format");
    // Bytes without a signature would pass for TGA, which is disabled.
    const std::string tga_like("\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x02\x00\x18\x00", 18);
    EXPECT_VQA_ERROR(decode_image_memory(tga_like.data(), tga_like.size(), "x.tga"), kImageDecode, "not a recognised");
}

TEST_F(ImageIoTest, AbsurdDimensionsRefusedBeforeDecoding) {
    // A valid PNG signature and IHDR claiming 100000 x 100000 pixels, no data.
    const std::string header(
        "\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x01\x86\xa0\x00\x01\x86\xa0\x08\x02\x00\x00\x00"
        "\x00\x00\x00\x00",
        33);
    EXPECT_VQA_ERROR(decode_image_memory(header.data(), header.size(), "huge.png"), kImageDecode,
                     "huge.png: image is 100000 x 100000 = 10000000000 pixels, outside the limit of 1 to 64000000");

    // A JPEG whose SOF0 claims 30000 x 20000: refused after reading the header, before decoding.
    std::string jpeg = fixture("rgb420_q90.jpg");
    const std::size_t sof = jpeg.find("\xff\xc0");
    ASSERT_NE(sof, std::string::npos);
    jpeg.replace(sof + 5, 4, std::string("\x4e\x20\x75\x30", 4));  // height 20000, width 30000
    EXPECT_VQA_ERROR(decode_image_memory(jpeg.data(), jpeg.size(), "huge.jpg"), kImageDecode,
                     "huge.jpg: image is 30000 x 20000 = 600000000 pixels, outside the limit");

    const auto pixels = pattern_image(3);
    const std::string path = dir_.file("small.png");
    ASSERT_TRUE(stbi_write_png(path.c_str(), kWidth, kHeight, 3, pixels.data(), kWidth * 3));
    ImageDecodeOptions options;
    options.max_pixels = 14;
    EXPECT_VQA_ERROR(decode_image_file(path, options), kImageDecode, "5 x 3 = 15 pixels, outside the limit of 1 to 14");
    options.max_pixels = 15;
    EXPECT_EQ(decode_image_file(path, options).pixels.size(), 45u);
}

TEST_F(ImageIoTest, MissingFileIsIoError) {
    EXPECT_VQA_ERROR(decode_image_file(dir_.file("absent.png")), kIo, "absent.png: cannot open file");
}

}  // namespace
}  // namespace vqa

// Region feature files (engine/region_features.h): the openvqa fixture's .npz and .safetensors files read the
// same, answer through ImageInput::region_file with the fixture's expected logits, and every malformed file
// fails only the questions about it, with a message naming the file and the entry.
#include "engine/region_features.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#include <zip.h>

#include <gtest/gtest.h>

#include "engine/safetensors.h"
#include "vqa/engine.h"

namespace vqa {
namespace {

namespace fs = std::filesystem;

const fs::path kFixture = fs::path(VQA_SOURCE_DIR) / "tests" / "goldens-openvqa" / "mcan_tiny";
const fs::path kCompressed = fs::path(VQA_SOURCE_DIR) / "tests" / "data" / "regions" / "image0_compressed.npz";
constexpr int64_t kFeatureDim = 6;  // the fixture model's image.regions.feature_dim
constexpr double kRelTolerance = 1e-4;

void expect_same(const RegionFeatures& a, const RegionFeatures& b) {
    EXPECT_EQ(a.num_regions, b.num_regions);
    EXPECT_EQ(a.feature_dim, b.feature_dim);
    EXPECT_EQ(a.features, b.features);
    EXPECT_EQ(a.boxes, b.boxes);
    EXPECT_EQ(a.image_width, b.image_width);
    EXPECT_EQ(a.image_height, b.image_height);
}

std::string fixture(const std::string& name) {
    return (kFixture / name).string();
}

// A .npy file: format 1.0 header padded to 64 bytes, then `data`.
std::string npy(const std::string& descr, const std::string& shape, const std::string& data, bool fortran = false) {
    std::string header =
        "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") + ", 'shape': " + shape + ", }";
    header.append(63 - (10 + header.size()) % 64, ' ');
    header.push_back('\n');
    std::string out = "\x93NUMPY";
    out.push_back('\x01');
    out.push_back('\x00');
    out.push_back(static_cast<char>(header.size() & 0xff));
    out.push_back(static_cast<char>(header.size() >> 8));
    return out + header + data;
}

template <typename T>
std::string bytes_of(const std::vector<T>& values) {
    return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

using Entries = std::map<std::string, std::string>;  // "x.npy" -> file bytes

// Writes `entries` as a zip archive (deflated when `compress`), as np.savez / np.savez_compressed do.
void write_npz(const fs::path& path, const Entries& entries, bool compress = false) {
    int error = 0;
    zip_t* archive = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
    ASSERT_NE(archive, nullptr) << "zip_open " << error;
    for (const auto& [name, data] : entries) {
        zip_source_t* source = zip_source_buffer(archive, data.data(), data.size(), 0);
        ASSERT_NE(source, nullptr);
        const zip_int64_t index = zip_file_add(archive, name.c_str(), source, ZIP_FL_OVERWRITE);
        ASSERT_GE(index, 0) << zip_strerror(archive);
        zip_set_file_compression(archive, static_cast<zip_uint64_t>(index), compress ? ZIP_CM_DEFLATE : ZIP_CM_STORE,
                                 0);
    }
    ASSERT_EQ(zip_close(archive), 0);
}

// The fixture's image 0 as .npz entries (x [F, N] float32, bbox, image_w, image_h, num_bbox).
Entries image0_entries() {
    const RegionFeatures rf = load_region_features(fixture("image0.safetensors"), kFeatureDim);
    std::vector<float> x(rf.features.size());
    for (int64_t n = 0; n < rf.num_regions; ++n) {
        for (int64_t f = 0; f < rf.feature_dim; ++f) {
            x[f * rf.num_regions + n] = rf.features[n * rf.feature_dim + f];
        }
    }
    const std::string n = std::to_string(rf.num_regions);
    return {
        {"x.npy", npy("<f4", "(" + std::to_string(rf.feature_dim) + ", " + n + ")", bytes_of(x))},
        {"bbox.npy", npy("<f4", "(" + n + ", 4)", bytes_of(rf.boxes))},
        {"image_w.npy", npy("<i8", "()", bytes_of(std::vector<int64_t>{static_cast<int64_t>(rf.image_width)}))},
        {"image_h.npy", npy("<i8", "()", bytes_of(std::vector<int64_t>{static_cast<int64_t>(rf.image_height)}))},
        {"num_bbox.npy", npy("<i8", "()", bytes_of(std::vector<int64_t>{rf.num_regions}))},
    };
}

TEST(RegionFeaturesTest, NpzAndSafetensorsReadTheSame) {
    for (int i = 0; i < 3; ++i) {
        SCOPED_TRACE("image" + std::to_string(i));
        const RegionFeatures npz = load_region_features(fixture("image" + std::to_string(i) + ".npz"), kFeatureDim);
        const RegionFeatures st =
            load_region_features(fixture("image" + std::to_string(i) + ".safetensors"), kFeatureDim);
        EXPECT_GT(npz.num_regions, 0);
        EXPECT_EQ(npz.feature_dim, kFeatureDim);
        expect_same(npz, st);
    }
}

// np.savez_compressed (deflated entries), x in float64 with fortran_order True, image_w float32, image_h int32.
TEST(RegionFeaturesTest, CompressedFortranOrderNpz) {
    expect_same(load_region_features(kCompressed.string(), kFeatureDim),
                load_region_features(fixture("image0.safetensors"), kFeatureDim));
}

TEST(RegionFeaturesTest, WrittenEntriesStoredAndDeflated) {
    const fs::path dir = fs::path(::testing::TempDir());
    const RegionFeatures want = load_region_features(fixture("image0.safetensors"), kFeatureDim);
    for (bool compress : {false, true}) {
        const fs::path path = dir / (compress ? "written_deflated.npz" : "written_stored.npz");
        write_npz(path, image0_entries(), compress);
        expect_same(load_region_features(path.string(), 0), want);
    }
}

TEST(RegionFeaturesTest, NpyHeaders) {
    const auto parse = [](const std::string& bytes) {
        return parse_npy(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size(), "t.npy");
    };
    const NpyArray a = parse(npy("<i4", "(2, 3)", bytes_of(std::vector<int32_t>{1, 2, 3, 4, 5, 6}), true));
    EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(a.values, (std::vector<double>{1, 3, 5, 2, 4, 6}));  // fortran order, read back row-major
    // Format 2.0: a 4-byte header length.
    std::string v2 = npy("|u1", "(3,)", "\x01\x02\x03");
    v2[6] = '\x02';
    v2.insert(10, 2, '\0');
    EXPECT_EQ(parse(v2).values, (std::vector<double>{1, 2, 3}));

    const auto expect_error = [&](const std::string& bytes, const std::string& part) {
        try {
            parse(bytes);
            ADD_FAILURE() << "no error, expected one with \"" << part << "\"";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
            EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("t.npy"), std::string::npos) << e.what();
        }
    };
    expect_error("NUMPY", "magic");
    expect_error(npy("<f4", "(2,)", "12345678").substr(0, 20), "header of");
    expect_error(npy(">f4", "(2,)", "12345678"), "unsupported dtype '>f4'");
    expect_error(npy("<f4", "(3,)", "12345678"), "needs 12 data bytes, the entry holds 8");
    expect_error(npy("<f4", "(2, -1)", "12345678"), "expected a dimension");
    expect_error(npy("<f4", "(99999999999999, 99999999999999)", "1234"), "too large");
    std::string bad_key = npy("<f4", "(2,)", "12345678");
    bad_key.replace(bad_key.find("descr"), 5, "descx");
    expect_error(bad_key, "unexpected key 'descx'");
}

// Answers every fixture question through region files (.npz, .safetensors) and checks the expected logits.
void expect_fixture_logits(const std::string& extension) {
    const Engine engine = Engine::load(kFixture.string(), EngineOptions{Device::kCpu});
    std::ifstream in(kFixture / "questions.json");
    const auto questions = nlohmann::json::parse(in);
    std::vector<Query> queries;
    for (const auto& q : questions) {
        queries.push_back({q.at("image").get<int64_t>(), q.at("question").get<std::string>()});
    }
    std::vector<ImageInput> images;
    for (int i = 0; i < 3; ++i) {
        images.push_back(ImageInput::region_file(fixture("image" + std::to_string(i) + extension)));
    }
    const SafetensorsFile expected(fixture("expected.safetensors"));
    const std::vector<float> logits = expected.to_float("logits");  // [Q, A]
    const int64_t A = expected.info("logits").shape[1];
    AnswerOptions options;
    options.top_k = static_cast<int>(A);
    const std::vector<Result> results = engine.answer(images, queries, options);
    ASSERT_EQ(results.size(), queries.size());
    for (std::size_t q = 0; q < results.size(); ++q) {
        SCOPED_TRACE("question " + std::to_string(q));
        ASSERT_TRUE(results[q].ok) << results[q].error;
        const float* row = &logits[q * static_cast<std::size_t>(A)];
        float max_abs = 0.0f;
        for (int64_t a = 0; a < A; ++a) {
            max_abs = std::max(max_abs, std::fabs(row[a]));
        }
        for (const Answer& answer : results[q].answers) {
            const double s = answer.score;  // sigmoid(logit), inverted as openvqa_parity_test does
            const double got = std::log(s / (1.0 - s));
            EXPECT_LE(std::fabs(got - row[answer.id]), kRelTolerance * max_abs) << "answer " << answer.id;
        }
    }
}

TEST(RegionFeaturesTest, NpzFilesGiveExpectedLogits) {
    expect_fixture_logits(".npz");
}

TEST(RegionFeaturesTest, SafetensorsFilesGiveExpectedLogits) {
    expect_fixture_logits(".safetensors");
}

TEST(RegionFeaturesTest, ZeroRegionsAreAllMasked) {
    const fs::path path = fs::path(::testing::TempDir()) / "zero_regions.npz";
    write_npz(path, {{"x.npy", npy("<f4", "(6, 0)", "")},
                     {"bbox.npy", npy("<f4", "(0, 4)", "")},
                     {"image_w.npy", npy("<i8", "()", bytes_of(std::vector<int64_t>{640}))},
                     {"image_h.npy", npy("<i8", "()", bytes_of(std::vector<int64_t>{480}))}});
    const RegionFeatures rf = load_region_features(path.string(), kFeatureDim);
    EXPECT_EQ(rf.num_regions, 0);
    EXPECT_TRUE(rf.features.empty());
    const Engine engine = Engine::load(kFixture.string(), EngineOptions{Device::kCpu});
    const std::vector<Result> r = engine.answer(ImageInput::region_file(path.string()), {"what is it?"});
    ASSERT_EQ(r.size(), 1u);
    EXPECT_TRUE(r[0].ok) << r[0].error;
}

// Each broken file fails its own question, with its code and a message naming the file and what is wrong; the
// good file's question in the same call is answered.
TEST(RegionFeaturesTest, BrokenFilesFailOnlyTheirQuestions) {
    const fs::path dir = fs::path(::testing::TempDir()) / "broken_regions";
    fs::create_directories(dir);
    struct Case {
        std::string name;
        ErrorCode code;
        std::string message;  // a part of the error
    };
    std::vector<Case> cases;
    const auto add = [&](const std::string& name, const Entries& entries, ErrorCode code, const std::string& msg) {
        write_npz(dir / name, entries);
        cases.push_back({name, code, msg});
    };
    Entries e = image0_entries();
    e["x.npy"] = npy("<i4", "(6, 5)", std::string(120, '\0'));
    add("wrong_descr.npz", e, ErrorCode::kInvalidArgument, "x.npy: expected float32 or float64");
    e = image0_entries();
    e["x.npy"] = npy("<f4", "(6, 6)", e["x.npy"].substr(e["x.npy"].size() - 120));
    add("shape_mismatch.npz", e, ErrorCode::kInvalidArgument, "x.npy: shape [6, 6] of '<f4' needs 144 data bytes");
    e = image0_entries();
    e.erase("x.npy");
    add("missing_x.npz", e, ErrorCode::kInvalidArgument, "no x.npy entry");
    e = image0_entries();
    e["x.npy"] = npy("<f4", "(4, 5)", e["x.npy"].substr(e["x.npy"].size() - 80));
    add("wrong_f.npz", e, ErrorCode::kInvalidArgument, "4 features per region, the model expects 6");
    e = image0_entries();
    e["bbox.npy"] = npy("<f4", "(4, 4)", std::string(64, '\0'));
    add("wrong_bbox.npz", e, ErrorCode::kInvalidArgument, "bbox.npy: expected shape [5, 4]");
    e = image0_entries();
    e["num_bbox.npy"] = npy("<i8", "()", bytes_of(std::vector<int64_t>{7}));
    add("wrong_num_bbox.npz", e, ErrorCode::kInvalidArgument, "num_bbox.npy says 7 regions");
    {
        std::ifstream in(fixture("image0.npz"), std::ios::binary);
        const std::string whole((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::ofstream(dir / "truncated.npz", std::ios::binary) << whole.substr(0, whole.size() / 2);
        cases.push_back({"truncated.npz", ErrorCode::kInvalidArgument, "not a readable .npz (zip) archive"});
    }
    std::ofstream(dir / "garbage.safetensors", std::ios::binary) << "not a safetensors file";
    cases.push_back({"garbage.safetensors", ErrorCode::kInvalidArgument, "garbage.safetensors"});
    cases.push_back({"missing.npz", ErrorCode::kIo, "missing.npz"});

    const Engine engine = Engine::load(kFixture.string(), EngineOptions{Device::kCpu});
    std::vector<ImageInput> images = {ImageInput::region_file(fixture("image0.npz"))};
    std::vector<Query> queries = {{0, "what is it?"}};
    for (const Case& c : cases) {
        queries.push_back({static_cast<int64_t>(images.size()), "what is it?"});
        images.push_back(ImageInput::region_file((dir / c.name).string()));
    }
    const std::vector<Result> results = engine.answer(images, queries);
    ASSERT_EQ(results.size(), queries.size());
    EXPECT_TRUE(results[0].ok) << results[0].error;
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const Result& r = results[i + 1];
        SCOPED_TRACE(cases[i].name);
        ASSERT_FALSE(r.ok);
        EXPECT_EQ(r.error_code, cases[i].code) << r.error;
        EXPECT_NE(r.error.find(cases[i].name), std::string::npos) << r.error;
        EXPECT_NE(r.error.find(cases[i].message), std::string::npos) << r.error;
    }
}

TEST(RegionFeaturesTest, RegionFileOnAGridModelFails) {
    const Engine engine =
        Engine::load((fs::path(VQA_SOURCE_DIR) / "models" / "easy-vqa").string(), EngineOptions{Device::kCpu});
    const std::vector<Result> r = engine.answer(ImageInput::region_file(fixture("image0.npz")), {"what color?"});
    ASSERT_EQ(r.size(), 1u);
    EXPECT_FALSE(r[0].ok);
    EXPECT_EQ(r[0].error_code, ErrorCode::kInvalidArgument);
    EXPECT_NE(r[0].error.find("takes images, not region features"), std::string::npos) << r[0].error;
}

}  // namespace
}  // namespace vqa

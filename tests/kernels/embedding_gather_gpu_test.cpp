// CUDA embedding gather against the CPU reference (cpu::embedding_gather): every row bit-exact, int32 and int64
// ids, repeated ids, V = 1, row lengths around the word widths, misaligned pointers (narrower words), and
// out-of-range ids, which the GPU contract answers with zero rows and the error flag (the CPU reference throws).
#include <algorithm>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/embedding_gather.h"
#include "kernels/embedding_gather.h"
#include "tests/kernels/gpu_case.h"
#include "tests/kernels/test_util.h"
#include "vqa/error.h"

namespace vqa {
namespace {

using test::Precision;

enum class BadIds {
    kNone,      // every id in [0, V)
    kWithFlag,  // a few ids outside [0, V), an error flag given
    kNoFlag,    // the same ids, no flag (null)
};

struct Case {
    int64_t n = 1;      // ids
    int64_t vocab = 1;  // V
    int64_t dim = 1;    // E
    Precision precision = Precision::kFp32;
    bool int64_ids = false;
    int misalign = 0;  // table and out start this many elements late
    BadIds bad = BadIds::kNone;
};

// n33_V100_E257_fp16_i64, with _off<n>, _bad and _bad_noflag.
std::string case_string(const Case& c) {
    std::string name = "n" + std::to_string(c.n) + "_V" + std::to_string(c.vocab) + "_E" + std::to_string(c.dim) + "_" +
                       test::precision_name(c.precision) + (c.int64_ids ? "_i64" : "_i32");
    if (c.misalign != 0) {
        name += "_off" + std::to_string(c.misalign);
    }
    if (c.bad == BadIds::kWithFlag) {
        name += "_bad";
    } else if (c.bad == BadIds::kNoFlag) {
        name += "_bad_noflag";
    }
    return name;
}
void PrintTo(const Case& c, std::ostream* out) {
    *out << case_string(c);
}

std::vector<Case> grid_cases() {
    std::vector<Case> cases;
    for (const int64_t dim : {1, 2, 31, 32, 33, 64, 255, 256, 512, 1023, 1024, 1025, 2048, 3000}) {
        for (const Precision precision : test::kPrecisions) {
            for (const bool int64_ids : {false, true}) {
                cases.push_back({33, 100, dim, precision, int64_ids});
            }
        }
    }
    for (const Precision precision : test::kPrecisions) {
        for (const bool int64_ids : {false, true}) {
            cases.push_back({1, 1, 300, precision, int64_ids});      // V = 1, one id
            cases.push_back({1000, 1, 64, precision, int64_ids});    // V = 1: every id repeats row 0
            cases.push_back({2, 7, 1024, precision, int64_ids});     // two ids
            cases.push_back({1000, 50, 300, precision, int64_ids});  // many repeats
            cases.push_back({33, 100, 256, precision, int64_ids, 1});
            cases.push_back({33, 100, 255, precision, int64_ids, 3});
            cases.push_back({33, 100, 256, precision, int64_ids, 0, BadIds::kWithFlag});
            cases.push_back({33, 100, 33, precision, int64_ids, 1, BadIds::kWithFlag});
            cases.push_back({33, 100, 256, precision, int64_ids, 0, BadIds::kNoFlag});
        }
    }
    return cases;
}

// Ids in [0, V) from a fixed seed, with ids[1] = ids[0] (a repeat even when n <= V).
template <typename Id>
std::vector<Id> make_ids(int64_t n, int64_t vocab) {
    const std::vector<float> u = test::random_vector(static_cast<size_t>(n), 61, 0.0f, 1.0f);
    std::vector<Id> ids(static_cast<size_t>(n));
    for (size_t i = 0; i < ids.size(); ++i) {
        ids[i] = static_cast<Id>(std::min<int64_t>(static_cast<int64_t>(u[i] * static_cast<float>(vocab)), vocab - 1));
    }
    if (n >= 2) {
        ids[1] = ids[0];
    }
    return ids;
}

template <typename T, typename Id>
void check_embedding_gather(const Case& c) {
    const int64_t n = c.n;
    const int64_t E = c.dim;
    const std::vector<float> table = test::round_to<T>(test::random_vector(static_cast<size_t>(c.vocab * E), 62));
    std::vector<Id> ids = make_ids<Id>(n, c.vocab);
    std::vector<bool> is_bad(static_cast<size_t>(n), false);
    if (c.bad != BadIds::kNone) {
        // Just below and just above the table, and far past it (beyond 32 bits for int64 ids).
        const Id far = std::is_same_v<Id, int64_t> ? static_cast<Id>(int64_t{1} << 40) : std::numeric_limits<Id>::max();
        const Id bad_values[] = {static_cast<Id>(-1), static_cast<Id>(c.vocab), far, std::numeric_limits<Id>::min()};
        const size_t positions[] = {0, static_cast<size_t>(n / 2), static_cast<size_t>(n - 1), 2};
        for (int k = 0; k < 4; ++k) {
            ids[positions[k]] = bad_values[k];
            is_bad[positions[k]] = true;
        }
        // The CPU reference rejects the whole call instead.
        std::vector<float> unused(static_cast<size_t>(n * E));
        EXPECT_THROW(cpu::embedding_gather(ids.data(), n, table.data(), c.vocab, E, unused.data()), Error);
    }

    // Expected: the reference on the valid ids (bad ones replaced by 0), then zero rows where the ids were bad.
    std::vector<Id> valid_ids = ids;
    for (size_t i = 0; i < valid_ids.size(); ++i) {
        if (is_bad[i]) {
            valid_ids[i] = 0;
        }
    }
    std::vector<float> expected(static_cast<size_t>(n * E));
    cpu::embedding_gather(valid_ids.data(), n, table.data(), c.vocab, E, expected.data());
    for (int64_t i = 0; i < n; ++i) {
        if (is_bad[static_cast<size_t>(i)]) {
            std::fill_n(expected.begin() + i * E, E, 0.0f);
        }
    }

    test::CudaStream stream;
    test::DeviceBuffer<Id> ids_dev(ids.size());
    test::DeviceBuffer<T> table_dev(table.size(), c.misalign);
    test::DeviceBuffer<T> out_dev(expected.size(), c.misalign);
    test::DeviceBuffer<int> flag_dev(1);
    ids_dev.upload(ids);
    table_dev.upload(test::from_float<T>(table));
    out_dev.poison_nan();
    flag_dev.upload({0});
    cuda::embedding_gather<T, Id>(ids_dev.data(), n, table_dev.data(), c.vocab, E, out_dev.data(),
                                  c.bad == BadIds::kNoFlag ? nullptr : flag_dev.data(), stream.get());
    stream.synchronize();

    EXPECT_TRUE(test::all_close(test::to_float(out_dev.download()), expected, test::kExact, {n, E}));
    EXPECT_EQ(flag_dev.download()[0], c.bad == BadIds::kWithFlag ? 1 : 0) << "error flag";
    EXPECT_TRUE(ids_dev.check_guards());
    EXPECT_TRUE(table_dev.check_guards());
    EXPECT_TRUE(out_dev.check_guards());
    EXPECT_TRUE(flag_dev.check_guards());
}

class EmbeddingGatherGpuTest : public ::testing::TestWithParam<Case> {};

TEST_P(EmbeddingGatherGpuTest, MatchesReference) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    const Case& c = GetParam();
    test::with_element_type(c.precision, [&](auto element) {
        using T = decltype(element);
        if (c.int64_ids) {
            check_embedding_gather<T, int64_t>(c);
        } else {
            check_embedding_gather<T, int32_t>(c);
        }
    });
}

INSTANTIATE_TEST_SUITE_P(Grid, EmbeddingGatherGpuTest, ::testing::ValuesIn(grid_cases()), test::case_name<Case>);

}  // namespace
}  // namespace vqa

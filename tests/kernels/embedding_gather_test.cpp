// CPU embedding gather: rows copied exactly for int32 and int64 ids, repeated ids, and the bounds check.
#include "kernels/cpu/embedding_gather.h"

#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/kernels/test_util.h"
#include "vqa/error.h"

namespace vqa::cpu {
namespace {

using test::all_close;
using test::random_vector;

template <typename Id>
void check_gather(int64_t n, int64_t V, int64_t E) {
    SCOPED_TRACE("n " + std::to_string(n) + " V " + std::to_string(V) + " E " + std::to_string(E));
    const std::vector<float> table = random_vector(V * E, 1);
    std::vector<Id> ids(n);
    for (int64_t i = 0; i < n; ++i) {
        ids[i] = static_cast<Id>((i * 7 + 3) % V);  // repeats ids when n > V; hits 0 and V - 1 over the range
    }
    std::vector<float> out(n * E);
    test::poison_nan(out);
    embedding_gather(ids.data(), n, table.data(), V, E, out.data());
    std::vector<float> expected(n * E);
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t e = 0; e < E; ++e) {
            expected[i * E + e] = table[static_cast<int64_t>(ids[i]) * E + e];
        }
    }
    EXPECT_TRUE(all_close(out, expected, test::kExact, {n, E}));  // a copy: bit-exact
}

TEST(EmbeddingGather, CopiesRowsInt32) {
    check_gather<int32_t>(1, 1, 1);
    check_gather<int32_t>(14, 7, 33);
    check_gather<int32_t>(100, 1000, 300);
}

TEST(EmbeddingGather, CopiesRowsInt64) {
    check_gather<int64_t>(2, 3, 31);
    check_gather<int64_t>(32, 100, 32);
}

// Runs f, expects a vqa::Error(kInvalidArgument) whose message contains `needle`.
template <typename F>
void expect_invalid_argument(F&& f, const std::string& needle) {
    try {
        f();
        ADD_FAILURE() << "expected vqa::Error containing \"" << needle << "\"";
    } catch (const Error& error) {
        EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
        EXPECT_NE(std::string(error.what()).find(needle), std::string::npos) << error.what();
    }
}

TEST(EmbeddingGather, OutOfRangeIdThrowsWithIdAndVocabSize) {
    const std::vector<float> table = random_vector(5 * 4, 2);
    std::vector<float> out(3 * 4, 7.0f);
    const std::vector<int32_t> too_large = {0, 5, 1};
    expect_invalid_argument([&] { embedding_gather(too_large.data(), 3, table.data(), 5, 4, out.data()); },
                            "id 5 at position 1 is outside the table [0, 5)");
    const std::vector<int64_t> negative = {-1};
    expect_invalid_argument([&] { embedding_gather(negative.data(), 1, table.data(), 5, 4, out.data()); },
                            "id -1 at position 0");
    EXPECT_TRUE(all_close(out, std::vector<float>(12, 7.0f), test::kExact)) << "nothing is written before the check";
}

}  // namespace
}  // namespace vqa::cpu

// The runs of packed sequences (engine/packing.h): which rows are kept, where each sequence starts, and the
// fully masked rule's exception.
#include "engine/packing.h"

#include <cstdint>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "tests/engine/engine_test_util.h"

namespace vqa {
namespace {

using Rows = std::vector<int32_t>;

TEST(PackingTest, PrefixesKeepEachQuestionsLengthInOrder) {
    const std::vector<int64_t> lengths{3, 1, 4};
    const PackedSequences p = pack_prefixes(lengths.data(), 3, 4);
    EXPECT_EQ(p.source, (Rows{0, 1, 2, 4, 8, 9, 10, 11}));
    EXPECT_EQ(p.offsets, (Rows{0, 3, 4, 8}));
    EXPECT_EQ(p.starts, (Rows{0, 3, 4}));
    EXPECT_EQ(p.counts, (Rows{3, 1, 4}));
    EXPECT_TRUE(p.mask.empty());
    EXPECT_EQ(p.longest, 4);
    EXPECT_EQ(p.total(), 8);
    const SequenceRows v = p.view();
    EXPECT_TRUE(v.packed());
    EXPECT_EQ(v.batch, 3);
    EXPECT_EQ(v.len, 4);
    EXPECT_EQ(v.rows, 8);
    EXPECT_EQ(v.mask, nullptr);
    EXPECT_EQ(v.offsets, p.offsets.data());
}

TEST(PackingTest, PrefixLengthsOutsideOneToLAreRefused) {
    const std::vector<int64_t> zero{2, 0};
    EXPECT_VQA_ERROR(pack_prefixes(zero.data(), 2, 4), kInvalidArgument, "sequence 1 has length 0");
    const std::vector<int64_t> long_one{5};
    EXPECT_VQA_ERROR(pack_prefixes(long_one.data(), 1, 4), kInvalidArgument, "expected 1..4");
}

TEST(PackingTest, ValidRowsAreKeptWhereverTheyAre) {
    // Image 0: rows 1 and 3 valid (zero rows before, between and after); image 1: all valid.
    const std::vector<uint8_t> valid{0, 1, 0, 1, 1, 1, 1, 1};
    const PackedSequences p = pack_valid_rows(valid.data(), 2, 4, /*keep_empty_whole=*/true);
    EXPECT_EQ(p.source, (Rows{1, 3, 4, 5, 6, 7}));
    EXPECT_EQ(p.offsets, (Rows{0, 2, 6}));
    EXPECT_EQ(p.counts, (Rows{2, 4}));
    EXPECT_TRUE(p.mask.empty()) << "every kept row is valid: no mask";
    EXPECT_EQ(p.longest, 4);
}

// An image without a valid row attends uniformly to all its padded rows under the "uniform" rule, so it keeps them
// (masked); under the "zero" rule its outputs are zero whatever its length, so one masked row stands for it.
TEST(PackingTest, AnImageWithoutValidRowsFollowsTheMaskedRowRule) {
    const std::vector<uint8_t> valid{1, 0, 1, 0, 0, 0};
    const PackedSequences uniform = pack_valid_rows(valid.data(), 2, 3, /*keep_empty_whole=*/true);
    EXPECT_EQ(uniform.source, (Rows{0, 2, 3, 4, 5}));
    EXPECT_EQ(uniform.counts, (Rows{2, 3}));
    EXPECT_EQ(uniform.mask, (std::vector<uint8_t>{1, 1, 0, 0, 0}));
    EXPECT_NE(uniform.view().mask, nullptr);

    const PackedSequences zero = pack_valid_rows(valid.data(), 2, 3, /*keep_empty_whole=*/false);
    EXPECT_EQ(zero.source, (Rows{0, 2, 3}));
    EXPECT_EQ(zero.counts, (Rows{2, 1}));
    EXPECT_EQ(zero.mask, (std::vector<uint8_t>{1, 1, 0}));

    EXPECT_VQA_ERROR(pack_valid_rows(valid.data(), 2, 0, true), kInvalidArgument, "at least one token");
}

TEST(PackingTest, RepeatedRunsGiveEveryQuestionItsImagesRows) {
    const std::vector<uint8_t> valid{1, 0, 1, 0, 0, 0, 1, 1, 1};
    const PackedSequences images = pack_valid_rows(valid.data(), 3, 3, /*keep_empty_whole=*/true);
    ASSERT_EQ(images.offsets, (Rows{0, 2, 5, 8}));
    const std::vector<int64_t> index{2, 0, 0, 1};
    const PackedSequences q = repeat_runs(images, index.data(), 4);
    // Sources index the packed image rows.
    EXPECT_EQ(q.source, (Rows{5, 6, 7, 0, 1, 0, 1, 2, 3, 4}));
    EXPECT_EQ(q.offsets, (Rows{0, 3, 5, 7, 10}));
    EXPECT_EQ(q.counts, (Rows{3, 2, 2, 3}));
    EXPECT_EQ(q.mask, (std::vector<uint8_t>{1, 1, 1, 1, 1, 1, 1, 0, 0, 0}));
    EXPECT_EQ(q.longest, 3);

    const std::vector<int64_t> bad{3};
    EXPECT_VQA_ERROR(repeat_runs(images, bad.data(), 1), kInvalidArgument, "refers to run 3 of 3");
}

TEST(PackingTest, SharedRunsPointAtTheImagesRowsInPlace) {
    const std::vector<uint8_t> valid{1, 1, 0, 0, 1, 0};
    const PackedSequences images = pack_valid_rows(valid.data(), 2, 3, /*keep_empty_whole=*/false);
    const std::vector<int64_t> index{1, 1, 0};
    const SharedRuns shared = share_runs(images, index.data(), 3);
    EXPECT_EQ(shared.starts, (Rows{2, 2, 0}));
    EXPECT_EQ(shared.counts, (Rows{1, 1, 2}));
    const SequenceRows v = shared.view(images);
    EXPECT_TRUE(v.packed());
    EXPECT_EQ(v.offsets, nullptr) << "overlapping runs have no offsets: they can be keys, never queries";
    EXPECT_EQ(v.rows, images.total());
    EXPECT_EQ(v.len, 2);
    const std::vector<int64_t> bad{-1};
    EXPECT_VQA_ERROR(share_runs(images, bad.data(), 1), kInvalidArgument, "refers to run -1");
}

TEST(PackingTest, PaddingToAMultipleAddsRowsNoSequenceOwns) {
    const std::vector<uint8_t> valid{1, 0, 1, 0, 0, 0};
    PackedSequences p = pack_valid_rows(valid.data(), 2, 3, /*keep_empty_whole=*/true);
    pad_rows_to_multiple(p, 4);
    EXPECT_EQ(p.source, (Rows{0, 2, 3, 4, 5, 0, 0, 0}));
    EXPECT_EQ(p.mask, (std::vector<uint8_t>{1, 1, 0, 0, 0, 0, 0, 0}));
    EXPECT_EQ(p.offsets, (Rows{0, 2, 5})) << "the runs are unchanged";
    EXPECT_EQ(p.view().rows, 8);
    pad_rows_to_multiple(p, 4);
    EXPECT_EQ(p.total(), 8) << "already a multiple";
    const std::vector<int64_t> lengths{3};
    PackedSequences text = pack_prefixes(lengths.data(), 1, 4);
    pad_rows_to_multiple(text, 2);
    EXPECT_EQ(text.source, (Rows{0, 1, 2, 0}));
    EXPECT_TRUE(text.mask.empty());
    EXPECT_VQA_ERROR(pad_rows_to_multiple(text, 0), kInvalidArgument, "step");
    pad_rows_to(text, 6);
    EXPECT_EQ(text.source, (Rows{0, 1, 2, 0, 0, 0}));
    EXPECT_VQA_ERROR(pad_rows_to(text, 5), kInvalidArgument, "fewer than the 6");
    PackedSequences none;
    pad_rows_to(none, 8);
    EXPECT_EQ(none.total(), 0) << "no runs, no rows";
}

TEST(PackingTest, AttentionParamsPointAtTheRuns) {
    const std::vector<int64_t> lengths{2, 3};
    const PackedSequences text = pack_prefixes(lengths.data(), 2, 4);
    cpu::AttentionParams params;
    set_packed_runs(params, SequenceRows::padded(2, 4, nullptr), SequenceRows::padded(2, 4, nullptr), "padded");
    EXPECT_FALSE(params.packed());
    set_packed_runs(params, text.view(), text.view(), "self");
    EXPECT_EQ(params.q_offsets, text.offsets.data());
    EXPECT_EQ(params.kv_start, text.starts.data());
    EXPECT_EQ(params.kv_count, text.counts.data());
    EXPECT_VQA_ERROR(set_packed_runs(params, text.view(), SequenceRows::padded(2, 4, nullptr), "mixed"), kInternal,
                     "mixed: packed queries need");
}

TEST(PackingTest, NonzeroRowsTreatMinusZeroAsZeroAndNanAsAValue) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const std::vector<float> rows{0.0f, -0.0f, 0.0f, 1e-30f, nan, 0.0f};
    EXPECT_EQ(nonzero_rows(rows.data(), 3, 2), (std::vector<uint8_t>{0, 1, 1}));
}

}  // namespace
}  // namespace vqa

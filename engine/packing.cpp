#include "engine/packing.h"

#include <algorithm>
#include <limits>

#include "kernels/check.h"

namespace vqa {
namespace {

// Appends one run of `count` rows to `packed`.
void close_run(PackedSequences& packed, int64_t count) {
    packed.starts.push_back(packed.offsets.back());
    packed.counts.push_back(static_cast<int32_t>(count));
    packed.offsets.push_back(static_cast<int32_t>(packed.source.size()));
    packed.longest = std::max(packed.longest, count);
}

void check_rows(int64_t rows, const char* op) {
    VQA_CHECK(rows <= std::numeric_limits<int32_t>::max(), kInvalidArgument, op, ": ", rows,
              " token rows exceed the 32-bit row index of packed sequences; split the batch");
}

}  // namespace

void set_packed_runs(cpu::AttentionParams& params,
                     const SequenceRows& qs,
                     const SequenceRows& ks,
                     const std::string& op) {
    if (!qs.packed()) {
        return;
    }
    VQA_CHECK(qs.offsets != nullptr && ks.packed(), kInternal, op,
              ": packed queries need their offsets and packed keys");
    params.q_offsets = qs.offsets;
    params.kv_start = ks.starts;
    params.kv_count = ks.counts;
}

SequenceRows PackedSequences::view() const {
    return {sequences(),    longest,       total(),      mask.empty() ? nullptr : mask.data(),
            offsets.data(), starts.data(), counts.data()};
}

PackedSequences pack_prefixes(const int64_t* lengths, int64_t batch, int64_t len) {
    check_rows(batch * len, "pack_prefixes");
    PackedSequences packed;
    packed.offsets.push_back(0);
    for (int64_t b = 0; b < batch; ++b) {
        VQA_CHECK(lengths[b] >= 1 && lengths[b] <= len, kInvalidArgument, "pack_prefixes: sequence ", b, " has length ",
                  lengths[b], ", expected 1..", len);
        for (int64_t i = 0; i < lengths[b]; ++i) {
            packed.source.push_back(static_cast<int32_t>(b * len + i));
        }
        close_run(packed, lengths[b]);
    }
    return packed;
}

PackedSequences pack_valid_rows(const uint8_t* valid, int64_t count, int64_t tokens, bool keep_empty_whole) {
    check_rows(count * tokens, "pack_valid_rows");
    VQA_CHECK(tokens >= 1, kInvalidArgument, "pack_valid_rows: expected at least one token per image, got ", tokens);
    PackedSequences packed;
    packed.offsets.push_back(0);
    bool any_masked = false;
    for (int64_t i = 0; i < count; ++i) {
        const uint8_t* row = valid + i * tokens;
        const int64_t kept = std::count_if(row, row + tokens, [](uint8_t v) { return v != 0; });
        if (kept > 0) {
            for (int64_t j = 0; j < tokens; ++j) {
                if (row[j] != 0) {
                    packed.source.push_back(static_cast<int32_t>(i * tokens + j));
                }
            }
            packed.mask.resize(packed.source.size(), 1);
            close_run(packed, kept);
            continue;
        }
        // No valid token: the sequence's softmaxes see only masked keys; see the header on why its length matters.
        any_masked = true;
        const int64_t rows = keep_empty_whole ? tokens : 1;
        for (int64_t j = 0; j < rows; ++j) {
            packed.source.push_back(static_cast<int32_t>(i * tokens + j));
        }
        packed.mask.resize(packed.source.size(), 0);
        close_run(packed, rows);
    }
    if (!any_masked) {
        packed.mask.clear();
    }
    return packed;
}

PackedSequences repeat_runs(const PackedSequences& runs, const int64_t* index, int64_t batch) {
    PackedSequences packed;
    packed.offsets.push_back(0);
    for (int64_t b = 0; b < batch; ++b) {
        VQA_CHECK(index[b] >= 0 && index[b] < runs.sequences(), kInvalidArgument, "repeat_runs: question ", b,
                  " refers to run ", index[b], " of ", runs.sequences());
        const auto s = static_cast<std::size_t>(index[b]);
        const int32_t start = runs.starts[s];
        for (int32_t j = 0; j < runs.counts[s]; ++j) {
            packed.source.push_back(start + j);
        }
        if (!runs.mask.empty()) {
            packed.mask.insert(packed.mask.end(), runs.mask.begin() + start,
                               runs.mask.begin() + start + runs.counts[s]);
        }
        check_rows(packed.total(), "repeat_runs");
        close_run(packed, runs.counts[s]);
    }
    return packed;
}

void pad_rows_to_multiple(PackedSequences& runs, int64_t step) {
    VQA_CHECK(step >= 1, kInvalidArgument, "pad_rows_to_multiple: step must be >= 1, got ", step);
    pad_rows_to(runs, (runs.total() + step - 1) / step * step);
}

void pad_rows_to(PackedSequences& runs, int64_t total) {
    if (runs.source.empty()) {
        return;
    }
    VQA_CHECK(total >= runs.total(), kInvalidArgument, "pad_rows_to: ", total, " rows are fewer than the ",
              runs.total(), " packed already");
    check_rows(total, "pad_rows_to");
    runs.source.resize(static_cast<std::size_t>(total), 0);
    if (!runs.mask.empty()) {
        runs.mask.resize(static_cast<std::size_t>(total), 0);
    }
}

SharedRuns share_runs(const PackedSequences& runs, const int64_t* index, int64_t batch) {
    SharedRuns shared;
    for (int64_t b = 0; b < batch; ++b) {
        VQA_CHECK(index[b] >= 0 && index[b] < runs.sequences(), kInvalidArgument, "share_runs: question ", b,
                  " refers to run ", index[b], " of ", runs.sequences());
        shared.starts.push_back(runs.starts[static_cast<std::size_t>(index[b])]);
        shared.counts.push_back(runs.counts[static_cast<std::size_t>(index[b])]);
    }
    return shared;
}

SequenceRows SharedRuns::view(const PackedSequences& runs) const {
    return {static_cast<int64_t>(counts.size()),
            runs.longest,
            runs.total(),
            runs.mask.empty() ? nullptr : runs.mask.data(),
            nullptr,
            starts.data(),
            counts.data()};
}

std::vector<int32_t> padded_positions(const PackedSequences& runs, int64_t len, const PackedSequences* through) {
    VQA_CHECK(len >= 1, kInvalidArgument, "padded_positions: len must be >= 1, got ", len);
    std::vector<int32_t> position(runs.source.size());
    for (std::size_t r = 0; r < runs.source.size(); ++r) {
        const int32_t source =
            through != nullptr ? through->source.at(static_cast<std::size_t>(runs.source[r])) : runs.source[r];
        position[r] = static_cast<int32_t>(source % len);
    }
    return position;
}

std::vector<float> scatter_to_padded(
    const float* rows, int64_t width, const PackedSequences& runs, const std::vector<int32_t>& position, int64_t len) {
    const int64_t sequences = runs.sequences();
    std::vector<float> padded(static_cast<std::size_t>(sequences * len * width), 0.0f);
    for (int64_t s = 0; s < sequences; ++s) {
        for (int32_t r = runs.offsets[static_cast<std::size_t>(s)]; r < runs.offsets[static_cast<std::size_t>(s + 1)];
             ++r) {
            const int32_t p = position.at(static_cast<std::size_t>(r));
            VQA_CHECK(p >= 0 && p < len, kInternal, "scatter_to_padded: row ", r, " has position ", p, " outside 0..",
                      len - 1);
            std::copy_n(rows + int64_t{r} * width, width, padded.data() + (s * len + p) * width);
        }
    }
    return padded;
}

std::vector<uint8_t> nonzero_rows(const float* rows, int64_t count, int64_t width) {
    std::vector<uint8_t> valid(static_cast<std::size_t>(count));
    for (int64_t r = 0; r < count; ++r) {
        const float* row = rows + r * width;
        valid[static_cast<std::size_t>(r)] = std::any_of(row, row + width, [](float v) { return v != 0.0f; }) ? 1 : 0;
    }
    return valid;
}

}  // namespace vqa

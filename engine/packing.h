// Padding removal (docs/padding-removal.md): which token rows of a forward pass carry information, and how the
// rows of a batch split into sequences once the rest are dropped.
//
// A padded batch gives every question L token rows and every image N rows, and masks the padding. A packed batch
// keeps only the valid rows, sequence after sequence (question b owns rows offsets[b] .. offsets[b+1]-1), so the
// GEMMs, LayerNorms and attentions of the fusion stack do no work for padding. Masked positions contribute
// nothing to a valid position in this model family, so the answers are those of the padded path. The one place
// padding does matter is a sequence with no valid position under the "uniform" rule (openvqa's −1e9 fill): it
// attends uniformly to all its padded rows, so such a sequence is kept whole, masked, exactly as padded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cpu/attention.h"

namespace vqa {

// How the token rows of an activation split into sequences; pointers are host or device memory, as the backend's.
struct SequenceRows {
    int64_t batch = 0;                 // B: sequences
    int64_t len = 0;                   // padded: L, the rows of every sequence; packed: the longest sequence
    int64_t rows = 0;                  // all rows: B·L padded, the packed total otherwise
    const uint8_t* mask = nullptr;     // 1 = valid row: padded [B, L], packed [rows]; null = every row valid
    const int32_t* offsets = nullptr;  // packed, as queries or pooled samples: [B+1], sequence b = rows
                                       // offsets[b] .. offsets[b+1]-1 (null when the runs may overlap)
    const int32_t* starts = nullptr;   // packed: [B] first row of sequence b (runs may repeat: keys of an image
                                       // shared by several questions); null = padded
    const int32_t* counts = nullptr;   // packed: [B] rows of sequence b
    bool packed() const { return starts != nullptr; }

    // The padded layout: B sequences of L rows.
    static SequenceRows padded(int64_t batch, int64_t len, const uint8_t* mask) {
        return {batch, len, batch * len, mask, nullptr, nullptr, nullptr};
    }
};

// Points an attention's packed-sequence fields at qs (queries: offsets) and ks (keys: starts and counts) when qs is
// packed; padded layouts leave params as they are. kInternal (naming `op`) if qs lacks offsets or ks is padded.
void set_packed_runs(cpu::AttentionParams& params,
                     const SequenceRows& qs,
                     const SequenceRows& ks,
                     const std::string& op);

// Packed sequences on the host: the source row of every kept row and the run of each sequence.
struct PackedSequences {
    std::vector<int32_t> source;   // [T]: the row each packed row is taken from (for gather_rows)
    std::vector<int32_t> offsets;  // [S+1]
    std::vector<int32_t> starts;   // [S]: offsets[s], or the start of a repeated run
    std::vector<int32_t> counts;   // [S]
    std::vector<uint8_t> mask;     // [T], 1 = valid; empty when every kept row is valid
    int64_t longest = 0;           // the largest count

    int64_t sequences() const { return static_cast<int64_t>(counts.size()); }
    int64_t total() const { return static_cast<int64_t>(source.size()); }
    // A view over these host arrays.
    SequenceRows view() const;
};

// Question b keeps its first lengths[b] of len positions (source rows b·len + i). lengths must be in 1..len.
PackedSequences pack_prefixes(const int64_t* lengths, int64_t batch, int64_t len);

// Image i keeps its valid tokens, in order (valid: [count, tokens], 1 = valid; source rows i·tokens + j). An image
// with no valid token keeps all `tokens` rows, masked, when keep_empty_whole (the "uniform" rule), else one masked
// row (under the "zero" rule a fully masked sequence gives zeros whatever its length, and a run is never empty).
PackedSequences pack_valid_rows(const uint8_t* valid, int64_t count, int64_t tokens, bool keep_empty_whole);

// The runs of `runs` picked per question (question b gets run index[b]); source rows index the rows of `runs`'
// packed buffer, so gathering them gives every question its own copy.
PackedSequences repeat_runs(const PackedSequences& runs, const int64_t* index, int64_t batch);

// Appends rows after the last run until the total is a multiple of `step`: rows no sequence owns, copies of source
// row 0 (masked when there is a mask), so that row-wise layers see fewer distinct sizes. The runs are unchanged.
void pad_rows_to_multiple(PackedSequences& runs, int64_t step);
// The same up to `total` rows (>= the current total; a no-op without runs).
void pad_rows_to(PackedSequences& runs, int64_t total);

// Question b's keys are run index[b] of `runs`, read in place (no copy): starts and counts only, no offsets; the
// mask is runs' own.
struct SharedRuns {
    std::vector<int32_t> starts;  // [B]
    std::vector<int32_t> counts;  // [B]
    SequenceRows view(const PackedSequences& runs) const;
};
SharedRuns share_runs(const PackedSequences& runs, const int64_t* index, int64_t batch);

// Where each packed row of `runs` sat in its padded sequence of `len` rows: source % len, or, for runs gathered from
// other packed runs (repeat_runs), through->source[source] % len.
std::vector<int32_t> padded_positions(const PackedSequences& runs,
                                      int64_t len,
                                      const PackedSequences* through = nullptr);

// The rows of `runs` ([T, width], sequence s = rows offsets[s] .. offsets[s+1]-1) back in the padded layout
// [S, len, width], row r at position[r] of its sequence; positions no row lands on (padding) are 0.
std::vector<float> scatter_to_padded(
    const float* rows, int64_t width, const PackedSequences& runs, const std::vector<int32_t>& position, int64_t len);

// 1 for each of `count` rows of `width` floats with a non-zero element (docs/model-format.md §4.3: an all-zero
// region feature row is padding; -0.0 counts as zero and NaN does not, as with PyTorch's `(x == 0).all(-1)`).
std::vector<uint8_t> nonzero_rows(const float* rows, int64_t count, int64_t width);

}  // namespace vqa

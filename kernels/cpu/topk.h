// Answer scoring (docs/model-format.md §8): softmax or sigmoid over the classifier logits, then the top-k
// answers of each row.
#pragma once

#include <cstdint>

namespace vqa::cpu {

// ids[b, :] and values[b, :] = the k largest scores of row b, sorted descending, ties by lower id. A NaN
// score ranks below every number. 1 ≤ k ≤ A. No scratch: the outputs hold the running top-k (O(A·k) per row,
// meant for small k).
void topk(const float* scores,  // [B, A]
          int64_t batch,        // B
          int64_t num_scores,   // A
          int64_t k,
          int32_t* ids,    // [B, k]
          float* values);  // [B, k]

// y[r, :] = softmax(x[r, :]) (a masked_softmax without a mask); y may alias x.
void softmax_rows(const float* x,  // [rows, cols]
                  float* y,        // [rows, cols]
                  int64_t rows,
                  int64_t cols);

// y[i] = 1 / (1 + exp(−x[i])); y may alias x.
void sigmoid(const float* x,  // [n]
             float* y,        // [n]
             int64_t n);

}  // namespace vqa::cpu

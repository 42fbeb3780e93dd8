// Embedding lookup (docs/model-format.md §5, §8): out[i, :] = table[ids[i], :].
#pragma once

#include <cstdint>

namespace vqa::cpu {

// Every id is checked before anything is written: an id outside [0, V) throws vqa::Error (kInvalidArgument)
// naming the id, its position and V.
void embedding_gather(const int32_t* ids,  // [n]
                      int64_t n,
                      const float* table,  // [V, E]
                      int64_t vocab_size,  // V
                      int64_t dim,         // E
                      float* out);         // [n, E]

void embedding_gather(const int64_t* ids,  // [n]
                      int64_t n,
                      const float* table,  // [V, E]
                      int64_t vocab_size,  // V
                      int64_t dim,         // E
                      float* out);         // [n, E]

}  // namespace vqa::cpu

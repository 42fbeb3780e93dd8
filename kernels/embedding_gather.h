// Embedding lookup (CUDA entry point; the CPU reference is kernels/cpu/embedding_gather.h):
// out[i, :] = table[ids[i], :].
//
// Out-of-range ids: the CPU reference checks every id on the host and throws before writing. Here the ids are
// already on the device, so the kernel cannot throw; instead an id outside [0, V) never reads the table: its
// output row is written with zeros and, when `error_flag` is given, *error_flag is set to 1 (it is never cleared:
// zero it before the call, read it after the stream has reached that point). Clamping was rejected because it
// would turn a bad id into a plausible answer. The engine validates ids on the host before uploading them, so
// the flag is a second line of defence, not the way to report bad input.
#pragma once

#include <cstdint>

#if VQA_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#endif

namespace vqa {

#if VQA_WITH_CUDA
namespace cuda {

// T is float, __half or __nv_bfloat16 and Id is int32_t or int64_t (instantiated in embedding_gather.cu). out must
// not overlap table or ids. Rows move as 16-, 8- or 4-byte words when E·sizeof(T) and both pointers allow,
// element by element otherwise; bits are copied unchanged. Throws vqa::Error(kInvalidArgument) for bad arguments
// before anything is queued. Asynchronous on `stream`; no allocation.
template <typename T, typename Id>
void embedding_gather(const Id* ids,  // [n], device memory
                      int64_t n,
                      const T* table,      // [V, E]
                      int64_t vocab_size,  // V
                      int64_t dim,         // E
                      T* out,              // [n, E]
                      int* error_flag,     // [1] device int, or null: set to 1 when an id is outside [0, V)
                      cudaStream_t stream);

}  // namespace cuda
#endif

}  // namespace vqa

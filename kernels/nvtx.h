// Deprecated: kernels/trace.h's TraceRange replaces NvtxRange. It emits the same NVTX ranges (domain "vqa") and is
// also recorded by a TraceRecorder installed on the thread; give it the launcher's stream to time the GPU work.
// This alias keeps the launchers that still say NvtxRange compiling until they switch to
// `TraceRange range("name", stream)`.
#pragma once

#include "kernels/trace.h"

namespace vqa {

using NvtxRange = TraceRange;

}  // namespace vqa

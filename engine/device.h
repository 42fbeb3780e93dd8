// Backend selection: which device runs the model, given what the caller asked for and what is present.
#pragma once

#include "vqa/engine.h"

namespace vqa {

// Number of CUDA devices usable by this process (0 in a build without CUDA or on a machine without a GPU).
int cuda_device_count() noexcept;

// kCuda when CUDA is requested or auto and a device is present, else kCpu. kAuto falls back to the CPU with a
// one-line notice on stderr when a CUDA build finds no device; an explicit kCuda that cannot be honoured throws
// kUnsupported. Reduced precision needs the CUDA backend.
Device select_backend(Device requested, Precision precision);

}  // namespace vqa

// The one error type of the library: every failure that a caller can see is a vqa::Error with a code.
#pragma once

#include <stdexcept>
#include <string>

#include "vqa/export.h"

namespace vqa {

enum class ErrorCode {
    kInvalidArgument,  // a caller passed a value outside the documented contract (shape, size, option)
    kModelFormat,      // the model directory is malformed: config, tensor names, dtypes, shapes, offsets
    kIo,               // a file could not be opened, read or written
    kImageDecode,      // an image file is truncated, not an image, or of an unsupported kind
    kUnsupported,      // valid input that this build does not handle (e.g. CUDA requested in a CPU-only build)
    kCuda,             // the CUDA runtime or a CUDA library reported an error
    kOutOfMemory,      // host or device allocation failed; the engine stays usable
    kInternal,         // a broken invariant inside the library: a bug to report
};

// Stable lower-case name of a code ("invalid_argument"), for logs, the C API and tools' output.
inline const char* error_code_name(ErrorCode code) noexcept {
    switch (code) {
        case ErrorCode::kInvalidArgument:
            return "invalid_argument";
        case ErrorCode::kModelFormat:
            return "model_format";
        case ErrorCode::kIo:
            return "io";
        case ErrorCode::kImageDecode:
            return "image_decode";
        case ErrorCode::kUnsupported:
            return "unsupported";
        case ErrorCode::kCuda:
            return "cuda";
        case ErrorCode::kOutOfMemory:
            return "out_of_memory";
        case ErrorCode::kInternal:
            return "internal";
    }
    return "unknown";
}

class VQA_API Error : public std::runtime_error {
public:
    Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}

    ErrorCode code() const noexcept { return code_; }

private:
    ErrorCode code_;
};

}  // namespace vqa

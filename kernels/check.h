// VQA_CHECK: the library's argument and invariant check, modelled on PyTorch's TORCH_CHECK.
//
//   VQA_CHECK(shape.head_dim > 0, kInvalidArgument, "split_heads: expected head_dim > 0, got ", shape.head_dim);
//
// On failure it throws vqa::Error with the given ErrorCode enumerator and a message made of the streamed parts,
// followed by the failed condition and its source location. The message is required.
#pragma once

#include <sstream>
#include <string>

#include "vqa/error.h"

namespace vqa::detail {

// Concatenates anything that has an operator<< into one string.
template <typename... Args>
std::string str_cat(const Args&... args) {
    std::ostringstream out;
    (out << ... << args);
    return out.str();
}

// "split_heads.cu" for "/home/me/vqa-engine/kernels/split_heads.cu": messages name the file, not the directory it
// was built in.
inline const char* source_basename(const char* file) noexcept {
    const char* name = file;
    for (const char* c = file; *c != '\0'; ++c) {
        if (*c == '/') {
            name = c + 1;
        }
    }
    return name;
}

// Kept out of line so that only the failure path pays for building the message.
[[noreturn]] __attribute__((noinline, cold)) inline void throw_check_failure(
    ErrorCode code, const char* condition, const char* file, int line, const std::string& message) {
    throw Error(code, str_cat(message, " (check `", condition, "` failed at ", source_basename(file), ":", line, ")"));
}

}  // namespace vqa::detail

#define VQA_CHECK(cond, code, ...)                                                                \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            ::vqa::detail::throw_check_failure(::vqa::ErrorCode::code, #cond, __FILE__, __LINE__, \
                                               ::vqa::detail::str_cat(__VA_ARGS__));              \
        }                                                                                         \
    } while (0)

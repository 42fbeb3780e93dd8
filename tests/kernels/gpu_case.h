// What the CUDA op tests share beyond test_util.h: the precision of a case, its name, the test name of a case, a
// dispatch from precision to element type, and key padding masks with partly and fully masked rows.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/kernels/test_util.h"

#if VQA_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace vqa::test {

enum class Precision { kFp32, kFp16, kBf16 };

inline const char* precision_name(Precision p) {
    switch (p) {
        case Precision::kFp32:
            return "fp32";
        case Precision::kFp16:
            return "fp16";
        case Precision::kBf16:
            return "bf16";
    }
    return "unknown";
}

inline constexpr Precision kPrecisions[] = {Precision::kFp32, Precision::kFp16, Precision::kBf16};

// INSTANTIATE_TEST_SUITE_P's name generator, `test::case_name<Case>`, for a case type with a case_string(const
// Case&) beside it (found by argument-dependent lookup): test names that print the case, B1_H8_Lq14_Lk100_Dh64_fp16.
// gtest's PrintTo, by contrast, must be declared in the case type's own namespace.
template <typename Case>
std::string case_name(const ::testing::TestParamInfo<Case>& info) {
    return case_string(info.param);
}

#if VQA_WITH_CUDA
// Calls f(T{}) with the element type of a precision.
template <typename F>
void with_element_type(Precision precision, F&& f) {
    switch (precision) {
        case Precision::kFp32:
            return f(float{});
        case Precision::kFp16:
            return f(__half{});
        case Precision::kBf16:
            return f(__nv_bfloat16{});
    }
}
#endif

enum class MaskKind {
    kNone,            // no mask (null pointer)
    kPartial,         // about one key in three masked, every mask row keeps at least one valid key
    kWithFullyMasked  // kPartial, and mask row `rows - 1` (the last batch) has every key masked
};

inline const char* mask_suffix(MaskKind kind) {
    switch (kind) {
        case MaskKind::kNone:
            return "";
        case MaskKind::kPartial:
            return "_mask";
        case MaskKind::kWithFullyMasked:
            return "_maskfull";
    }
    return "_unknown";
}

// uint8 [rows, cols], 1 = valid key, from a fixed seed; empty for kNone.
inline std::vector<uint8_t> make_key_mask(int64_t rows, int64_t cols, MaskKind kind, uint64_t seed) {
    if (kind == MaskKind::kNone) {
        return {};
    }
    std::vector<uint8_t> mask(static_cast<size_t>(rows * cols));
    const std::vector<float> u = random_vector(mask.size(), seed, 0.0f, 1.0f);
    for (size_t i = 0; i < mask.size(); ++i) {
        mask[i] = u[i] < 0.33f ? 0 : 1;
    }
    for (int64_t r = 0; r < rows; ++r) {
        mask[static_cast<size_t>(r * cols + (r % cols))] = 1;  // a valid key somewhere in every row
    }
    if (kind == MaskKind::kWithFullyMasked && rows > 0) {
        std::fill(mask.end() - cols, mask.end(), uint8_t{0});
    }
    return mask;
}

}  // namespace vqa::test

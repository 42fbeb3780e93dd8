// The CUDA entry points check their arguments on the host before anything reaches a device, so these tests run
// on machines without a GPU (label cpu): each bad shape gets a vqa::Error(kInvalidArgument) that says what is
// wrong, and an empty shape returns without touching its (null) pointers or the device.
#include <cstdint>
#include <string>

#include <gtest/gtest.h>

#include "kernels/fused_attention.h"
#include "kernels/masked_softmax.h"
#include "kernels/qkv_projection.h"
#include "vqa/error.h"

namespace vqa {
namespace {

template <typename F>
void expect_invalid_argument(F&& call, const std::string& message) {
    try {
        call();
        FAIL() << "expected vqa::Error containing: " << message;
    } catch (const Error& error) {
        EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
        EXPECT_NE(std::string(error.what()).find(message), std::string::npos) << error.what();
    }
}

cpu::AttentionParams attention_params(int64_t head_dim) {
    cpu::AttentionParams p;
    p.batch = 1;
    p.heads = 1;
    p.q_len = 1;
    p.kv_len = 1;
    p.head_dim = head_dim;
    p.q = p.k = p.v = p.o = cpu::head_major_strides(1, 1, head_dim);
    return p;
}

TEST(CudaKernelArgs, MaskedSoftmaxRejectsBadShapes) {
    __half h = __float2half(1.0f);
    SoftmaxParams p;
    p.rows = 10;
    p.cols = 4;
    p.rows_per_mask = 3;
    expect_invalid_argument([&] { cuda::masked_softmax(p, &h, nullptr, nullptr, &h, nullptr); },
                            "masked_softmax: rows (10) must be a multiple of rows_per_mask (3)");
    p.rows_per_mask = 1;
    p.additive_rows = 2;
    expect_invalid_argument([&] { cuda::masked_softmax(p, &h, nullptr, nullptr, &h, nullptr); },
                            "give an additive mask pointer exactly when additive_rows > 0");
    p.additive_rows = 0;
    p.cols = -1;
    expect_invalid_argument([&] { cuda::masked_softmax(p, &h, nullptr, nullptr, &h, nullptr); },
                            "expected non-negative sizes, got rows=10 cols=-1");
    p.cols = 4;
    expect_invalid_argument(
        [&] { cuda::masked_softmax(p, static_cast<const float*>(nullptr), nullptr, nullptr, nullptr, nullptr); },
        "scores and probs must not be null");
    p.rows = 0;
    EXPECT_NO_THROW(
        cuda::masked_softmax(p, static_cast<const __nv_bfloat16*>(nullptr), nullptr, nullptr, nullptr, nullptr));
}

TEST(CudaKernelArgs, FusedAttentionRejectsBadShapes) {
    float f = 1.0f;
    expect_invalid_argument(
        [&] { cuda::fused_attention(attention_params(320), &f, &f, &f, nullptr, &f, nullptr, nullptr); },
        "fused_attention: head_dim 320 exceeds 256; use the unfused path");
    cpu::AttentionParams p = attention_params(64);
    p.kv_len = 0;
    expect_invalid_argument([&] { cuda::fused_attention(p, &f, &f, &f, nullptr, &f, nullptr, nullptr); },
                            "expected B >= 0, H >= 1, Lq >= 0, Lk >= 1, Dh >= 1, got B=1 H=1 Lq=1 Lk=0 Dh=64");
    p = attention_params(64);
    p.k.row = 32;
    expect_invalid_argument([&] { cuda::fused_attention(p, &f, &f, &f, nullptr, &f, nullptr, nullptr); },
                            "row strides must be >= Dh (64); got q=64 k=32 v=64 o=64");
    p = attention_params(64);
    p.batch = 70000;
    expect_invalid_argument([&] { cuda::fused_attention(p, &f, &f, &f, nullptr, &f, nullptr, nullptr); },
                            "must be <= 65535 (grid limits)");
    p = attention_params(64);
    expect_invalid_argument([&] { cuda::fused_attention(p, &f, &f, &f, nullptr, nullptr, nullptr, nullptr); },
                            "q, k, v and o must not be null");
    p.q_len = 0;
    EXPECT_NO_THROW(cuda::fused_attention(p, static_cast<const __half*>(nullptr), nullptr, nullptr, nullptr, nullptr,
                                          nullptr, nullptr));
}

TEST(CudaKernelArgs, QkvProjectionRejectsBadShapes) {
    __nv_bfloat16 x = __float2bfloat16(1.0f);
    HeadOutputs<__nv_bfloat16> outputs;
    outputs.group[0] = outputs.group[1] = outputs.group[2] = &x;
    HeadProjectionParams p = qkv_projection_params(1, 1, 8, 2, 1.0f);
    p.x_row_stride = 4;
    expect_invalid_argument([&] { cuda::fused_qkv_projection(p, &x, &x, nullptr, outputs, nullptr); },
                            "fused_qkv_projection: expected x_row_stride >= K = 8 (or 0 for dense rows), got 4");
    p = qkv_projection_params(1, 1, 8, 2, 1.0f);
    p.num_groups = 0;
    expect_invalid_argument([&] { cuda::fused_qkv_projection(p, &x, &x, nullptr, outputs, nullptr); },
                            "num_groups must be 1 (Q), 2 (K, V) or 3 (Q, K, V), got 0");
    p = qkv_projection_params(1, 1, 8, 0, 1.0f);
    expect_invalid_argument([&] { cuda::fused_qkv_projection(p, &x, &x, nullptr, outputs, nullptr); },
                            "expected B >= 0, L >= 0, K >= 1, H >= 1, Dh >= 1");
    p = qkv_projection_params(65536, 65, 8, 2, 1.0f);
    expect_invalid_argument([&] { cuda::fused_qkv_projection(p, &x, &x, nullptr, outputs, nullptr); },
                            "exceeds 4194240 rows (grid limit); split the batch");
    p = qkv_projection_params(1, 1, 8, 2, 1.0f);
    outputs.group[2] = nullptr;
    expect_invalid_argument([&] { cuda::fused_qkv_projection(p, &x, &x, nullptr, outputs, nullptr); },
                            "output of group 2 is null but 3 groups were asked for");
    p.batch = 0;
    EXPECT_NO_THROW(cuda::fused_qkv_projection(p, static_cast<const float*>(nullptr), nullptr, nullptr,
                                               HeadOutputs<float>{}, nullptr));
}

}  // namespace
}  // namespace vqa

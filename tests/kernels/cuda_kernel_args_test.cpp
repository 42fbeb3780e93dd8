// The CUDA entry points check their arguments on the host before anything reaches a device, so these tests run
// on machines without a GPU (label cpu): each bad shape gets a vqa::Error(kInvalidArgument) that says what is
// wrong, and an empty shape returns without touching its (null) pointers or the device.
#include <cstdint>
#include <string>

#include <gtest/gtest.h>

#include "kernels/attention_pool.h"
#include "kernels/bias_act.h"
#include "kernels/embedding_gather.h"
#include "kernels/fused_attention.h"
#include "kernels/layer_norm.h"
#include "kernels/masked_softmax.h"
#include "kernels/preprocess_image.h"
#include "kernels/qkv_projection.h"
#include "kernels/rnn.h"
#include "kernels/tensor_ops.h"
#include "kernels/topk.h"
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

// Packed sequences: the offsets are device pointers, so the host checks only that all three are there (the
// kernel clamps the counts it reads). The host never dereferences them, so a host int stands in here.
TEST(CudaKernelArgs, FusedAttentionPackedNeedsAllOffsets) {
    float f = 1.0f;
    const int32_t offsets = 0;
    cpu::AttentionParams p = attention_params(64);
    p.q_offsets = &offsets;
    expect_invalid_argument([&] { cuda::fused_attention(p, &f, &f, &f, nullptr, &f, nullptr, nullptr); },
                            "fused_attention: packed sequences (q_offsets set) need kv_start and kv_count as well");
    p.kv_start = &offsets;
    expect_invalid_argument([&] { cuda::fused_attention(p, &f, &f, &f, nullptr, &f, nullptr, nullptr); },
                            "need kv_start and kv_count as well");
    p.kv_start = nullptr;
    p.kv_count = &offsets;
    expect_invalid_argument([&] { cuda::fused_attention(p, &f, &f, &f, nullptr, &f, nullptr, nullptr); },
                            "need kv_start and kv_count as well");
    p.kv_count = nullptr;
    p.batch = 0;  // an empty batch returns before looking at any pointer, as in the dense case
    EXPECT_NO_THROW(cuda::fused_attention(p, static_cast<const float*>(nullptr), nullptr, nullptr, nullptr, nullptr,
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

TEST(CudaKernelArgs, AttentionPoolRejectsBadShapes) {
    float f = 1.0f;
    __half h = __float2half(1.0f);
    AttentionPoolParams p;
    p.batch = 2;
    p.seq_len = 0;
    p.dim = 8;
    p.glimpses = 2;
    expect_invalid_argument([&] { cuda::attention_pool(p, &h, &f, nullptr, &h, nullptr); },
                            "attention_pool: expected B >= 0, L, d, G >= 1, got B=2 L=0 d=8 G=2");
    p.seq_len = 2049;
    p.glimpses = 4;
    expect_invalid_argument([&] { cuda::attention_pool(p, &h, &f, nullptr, &h, nullptr); },
                            "attention_pool: L·G = 8196 exceeds 8192");
    p.seq_len = 14;
    p.glimpses = 2;
    expect_invalid_argument([&] { cuda::attention_pool<float>(p, &f, nullptr, nullptr, &f, nullptr); },
                            "x, weights and z must not be null");
    p.batch = 0;
    EXPECT_NO_THROW(cuda::attention_pool<__nv_bfloat16>(p, nullptr, nullptr, nullptr, nullptr, nullptr));
}

TEST(CudaKernelArgs, PreprocessImageRejectsBadShapes) {
    const uint8_t pixels[32] = {};
    float f = 0.0f;
    cpu::PreprocessParams p;
    p.src_h = 1;
    p.src_w = 0;
    p.dst_h = p.dst_w = 224;
    expect_invalid_argument([&] { cuda::preprocess_image(p, pixels, &f, nullptr); },
                            "preprocess_image: expected a source size in [1, 65536], got 1x0");
    p.src_w = 4;
    p.src_row_stride = 10;
    expect_invalid_argument([&] { cuda::preprocess_image(p, pixels, &f, nullptr); },
                            "src_row_stride must be >= 3·w = 12 (or 0 for dense rows), got 10");
    p.src_row_stride = 0;
    p.std[1] = 0.0f;
    expect_invalid_argument([&] { cuda::preprocess_image(p, pixels, &f, nullptr); }, "std[1] must be > 0, got 0");
    p.std[1] = 1.0f;
    p.dst_w = 0;
    expect_invalid_argument([&] { cuda::preprocess_image(p, pixels, &f, nullptr); },
                            "expected an output size in [1, 65536], got 224x0");
    p.dst_w = 224;
    expect_invalid_argument([&] { cuda::preprocess_image<__half>(p, nullptr, nullptr, nullptr); },
                            "images, staging and dst must not be null");

    PreprocessBatchParams batch;
    batch.count = 2;
    batch.dst_h = batch.dst_w = 64;
    PreprocessImageDesc images[2];
    images[0].height = images[0].width = 2;
    images[1].offset = 12;
    images[1].height = 2;
    images[1].width = 3;  // 12 + 2 rows of 9 bytes: needs 30 bytes
    expect_invalid_argument([&] { cuda::preprocess_images(batch, images, pixels, 29, &f, nullptr); },
                            "preprocess_images: image 1 (2x3, offset 12, row stride 9) does not lie inside the "
                            "29-byte staging buffer");
    images[1].offset = -1;
    expect_invalid_argument([&] { cuda::preprocess_images(batch, images, pixels, 32, &f, nullptr); },
                            "image 1 (2x3, offset -1, row stride 9) does not lie inside");
    images[1].offset = 12;
    images[1].row_stride = 8;
    expect_invalid_argument([&] { cuda::preprocess_images(batch, images, pixels, 32, &f, nullptr); },
                            "image 1: row_stride must be >= 3·w = 9");
    images[0].height = 70000;
    expect_invalid_argument([&] { cuda::preprocess_images(batch, images, pixels, 32, &f, nullptr); },
                            "image 0: expected a size in [1, 65536], got 70000x2");
    batch.count = 0;
    EXPECT_NO_THROW(cuda::preprocess_images<__nv_bfloat16>(batch, nullptr, nullptr, 0, nullptr, nullptr));
}

TEST(CudaKernelArgs, AnswerTopkRejectsBadShapes) {
    float f = 0.0f;
    int32_t id = 0;
    __half h = __float2half(1.0f);
    AnswerTopkParams p;
    p.batch = 2;
    p.num_scores = 4;
    p.k = 5;
    expect_invalid_argument([&] { cuda::answer_topk(p, &h, &id, &f, nullptr, nullptr); },
                            "answer_topk: expected B >= 0 and 1 <= k <= A, got B=2 A=4 k=5");
    p.k = 0;
    expect_invalid_argument([&] { cuda::answer_topk(p, &h, &id, &f, nullptr, nullptr); },
                            "expected B >= 0 and 1 <= k <= A, got B=2 A=4 k=0");
    p.num_scores = 9000;
    p.k = 5;
    expect_invalid_argument([&] { cuda::answer_topk(p, &f, &id, &f, nullptr, nullptr); },
                            "answer_topk: A = 9000 exceeds 8192 scores per row");
    p.num_scores = 4;
    p.k = 1;
    p.activation = static_cast<ScoreActivation>(7);
    expect_invalid_argument([&] { cuda::answer_topk(p, &f, &id, &f, nullptr, nullptr); }, "unknown activation 7");
    p.activation = ScoreActivation::kSigmoid;
    expect_invalid_argument([&] { cuda::answer_topk<float>(p, &f, nullptr, &f, nullptr, nullptr); },
                            "logits, ids and values must not be null");
    p.batch = 0;
    EXPECT_NO_THROW(cuda::answer_topk<__nv_bfloat16>(p, nullptr, nullptr, nullptr, nullptr, nullptr));
}

TEST(CudaKernelArgs, LayerNormRejectsBadShapes) {
    __half h[16] = {};
    float f[8] = {};
    LayerNormParams p;
    p.rows = 1;
    p.dim = 1;
    p.variant = cpu::LayerNormVariant::kUnbiasedStd;
    expect_invalid_argument(
        [&] { cuda::layer_norm<__half>(p, h, nullptr, f, f, h + 8, nullptr, nullptr); },
        "layer_norm: the unbiased_std variant needs dim >= 2 (its std divides by d - 1), got dim=1");
    p.variant = cpu::LayerNormVariant::kStandard;
    p.dim = 0;
    expect_invalid_argument([&] { cuda::layer_norm<__half>(p, h, nullptr, f, f, h + 8, nullptr, nullptr); },
                            "layer_norm: expected rows >= 0 and dim >= 1, got rows=1 dim=0");
    p.dim = 4;
    p.eps = -1.0f;
    expect_invalid_argument([&] { cuda::layer_norm<__half>(p, h, nullptr, f, f, h + 8, nullptr, nullptr); },
                            "layer_norm: expected a finite eps >= 0, got -1");
    p.eps = 1e-5f;
    expect_invalid_argument([&] { cuda::layer_norm<__half>(p, h, nullptr, nullptr, f, h + 8, nullptr, nullptr); },
                            "layer_norm: x, weight, bias and y must not be null");
    expect_invalid_argument([&] { cuda::layer_norm<__half>(p, h, nullptr, f, f, h + 2, nullptr, nullptr); },
                            "layer_norm: y and pre_norm must each be exactly x, exactly residual, or apart from both");
    expect_invalid_argument([&] { cuda::layer_norm<__half>(p, h, h + 8, f, f, h + 6, nullptr, nullptr); },
                            "a partial overlap is not supported");
    expect_invalid_argument([&] { cuda::layer_norm<__half>(p, h, h + 4, f, f, h + 8, h + 10, nullptr); },
                            "layer_norm: y and pre_norm must not overlap");
    p.rows = 0;
    EXPECT_NO_THROW(cuda::layer_norm<float>(p, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr));
}

TEST(CudaKernelArgs, BiasActRejectsBadShapes) {
    float f[16] = {};
    __nv_bfloat16 b[16] = {};
    expect_invalid_argument(
        [&] { cuda::bias_act<__nv_bfloat16>(b, f, nullptr, b, -1, 4, cpu::Activation::kRelu, nullptr); },
        "bias_act: expected rows, cols >= 0, got -1, 4");
    expect_invalid_argument(
        [&] { cuda::bias_act<__nv_bfloat16>(b, f, nullptr, b, 2, 4, static_cast<cpu::Activation>(7), nullptr); },
        "bias_act: unknown activation 7");
    expect_invalid_argument(
        [&] { cuda::bias_act<__nv_bfloat16>(nullptr, f, nullptr, b, 2, 4, cpu::Activation::kNone, nullptr); },
        "bias_act: x and y must not be null");
    expect_invalid_argument(
        [&] { cuda::bias_act<float>(f, nullptr, nullptr, f + 1, 2, 4, cpu::Activation::kNone, nullptr); },
        "bias_act: y must be exactly x, exactly residual, or apart from both");
    expect_invalid_argument(
        [&] { cuda::bias_act<float>(f, f + 10, nullptr, f + 8, 1, 4, cpu::Activation::kTanh, nullptr); },
        "bias_act: bias must not overlap y");
    EXPECT_NO_THROW(cuda::bias_act<__half>(nullptr, nullptr, nullptr, nullptr, 0, 4, cpu::Activation::kRelu, nullptr));
    EXPECT_NO_THROW(cuda::bias_act<__half>(nullptr, nullptr, nullptr, nullptr, 3, 0, cpu::Activation::kRelu, nullptr));
}

TEST(CudaKernelArgs, EmbeddingGatherRejectsBadShapes) {
    float table[16] = {};
    float out[16] = {};
    int32_t ids[4] = {};
    expect_invalid_argument([&] { cuda::embedding_gather(ids, 2, table, 3, 0, out, nullptr, nullptr); },
                            "embedding_gather: expected n, V >= 0 and E >= 1, got n=2 V=3 E=0");
    expect_invalid_argument([&] { cuda::embedding_gather(ids, 2, table, -1, 4, out, nullptr, nullptr); },
                            "got n=2 V=-1 E=4");
    expect_invalid_argument(
        [&] { cuda::embedding_gather(static_cast<const int64_t*>(nullptr), 2, table, 3, 4, out, nullptr, nullptr); },
        "embedding_gather: ids and out (and table when V > 0) must not be null");
    expect_invalid_argument([&] { cuda::embedding_gather(ids, 2, table, 3, 4, table + 8, nullptr, nullptr); },
                            "embedding_gather: out must not overlap the table");
    expect_invalid_argument(
        [&] { cuda::embedding_gather(ids, 2, table, 3, 4, reinterpret_cast<float*>(ids), nullptr, nullptr); },
        "embedding_gather: out must not overlap ids");
    EXPECT_NO_THROW((cuda::embedding_gather<__half, int32_t>(nullptr, 0, nullptr, 5, 8, nullptr, nullptr, nullptr)));
}

TEST(CudaKernelArgs, RnnGatesRejectBadShapes) {
    float f[8] = {};
    float c[2] = {};
    RnnGatesParams p = lstm_cell_gates_params(1, 0);
    expect_invalid_argument([&] { cuda::lstm_gates<float>(p, f, f, nullptr, nullptr, c, c, f, nullptr); },
                            "lstm_gates: expected B >= 0 and Hd >= 1, got B=1 Hd=0");
    p = lstm_cell_gates_params(1, 2);
    p.gx_row_stride = 7;
    expect_invalid_argument([&] { cuda::lstm_gates<float>(p, f, f, nullptr, nullptr, c, c, f, nullptr); },
                            "lstm_gates: expected gx_row_stride >= 4·Hd = 8 (or 0 for dense rows), got 7");
    p = lstm_sequence_gates_params(2, 3, 2);
    p.h_row_stride = 1;
    expect_invalid_argument([&] { cuda::lstm_gates<float>(p, f, nullptr, nullptr, nullptr, nullptr, c, f, nullptr); },
                            "lstm_gates: expected h_row_stride >= Hd = 2 (or 0 for dense rows), got 1");
    p = lstm_cell_gates_params(1, 2);
    expect_invalid_argument(
        [&] { cuda::lstm_gates<__half>(p, nullptr, nullptr, nullptr, nullptr, c, c, nullptr, nullptr); },
        "lstm_gates: gx, c and h must not be null");
    p = gru_cell_gates_params(1, 2);
    p.gh_row_stride = 5;
    expect_invalid_argument([&] { cuda::gru_gates<float>(p, f, f, nullptr, nullptr, f, f, nullptr); },
                            "gru_gates: expected gh_row_stride >= 3·Hd = 6 (or 0 for dense rows), got 5");
    p = gru_cell_gates_params(1, 2);
    expect_invalid_argument([&] { cuda::gru_gates<float>(p, f, nullptr, nullptr, nullptr, f, f, nullptr); },
                            "gru_gates: gx, gh, h and h_out must not be null");
    EXPECT_NO_THROW(cuda::lstm_gates<__nv_bfloat16>(lstm_cell_gates_params(0, 4), nullptr, nullptr, nullptr, nullptr,
                                                    nullptr, nullptr, nullptr, nullptr));
    EXPECT_NO_THROW(cuda::gru_gates<float>(gru_cell_gates_params(0, 4), nullptr, nullptr, nullptr, nullptr, nullptr,
                                           nullptr, nullptr));
}

TEST(CudaKernelArgs, TensorOpsRejectBadShapes) {
    float f[8] = {};
    uint8_t m[8] = {};
    int32_t ids[4] = {};
    int64_t index[2] = {};
    expect_invalid_argument([&] { cuda::convert<float, __half>(f, nullptr, -1, nullptr); },
                            "convert: expected non-negative sizes, got rows=1 cols=-1");
    RowsShape shape;
    shape.rows = 2;
    shape.cols = 4;
    shape.dst_row_stride = 3;
    expect_invalid_argument(
        [&] { cuda::convert_rows<float, float>(shape, f, f, nullptr); },
        "convert_rows: expected row strides >= cols = 4 (or 0 for dense rows), got src 0 and dst 3");
    shape.dst_row_stride = 0;
    expect_invalid_argument([&] { cuda::convert_rows<__half, float>(shape, nullptr, f, nullptr); },
                            "convert_rows: src and dst must not be null");
    expect_invalid_argument([&] { cuda::gather_rows<float>(f, -1, index, 2, 4, f, nullptr); },
                            "gather_rows: expected non-negative sizes, got src_rows=-1 count=2 block=4");
    expect_invalid_argument([&] { cuda::gather_rows<uint8_t>(m, 2, nullptr, 2, 4, m, nullptr); },
                            "gather_rows: src, index and dst must not be null");
    expect_invalid_argument([&] { cuda::add_position<__half>(nullptr, nullptr, 2, -1, 4, nullptr); },
                            "add_position: expected non-negative sizes, got B=2 L=-1 d=4");
    expect_invalid_argument([&] { cuda::lengths_to_mask(nullptr, 2, 3, m, nullptr); },
                            "lengths_to_mask: lengths and mask must not be null");
    expect_invalid_argument([&] { cuda::nonzero_row_mask<float>(nullptr, 2, 3, m, nullptr); },
                            "nonzero_row_mask: feat and mask must not be null");
    expect_invalid_argument([&] { cuda::argmax_rows<float>(f, 2, 0, ids, nullptr); },
                            "argmax_rows: expected rows >= 0 and cols >= 1, got rows=2 cols=0");
    expect_invalid_argument([&] { cuda::argmax_rows<__half>(nullptr, 1, int64_t{3} << 30, ids, nullptr); },
                            "argmax_rows: cols = 3221225472 must fit in 32 bits");
    GreedyStepParams greedy;
    greedy.batch = 2;
    greedy.num_answers = 4;
    greedy.step = 3;
    greedy.max_steps = 3;
    expect_invalid_argument([&] { cuda::greedy_step<float>(greedy, f, ids, m, f, ids, nullptr); },
                            "greedy_step: expected 0 <= step < max_steps, got step=3 max_steps=3");
    greedy.step = 0;
    expect_invalid_argument([&] { cuda::greedy_step<float>(greedy, f, ids, m, f, nullptr, nullptr); },
                            "greedy_step: logits, next, done, scores and tokens must not be null");
    expect_invalid_argument([&] { cuda::batched_transpose<__nv_bfloat16>(nullptr, nullptr, 1, -2, 3, nullptr); },
                            "batched_transpose: expected non-negative sizes, got N=1 R=-2 C=3");
    // Empty shapes: no pointer is touched and nothing is launched.
    shape.rows = 0;
    EXPECT_NO_THROW((cuda::convert<float, float>(nullptr, nullptr, 0, nullptr)));
    EXPECT_NO_THROW((cuda::convert_rows<__nv_bfloat16, float>(shape, nullptr, nullptr, nullptr)));
    EXPECT_NO_THROW(cuda::gather_rows<__half>(nullptr, 3, nullptr, 0, 8, nullptr, nullptr));
    EXPECT_NO_THROW(cuda::add_position<float>(nullptr, nullptr, 0, 14, 8, nullptr));
    EXPECT_NO_THROW(cuda::lengths_to_mask(nullptr, 0, 14, nullptr, nullptr));
    EXPECT_NO_THROW(cuda::nonzero_row_mask<float>(nullptr, 0, 2048, nullptr, nullptr));
    EXPECT_NO_THROW(cuda::argmax_rows<__nv_bfloat16>(nullptr, 0, 10, nullptr, nullptr));
    greedy.batch = 0;
    EXPECT_NO_THROW(cuda::greedy_step<__half>(greedy, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr));
    EXPECT_NO_THROW(cuda::batched_transpose<float>(nullptr, nullptr, 2, 512, 0, nullptr));
}

}  // namespace
}  // namespace vqa

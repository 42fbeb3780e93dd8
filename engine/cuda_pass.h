// One forward pass of the model on the GPU, in one element type: the device weights, the stages of a pass and its
// packed layout (cuda_pass.cpp), and how passes are staged, bucketed and replayed as CUDA graphs (cuda_model.cpp).
// Internal to engine/cuda_*.cpp; the public face is CudaModel (engine/cuda_model.h).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "engine/cpu_model.h"
#include "engine/cuda_image_encoder.h"
#include "engine/cuda_layers.h"
#include "engine/cuda_runtime.h"
#include "engine/model_weights.h"
#include "engine/packing.h"

namespace vqa::gpu {

// PyTorch recurrent weights on the device (gates stacked as in cpu_layers::RecurrentWeights).
template <typename T>
struct DeviceRecurrent {
    DeviceBuffer<T> weight_ih;  // [G·Hd, E]
    DeviceBuffer<T> weight_hh;  // [G·Hd, Hd]
    DeviceBuffer<T> bias_ih;    // [G·Hd]
    DeviceBuffer<T> bias_hh;    // [G·Hd]
    int64_t gates_hidden = 0;   // G·Hd
    int64_t input = 0;          // E
    int64_t hidden = 0;         // Hd

    static DeviceRecurrent upload(const cpu_layers::RecurrentWeights& host, int64_t gates, int64_t hidden) {
        DeviceRecurrent r;
        r.weight_ih = DeviceBuffer<T>::upload(to_element_type<T>(host.weight_ih));
        r.weight_hh = DeviceBuffer<T>::upload(to_element_type<T>(host.weight_hh));
        r.bias_ih = DeviceBuffer<T>::upload(to_element_type<T>(host.bias_ih));
        r.bias_hh = DeviceBuffer<T>::upload(to_element_type<T>(host.bias_hh));
        r.gates_hidden = gates * hidden;
        r.hidden = hidden;
        r.input = hidden > 0 ? static_cast<int64_t>(host.weight_ih.size()) / (gates * hidden) : 0;
        return r;
    }
};

// Where the inputs of one pass landed on the device.
struct DeviceInputs {
    const int64_t* ids = nullptr;          // [B, L]
    const int64_t* lengths = nullptr;      // [B]
    const int64_t* image_index = nullptr;  // [B]
    const float* pixels = nullptr;         // [Bi, 3, H, W]
    const float* regions = nullptr;        // [Bi, N, F]
    const float* boxes5 = nullptr;         // [Bi, N, 5]
    const int32_t* bos = nullptr;          // [B], generate heads: the first decoder input
};

// The packed layout of one pass (engine/packing.h): the host runs, and where their arrays landed on the device.
struct PassPacking {
    PackedSequences text;          // each question's token rows (source: rows of [B, L])
    PackedSequences images;        // each distinct image's kept tokens (source: rows of [Bi, Ni])
    PackedSequences per_question;  // mcan: each question's copy of its image's run (source: packed image rows)
    SharedRuns shared;             // simple: each question's keys are its image's run, read in place
    // Filled by stage_inputs: device views of the runs and the gather indices.
    SequenceRows text_rows;
    SequenceRows image_rows;
    SequenceRows question_rows;
    SequenceRows shared_rows;
    const int64_t* text_source = nullptr;
    const int64_t* image_source = nullptr;
    const int64_t* question_source = nullptr;
};

// How a pass lays out its sequences: kAuto lets Graph::forward decide; the load passes force each layout once.
enum class PackingMode { kAuto, kPadded, kPacked };

// The graph in one element type.
class GraphBase {
public:
    virtual ~GraphBase() = default;
    // packing: kAuto lets the pass decide (see Graph::forward); the load passes force each layout once.
    // pool_weights: fill ModelOutput::pool_text / pool_image (CpuModel::forward).
    virtual ModelOutput forward(const ImageBatch& images,
                                const TextBatch& text,
                                const ActivationSink* sink,
                                PackingMode packing,
                                bool pool_weights) = 0;
    virtual void set_use_graphs(bool use) = 0;
    virtual void set_pack_sequences(bool pack) = 0;
};

template <typename T>
class Graph final : public GraphBase {
public:
    // What the fusion stack reads and writes.
    struct Fusion {
        const T* image_tokens = nullptr;  // the rows of image_rows
        SequenceRows image_rows;          // per distinct image
        T* t = nullptr;                   // question tokens, the rows of text_rows, updated in place
        SequenceRows text_rows;
        T* pooled_text = nullptr;   // [B, out_dim]
        T* pooled_image = nullptr;  // [B, out_dim]
        // When the attention maps are wanted: the poolings' weights, [rows, G] float, the text's over text_rows,
        // the image's over the fusion stack's image rows (mcan: per question; simple: per distinct image).
        float* text_weights = nullptr;
        float* image_weights = nullptr;
    };

    // Uploads every weight in T (cuda_pass.cpp).
    Graph(CudaContext& ctx, const cpu_layers::ModelWeights& w, int64_t max_batch);

    ModelOutput forward(const ImageBatch& images,
                        const TextBatch& text,
                        const ActivationSink* sink,
                        PackingMode packing,
                        bool pool_weights) override;
    void set_use_graphs(bool use) override { use_graphs_ = use; }
    void set_pack_sequences(bool pack) override { pack_sequences_ = pack; }

    ~Graph() override {
        for (auto& entry : graphs_) {
            if (entry.second != nullptr) {
                VQA_CUDA_CHECK_NOTHROW(cudaGraphExecDestroy(entry.second));
            }
        }
    }

private:
    // The poolings' weights of a pass, on the device (Fusion::text_weights, image_weights) and their rows.
    struct PoolMaps {
        float* text = nullptr;
        float* image = nullptr;
        int64_t text_rows = 0;
        int64_t image_rows = 0;
    };
    // packing, when given, has its device views filled (stage_inputs); null runs the padded layout. maps, when
    // given, receives the poolings' weights.
    void run_device(const LayerContext& lc,
                    const DeviceInputs& in,
                    int64_t images,
                    int64_t batch,
                    const PassPacking* packing,
                    ModelOutput& out,
                    PoolMaps* maps = nullptr);
    ModelOutput read_logits(int64_t batch) const;
    ModelOutput run_eager(const ImageBatch& images,
                          const TextBatch& text,
                          const ActivationSink* sink,
                          PassPacking* packing = nullptr,
                          bool pool_weights = false);
    // The maps of a finished pass in the padded layout: ModelOutput::pool_text [B, L, G], pool_image [B, Ni, G].
    void read_pool_maps(const PoolMaps& maps, const PassPacking* packing, const TextBatch& text, ModelOutput& out);
    // Pads the pass to its bucket and replays (or captures) its CUDA graph; with may_pack, a pass that packing
    // shrinks is packed first (its row counts in buckets too: shape_for_graph).
    ModelOutput run_graph(const ImageBatch& images, const TextBatch& text, bool may_pack);
    void drop_graphs_if_arena_moved();
    void drop_graphs();
    // The runs of a pass with its padding removed (host work: the regions' validity is read from the host copy).
    // Images from real_images on only fill a bucket: one row each.
    PassPacking plan_packing(const ImageBatch& images, const TextBatch& text, int64_t real_images) const;
    // Whether packing leaves the layers fewer rows than the padded layout: text rows plus the fusion stack's image
    // rows (per question for mcan, per distinct image for simple).
    bool worth_packing(const PassPacking& packing, int64_t images, int64_t batch) const;
    // Fixes what a captured packed pass's launches read from the host: row counts rounded up to buckets, the
    // attentions' longest sequence at its largest possible length, and masks always present.
    void shape_for_graph(PassPacking& packing, int64_t images, int64_t batch) const;
    // Packs the inputs into pinned memory and, with to_device, queues their copy into the arena (a CUDA graph's
    // replay only needs the packing: its captured copy reads the same pinned addresses). With `packing`, its runs
    // travel in the same copy and its device views are filled in.
    DeviceInputs stage_inputs(
        const ImageBatch& images, const TextBatch& text, int64_t len, bool to_device, PassPacking* packing = nullptr);
    // tokens: [Bi·Ni, d] padded, or the packed rows of packing->image_rows.
    void encode_images(const LayerContext& lc,
                       const DeviceInputs& in,
                       int64_t count,
                       const PassPacking* packing,
                       T* tokens,
                       uint8_t* valid);
    // t: [B·L, d] padded, or the packed rows of packing->text_rows.
    void encode_text(const LayerContext& lc,
                     const DeviceInputs& in,
                     int64_t batch,
                     int64_t len,
                     const PassPacking* packing,
                     T* t,
                     const uint8_t* t_valid);
    // §6.4 and §7 on f (packing: null = padded): mcan (text SA, image SGA per question) or simple (text GA over
    // each distinct image's keys), then both poolings.
    void fuse_mcan(const LayerContext& lc, const DeviceInputs& in, const PassPacking* packing, const Fusion& f);
    void fuse_simple(const LayerContext& lc, const DeviceInputs& in, const PassPacking* packing, const Fusion& f);
    void decode_greedy(const LayerContext& lc, const DeviceInputs& in, const T* fused, int64_t batch, ModelOutput& out);

    CudaContext& ctx_;
    ModelConfig config_;
    cpu_layers::AttentionSpec spec_;
    int64_t vocab_rows_ = 0;
    int64_t num_answers_ = 0;
    int64_t tokens_ = 0;          // Ni
    int64_t trunk_features_ = 0;  // C_img
    int64_t region_features_ = 0;
    int64_t max_batch_ = 0;
    bool use_graphs_ = true;
    bool pack_sequences_ = true;
    PinnedBuffer pinned_in_;
    PinnedBuffer pinned_out_;
    // One instantiated CUDA graph per bucket, null until the bucket's second pass: keyed by the questions and the
    // images, and for packed passes their text, image and per-question image rows (0 for padded passes).
    std::map<std::array<int64_t, 5>, cudaGraphExec_t> graphs_;
    int64_t packed_graphs_ = 0;             // captured packed buckets in graphs_
    uint64_t graphs_arena_generation_ = 0;  // the arena generation the non-null graphs were captured in
    // Host copies of a padded batch (kept to reuse their capacity).
    std::vector<int64_t> padded_ids_;
    std::vector<int64_t> padded_lengths_;
    std::vector<int64_t> padded_index_;
    std::vector<float> padded_pixels_;
    std::vector<float> padded_regions_;
    std::vector<float> padded_boxes_;

    std::unique_ptr<CudaImageTrunk<T>> trunk_;
    DeviceLinear<T> box_;
    DeviceLinear<T> adapter_;
    DeviceBuffer<T> embedding_;
    DeviceRecurrent<T> text_lstm_;
    DeviceBuffer<T> position_;
    std::vector<DeviceSelfAttentionLayer<T>> text_layers_;
    std::vector<DeviceSelfAttentionLayer<T>> fusion_text_;
    std::vector<DeviceGuidedAttentionLayer<T>> fusion_image_;
    std::vector<DeviceCrossAttentionLayer<T>> fusion_cross_;
    DeviceAttentionPool<T> pool_text_;
    DeviceAttentionPool<T> pool_image_;
    DeviceLayerNorm head_norm_;
    DeviceLinear<T> classifier_;
    DeviceBuffer<float> classifier_bias_;
    DeviceLinear<T> head_init_;
    DeviceBuffer<T> answer_embedding_;
    DeviceRecurrent<T> cell_;
    DeviceLinear<T> head_out_;
    DeviceBuffer<float> head_out_bias_;
};

// A Graph<T> for the element type of a precision.
template <typename T>
std::unique_ptr<GraphBase> make_graph(CudaContext& ctx, const cpu_layers::ModelWeights& w, int64_t max_batch);

}  // namespace vqa::gpu

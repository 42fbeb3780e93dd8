// split_heads throughput on the GPU for B = 1, 32, 256, L = 14, 100, H = 8, Dh = 64 in fp16, bf16 and fp32: µs per
// call, GB/s (bytes read + written) and its fraction of the copy ceiling, and vs_baseline against a device-to-device
// cudaMemcpyAsync of the same bytes measured in the same run (1.0: as fast as a plain copy). Exits 0 with one line
// when there is no device.
#include <cuda_runtime_api.h>

#include "bench/bench_util.h"
#include "kernels/split_heads.h"

namespace {

using vqa::bench::DeviceArray;

// Args: B, L.
template <typename T>
void BM_split_heads(benchmark::State& state) {
    const vqa::HeadsShape shape{static_cast<int>(state.range(0)), static_cast<int>(state.range(1)), vqa::bench::kHeads,
                                vqa::bench::kHeadDim, 0};
    const DeviceArray<T> x(static_cast<size_t>(shape.numel()));  // [B, L, H·Dh]
    const DeviceArray<T> y(static_cast<size_t>(shape.numel()));  // [B, H, L, Dh]

    vqa::bench::Timer timer;
    const auto copy = [&] {
        VQA_CUDA_CHECK(cudaMemcpyAsync(y.get(), x.get(), x.bytes(), cudaMemcpyDeviceToDevice, timer.stream()));
    };
    const double copy_ms = timer.mean_ms(copy);
    const double split_ms = timer.run(state, [&] { vqa::cuda::split_heads(x.get(), y.get(), shape, timer.stream()); });
    vqa::bench::report<T>(state, split_ms, copy_ms, 2.0 * static_cast<double>(x.bytes()), 0.0);
}

}  // namespace

int main(int argc, char** argv) {
    vqa::bench::register_element_types("split_heads", BM_split_heads<__half>, BM_split_heads<__nv_bfloat16>,
                                       BM_split_heads<float>, vqa::bench::token_shapes);
    return vqa::bench::run_benchmarks("split_heads_bench", argc, argv);
}

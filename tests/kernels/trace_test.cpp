// TraceRange and TraceRecorder (kernels/trace.h): what is recorded, in which order and at which depth, on which
// threads, and nothing when no recorder is installed. Built twice: trace_test (label cpu) runs the host cases;
// trace_gpu_test (label gpu, VQA_TRACE_TEST_DEVICE=1) times ranges on a CUDA stream with events.
#include "kernels/trace.h"

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/kernels/test_util.h"

namespace vqa {
namespace {

// Each record lies within the nearest earlier record of its thread one level up, and starts no earlier than it.
void expect_nested(const std::vector<TraceRecord>& records) {
    for (std::size_t i = 0; i < records.size(); ++i) {
        const TraceRecord& child = records[i];
        EXPECT_GE(child.end_us, child.start_us) << child.name;
        if (child.depth == 0) {
            continue;
        }
        std::size_t p = i;
        while (p-- > 0) {
            if (records[p].thread == child.thread && records[p].device == child.device &&
                records[p].depth == child.depth - 1) {
                break;
            }
        }
        ASSERT_LT(p, i) << child.name << " has no parent";
        EXPECT_GE(child.start_us, records[p].start_us) << child.name << " in " << records[p].name;
        EXPECT_LE(child.end_us, records[p].end_us) << child.name << " in " << records[p].name;
    }
}

std::vector<std::string> names(const std::vector<TraceRecord>& records) {
    std::vector<std::string> out;
    for (const TraceRecord& r : records) {
        out.push_back(r.name);
    }
    return out;
}

#if !VQA_TRACE_TEST_DEVICE

// Busy-waits (sleeping could return early on some clocks): every range then lasts measurably long.
void spin_for(std::chrono::microseconds duration) {
    const auto until = std::chrono::steady_clock::now() + duration;
    while (std::chrono::steady_clock::now() < until) {
    }
}

TEST(TraceTest, RecordsNestedRangesInBeginOrder) {
    TraceRecorder recorder;
    {
        const TraceRecordingScope recording(recorder);
        const TraceRange outer("outer");
        spin_for(std::chrono::microseconds(200));
        {
            const TraceRange first("first");
            spin_for(std::chrono::microseconds(200));
            {
                const std::string dynamic = "layer." + std::to_string(3);
                const TraceRange inner(dynamic);  // the name is copied: the string may go away
            }
        }
        const TraceRange second("second");
        spin_for(std::chrono::microseconds(200));
    }
    const std::vector<TraceRecord> records = recorder.finish();
    ASSERT_EQ(names(records), (std::vector<std::string>{"outer", "first", "layer.3", "second"}));
    const int depths[] = {0, 1, 2, 1};
    for (std::size_t i = 0; i < records.size(); ++i) {
        EXPECT_EQ(records[i].depth, depths[i]) << records[i].name;
        EXPECT_EQ(records[i].thread, 0);
        EXPECT_FALSE(records[i].device);
    }
    expect_nested(records);
    EXPECT_GE(records[0].end_us - records[0].start_us, 600.0);  // three spins of 200 µs
    EXPECT_GE(records[1].end_us - records[1].start_us, 200.0);
    EXPECT_GE(records[3].start_us, records[1].end_us);  // siblings in order
}

TEST(TraceTest, NothingRecordedWithoutARecorder) {
    TraceRecorder recorder;
    {
        const TraceRange before("before");  // no recorder installed yet
        const TraceRecordingScope recording(recorder);
        const TraceRange during("during");
    }
    {
        const TraceRange after("after");  // the scope has ended
    }
    EXPECT_EQ(names(recorder.finish()), std::vector<std::string>{"during"});
    EXPECT_EQ(detail::trace_thread_state.recorder, nullptr);
    EXPECT_EQ(detail::trace_thread_state.depth, 0);
}

TEST(TraceTest, RangesOnOtherThreadsAreNotRecorded) {
    TraceRecorder recorder;
    TraceRecorder other_recorder;
    std::vector<TraceRecord> other_records;
    {
        const TraceRecordingScope recording(recorder);
        const TraceRange mine("mine");
        // A thread without a recorder records nothing; one with its own recorder records only there.
        std::thread plain([] { const TraceRange range("plain thread"); });
        std::thread own([&] {
            const TraceRecordingScope other(other_recorder);
            const TraceRange range("own recorder");
        });
        plain.join();
        own.join();
    }
    other_records = other_recorder.finish();
    EXPECT_EQ(names(recorder.finish()), std::vector<std::string>{"mine"});
    ASSERT_EQ(names(other_records), std::vector<std::string>{"own recorder"});
    EXPECT_EQ(other_records[0].depth, 0);
}

TEST(TraceTest, OneRecorderOnSeveralThreads) {
    TraceRecorder recorder;
    {
        const TraceRecordingScope recording(recorder);
        const TraceRange main_range("main");
        std::thread worker([&] {
            const TraceRecordingScope shared(recorder);
            const TraceRange outer("worker");
            const TraceRange inner("worker.inner");
        });
        worker.join();
    }
    const std::vector<TraceRecord> records = recorder.finish();
    ASSERT_EQ(names(records), (std::vector<std::string>{"main", "worker", "worker.inner"}));
    EXPECT_EQ(records[0].thread, 0);
    EXPECT_EQ(records[1].thread, 1);  // its own ordinal, and depths counted per thread
    EXPECT_EQ(records[1].depth, 0);
    EXPECT_EQ(records[2].depth, 1);
    expect_nested(records);
}

TEST(TraceTest, NestedScopesRestoreThePreviousRecorder) {
    TraceRecorder outer_recorder;
    TraceRecorder inner_recorder;
    {
        const TraceRecordingScope outer(outer_recorder);
        const TraceRange a("a");
        {
            const TraceRecordingScope inner(inner_recorder);
            const TraceRange b("b");
        }
        const TraceRange c("c");
    }
    const std::vector<TraceRecord> outer_records = outer_recorder.finish();
    ASSERT_EQ(names(outer_records), (std::vector<std::string>{"a", "c"}));
    EXPECT_EQ(outer_records[1].depth, 1);  // the depth of the outer scope came back with it
    EXPECT_EQ(names(inner_recorder.finish()), std::vector<std::string>{"b"});
}

TEST(TraceTest, FinishEmptiesTheRecorderForReuse) {
    TraceRecorder recorder;
    const TraceRecordingScope recording(recorder);
    { const TraceRange first("first"); }
    EXPECT_EQ(names(recorder.finish()), std::vector<std::string>{"first"});
    EXPECT_TRUE(recorder.finish().empty());
    { const TraceRange second("second"); }
    const std::vector<TraceRecord> records = recorder.finish();
    ASSERT_EQ(names(records), std::vector<std::string>{"second"});
    EXPECT_EQ(records[0].depth, 0);
    EXPECT_EQ(records[0].thread, 0);
}

TEST(TraceTest, OpenRangeEndsAtFinish) {
    TraceRecorder recorder;
    const TraceRecordingScope recording(recorder);
    const TraceRange open("still open");
    spin_for(std::chrono::microseconds(100));
    const std::vector<TraceRecord> records = recorder.finish();
    ASSERT_EQ(records.size(), 1u);
    EXPECT_GE(records[0].end_us - records[0].start_us, 100.0);
}

TEST(TraceTest, NullStreamIsHostOnly) {
    TraceRecorder recorder;
    {
        const TraceRecordingScope recording(recorder);
        const TraceRange range("launcher", nullptr);
    }
    const std::vector<TraceRecord> records = recorder.finish();
    ASSERT_EQ(records.size(), 1u);
    EXPECT_FALSE(records[0].device);
}

#else  // VQA_TRACE_TEST_DEVICE

// Enough work that each range lasts well over the events' resolution (about half a microsecond).
constexpr std::size_t kBytes = std::size_t{64} << 20;

TEST(TraceDeviceTest, StreamRangesGetDeviceTimes) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    test::CudaStream stream;
    void* buffer = nullptr;
    ASSERT_EQ(cudaMalloc(&buffer, kBytes), cudaSuccess);
    TraceRecorder recorder;
    {
        const TraceRecordingScope recording(recorder);
        const TraceRange outer("outer", stream.get());
        VQA_CUDA_CHECK(cudaMemsetAsync(buffer, 1, kBytes, stream.get()));
        {
            const TraceRange inner("inner", stream.get());
            VQA_CUDA_CHECK(cudaMemsetAsync(buffer, 2, kBytes, stream.get()));
        }
        const TraceRange host_only("host only");
    }
    const std::vector<TraceRecord> records = recorder.finish();
    VQA_CUDA_CHECK(cudaFree(buffer));
    // Each device record follows the host record of its range.
    ASSERT_EQ(names(records), (std::vector<std::string>{"outer", "outer", "inner", "inner", "host only"}));
    const bool device[] = {false, true, false, true, false};
    for (std::size_t i = 0; i < records.size(); ++i) {
        EXPECT_EQ(records[i].device, device[i]) << i;
    }
    EXPECT_EQ(records[1].depth, 0);
    EXPECT_EQ(records[3].depth, 1);
    expect_nested(records);
    EXPECT_GT(records[3].end_us - records[3].start_us, 1.0);  // 64 MiB memset: tens of microseconds at least
    EXPECT_GT(records[1].end_us - records[1].start_us, records[3].end_us - records[3].start_us);
}

TEST(TraceDeviceTest, NoEventsWhileCapturing) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    test::CudaStream stream;
    void* buffer = nullptr;
    ASSERT_EQ(cudaMalloc(&buffer, kBytes), cudaSuccess);
    TraceRecorder recorder;
    cudaGraph_t graph = nullptr;
    {
        const TraceRecordingScope recording(recorder);
        VQA_CUDA_CHECK(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
        {
            const TraceRange captured("captured", stream.get());
            VQA_CUDA_CHECK(cudaMemsetAsync(buffer, 3, kBytes, stream.get()));
        }
        // An event recorded into the capture would have become a graph node; the capture must still be valid.
        VQA_CUDA_CHECK(cudaStreamEndCapture(stream.get(), &graph));
    }
    ASSERT_NE(graph, nullptr);
    std::size_t nodes = 0;
    VQA_CUDA_CHECK(cudaGraphGetNodes(graph, nullptr, &nodes));
    EXPECT_EQ(nodes, 1u);  // the memset only
    VQA_CUDA_CHECK(cudaGraphDestroy(graph));
    const std::vector<TraceRecord> records = recorder.finish();
    VQA_CUDA_CHECK(cudaFree(buffer));
    ASSERT_EQ(names(records), std::vector<std::string>{"captured"});
    EXPECT_FALSE(records[0].device);
}

TEST(TraceDeviceTest, RecorderIsReusableAfterFinish) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    test::CudaStream stream;
    TraceRecorder recorder;
    const TraceRecordingScope recording(recorder);
    for (int round = 0; round < 3; ++round) {
        { const TraceRange range("round", stream.get()); }
        const std::vector<TraceRecord> records = recorder.finish();
        ASSERT_EQ(records.size(), 2u) << "round " << round;
        EXPECT_TRUE(records[1].device);
        EXPECT_GE(records[1].end_us, records[1].start_us);
    }
}

#endif  // VQA_TRACE_TEST_DEVICE

}  // namespace
}  // namespace vqa

// TraceRange: one scoped range that names a stage of the engine or a kernel launcher, for two audiences.
//
//   { vqa::TraceRange range("fusion.image.0"); ... }          a host stage
//   { vqa::TraceRange range("fused_attention", stream); ... } a launcher: also timed on `stream` when recording
//
// 1. Nsight Systems and Nsight Compute: with CUDA, every range is an NVTX push/pop in the domain "vqa" (NVTX3 is
//    header-only; with no tool attached the calls return at once). Without CUDA this part compiles to nothing.
// 2. Self-recording: while a TraceRecorder is installed on the calling thread (TraceRecordingScope), each range
//    is also recorded there: wall-clock start and end (steady_clock), nesting depth and thread, and, when a
//    stream is given and the build has CUDA, a pair of CUDA events on that stream, resolved to device time by
//    TraceRecorder::finish(). When nothing is installed a range costs its NVTX push/pop and one load of a
//    thread-local pointer; recording is per thread, so other threads (other Engine::answer calls) are unaffected.
//
//   vqa::TraceRecorder recorder;
//   {
//       vqa::TraceRecordingScope recording(recorder);  // this thread only, until the end of the scope
//       run_model();                                    // its TraceRanges are recorded
//   }
//   std::vector<vqa::TraceRecord> records = recorder.finish();
//
// Ranges nest strictly (they are scoped objects); a recording scope must enclose the ranges opened under it.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if VQA_WITH_CUDA
#include <nvtx3/nvToolsExt.h>
#endif

// The CUDA runtime's stream type is `CUstream_st*` (cudaStream_t); declaring the struct lets this header take a
// stream without including CUDA headers, so that plain C++ code and builds without CUDA can use it.
struct CUstream_st;

namespace vqa {

using TraceStream = CUstream_st*;  // a cudaStream_t; null = no stream (host time only)

// One recorded range. Device records (device = true) come right after the host record of the same range.
struct TraceRecord {
    std::string name;
    int depth = 0;          // 0 = outermost range recorded on its thread
    int thread = 0;         // 0 = the first thread that recorded into the recorder, 1 = the next, ...
    double start_us = 0.0;  // microseconds on std::chrono::steady_clock (since its epoch)
    double end_us = 0.0;    // device records: GPU time placed on the host timeline (see TraceRecorder::finish)
    bool device = false;    // true: the time between two CUDA events on the range's stream
};

class TraceRecorder;

namespace detail {

// What a thread records into, and how deep its open recorded ranges are.
struct TraceThreadState {
    TraceRecorder* recorder = nullptr;
    int depth = 0;
};

inline thread_local TraceThreadState trace_thread_state;

}  // namespace detail

// Collects the ranges of the threads it is installed on. Thread-safe: one recorder may be installed on several
// threads at once. Not copyable or movable (open ranges point at it).
class TraceRecorder {
public:
    TraceRecorder();
    ~TraceRecorder();  // destroys its CUDA events; never throws
    TraceRecorder(const TraceRecorder&) = delete;
    TraceRecorder& operator=(const TraceRecorder&) = delete;

    // Returns the records in the order the ranges began (a parent before its children) and empties the recorder
    // for reuse. Call it when the ranges have ended: a range still open is given the current time as its end.
    // Device records are resolved here: it waits for each range's end event (cudaEventSynchronize) and places it
    // on the host timeline by its elapsed time from the first device range's start, whose host time is known;
    // durations are exact, the placement approximate (the GPU may start the first range after its launch).
    // A device range that could not be timed (an error, printed when it happened; a range cut by CUDA graph
    // capture) is left out. Throws vqa::Error (kCuda) if waiting for or reading an event fails.
    std::vector<TraceRecord> finish();

private:
    friend class TraceRange;
    struct DeviceEvents;                                   // the CUDA part (trace.cpp)
    static constexpr std::size_t kNone = ~std::size_t{0};  // no device range

    // Where an open range's records are: the host record, and the pending device range or kNone.
    struct Open {
        std::size_t record = kNone;
        std::size_t device = kNone;
    };

    struct Entry {
        TraceRecord record;
        bool closed = false;  // host: the range has ended; device: its times are resolved
    };

    // Throws std::bad_alloc before changing anything; the device part is best-effort and never throws.
    Open begin(const char* name, TraceStream stream, int depth);
    void end(const Open& open, TraceStream stream) noexcept;
    // mutex_ held by the callers of these:
    int thread_ordinal();
    std::size_t begin_device(TraceStream stream, const TraceRecord& host) noexcept;
    void end_device(std::size_t pending, TraceStream stream) noexcept;
    void resolve_device();

    std::mutex mutex_;
    std::vector<Entry> entries_;
    std::vector<std::thread::id> threads_;  // thread ordinal -> id
    std::unique_ptr<DeviceEvents> device_;  // created at the first range with a stream
};

// Installs `recorder` on the calling thread for the lifetime of the scope (the previous one, if any, comes back
// after). Must outlive the ranges opened under it, and be destroyed on the thread that created it.
class TraceRecordingScope {
public:
    explicit TraceRecordingScope(TraceRecorder& recorder) noexcept : previous_(detail::trace_thread_state) {
        detail::trace_thread_state = {&recorder, 0};
    }
    ~TraceRecordingScope() { detail::trace_thread_state = previous_; }
    TraceRecordingScope(const TraceRecordingScope&) = delete;
    TraceRecordingScope& operator=(const TraceRecordingScope&) = delete;

private:
    detail::TraceThreadState previous_;
};

class TraceRange {
public:
    // `name` is read during the constructor only. `stream`: the stream the range's GPU work goes to (a launcher's
    // stream argument), timed with events when recording in a CUDA build; null for host-only stages. A range on
    // the legacy default stream (0) is therefore timed on the host only.
    explicit TraceRange(const char* name, TraceStream stream = nullptr) noexcept
        : recorder_(detail::trace_thread_state.recorder), stream_(stream) {
#if VQA_WITH_CUDA
        nvtxEventAttributes_t attributes{};
        attributes.version = NVTX_VERSION;
        attributes.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
        attributes.messageType = NVTX_MESSAGE_TYPE_ASCII;
        attributes.message.ascii = name;
        nvtxDomainRangePushEx(nvtx_domain(), &attributes);
#endif
        if (recorder_ != nullptr) {
            begin_recording(name);
        }
    }
    explicit TraceRange(const std::string& name, TraceStream stream = nullptr) noexcept
        : TraceRange(name.c_str(), stream) {}

    ~TraceRange() {
        if (recorder_ != nullptr) {
            --detail::trace_thread_state.depth;
            recorder_->end(open_, stream_);
        }
#if VQA_WITH_CUDA
        nvtxDomainRangePop(nvtx_domain());
#endif
    }

    TraceRange(const TraceRange&) = delete;
    TraceRange& operator=(const TraceRange&) = delete;

private:
#if VQA_WITH_CUDA
    static nvtxDomainHandle_t nvtx_domain() noexcept {
        static const nvtxDomainHandle_t handle = nvtxDomainCreateA("vqa");
        return handle;
    }
#endif
    // Out of line: only recording calls pay for it. A range that cannot be recorded (out of memory) is left out.
    void begin_recording(const char* name) noexcept;

    TraceRecorder* recorder_;
    TraceStream stream_;
    TraceRecorder::Open open_;
};

}  // namespace vqa

#include "kernels/trace.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <new>

#if VQA_WITH_CUDA
#include <cuda_runtime_api.h>

#include "kernels/cuda_check.h"
#endif

namespace vqa {
namespace {

double now_us() noexcept {
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Makes room for `extra` more elements, growing geometrically (reserve() alone would reallocate on every call).
template <typename T>
void reserve_more(std::vector<T>& v, std::size_t extra) {
    if (v.capacity() - v.size() < extra) {
        v.reserve(std::max(2 * v.capacity(), v.size() + extra));
    }
}

#if VQA_WITH_CUDA
// Device timing is best-effort and runs inside TraceRange's constructor and destructor: a failed call is printed
// (as VQA_CUDA_CHECK_NOTHROW does) and its range left out, never thrown. The failure is also cleared from the
// runtime's last-error slot, so that the next launcher's VQA_CUDA_CHECK_LAUNCH does not report it as its own.
bool cuda_succeeded(cudaError_t status, const char* expr, int line) noexcept {
    if (status == cudaSuccess) {
        return true;
    }
    std::fprintf(stderr, "vqa: CUDA error: %s in `%s` at trace.cpp:%d\n", cudaGetErrorString(status), expr, line);
    static_cast<void>(cudaGetLastError());
    return false;
}
#define VQA_TRACE_CUDA_OK(expr) cuda_succeeded((expr), #expr, __LINE__)

// False when the stream is being captured into a CUDA graph: an event recorded there would be a graph node, not
// a timestamp (and reading it later would be an error).
bool stream_is_timeable(cudaStream_t stream) noexcept {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    return VQA_TRACE_CUDA_OK(cudaStreamIsCapturing(stream, &capture)) && capture == cudaStreamCaptureStatusNone;
}
#endif

}  // namespace

#if VQA_WITH_CUDA
struct TraceRecorder::DeviceEvents {
    // A device range whose start event has been recorded.
    struct Pending {
        std::size_t entry = 0;  // its record in entries_
        cudaEvent_t start = nullptr;
        cudaEvent_t stop = nullptr;
        bool stopped = false;  // its stop event has been recorded
    };

    std::vector<cudaEvent_t> pool;    // every event created, timing enabled; pool[0, used) are in use
    std::size_t used = 0;             // reset by finish(), so a reused recorder creates no new events
    cudaEvent_t reference = nullptr;  // recorded on the stream of the first device range, before its start
    double reference_us = 0.0;        // host time just before `reference` was recorded
    std::vector<Pending> pending;

    DeviceEvents() = default;
    DeviceEvents(const DeviceEvents&) = delete;
    DeviceEvents& operator=(const DeviceEvents&) = delete;
    ~DeviceEvents() {
        for (cudaEvent_t event : pool) {
            VQA_CUDA_CHECK_NOTHROW(cudaEventDestroy(event));
        }
    }

    // A free event from the pool, created when none is left; null if creating failed (printed). The pool grows
    // before the event is created, so that std::bad_alloc cannot leak it.
    cudaEvent_t acquire() {
        if (used == pool.size()) {
            reserve_more(pool, 1);
            cudaEvent_t event = nullptr;
            if (!VQA_TRACE_CUDA_OK(cudaEventCreate(&event))) {
                return nullptr;
            }
            pool.push_back(event);
        }
        return pool[used++];
    }

    void reset() noexcept {
        used = 0;
        reference = nullptr;
        pending.clear();
    }
};
#else
struct TraceRecorder::DeviceEvents {};
#endif

TraceRecorder::TraceRecorder() = default;
TraceRecorder::~TraceRecorder() = default;

int TraceRecorder::thread_ordinal() {
    const std::thread::id self = std::this_thread::get_id();
    const auto it = std::find(threads_.begin(), threads_.end(), self);
    if (it != threads_.end()) {
        return static_cast<int>(it - threads_.begin());
    }
    threads_.push_back(self);
    return static_cast<int>(threads_.size()) - 1;
}

TraceRecorder::Open TraceRecorder::begin(const char* name, TraceStream stream, int depth) {
    const double now = now_us();
    TraceRecord record;
    record.name = name;
    record.depth = depth;
    record.start_us = now;
    record.end_us = now;
    const std::lock_guard<std::mutex> lock(mutex_);
    record.thread = thread_ordinal();
    reserve_more(entries_, 2);  // the host record and a device one: the push_backs cannot throw
    entries_.push_back({std::move(record), false});
    Open open;
    open.record = entries_.size() - 1;
    if (stream != nullptr) {
        open.device = begin_device(stream, entries_.back().record);
    }
    return open;
}

void TraceRecorder::end(const Open& open, TraceStream stream) noexcept {
    const double now = now_us();
    const std::lock_guard<std::mutex> lock(mutex_);
    Entry& entry = entries_[open.record];
    entry.record.end_us = now;
    entry.closed = true;
    if (open.device != kNone) {
        end_device(open.device, stream);
    }
}

#if VQA_WITH_CUDA
std::size_t TraceRecorder::begin_device(TraceStream stream, const TraceRecord& host) noexcept try {
    if (!stream_is_timeable(stream)) {
        return kNone;
    }
    if (device_ == nullptr) {
        device_ = std::make_unique<DeviceEvents>();
    }
    DeviceEvents& d = *device_;
    TraceRecord record = host;
    record.device = true;
    reserve_more(d.pending, 1);
    if (d.reference == nullptr) {
        cudaEvent_t reference = d.acquire();
        const double host_us = now_us();
        if (reference == nullptr || !VQA_TRACE_CUDA_OK(cudaEventRecord(reference, stream))) {
            return kNone;
        }
        d.reference = reference;
        d.reference_us = host_us;
    }
    cudaEvent_t start = d.acquire();
    cudaEvent_t stop = d.acquire();
    if (start == nullptr || stop == nullptr || !VQA_TRACE_CUDA_OK(cudaEventRecord(start, stream))) {
        return kNone;
    }
    entries_.push_back({std::move(record), false});  // capacity reserved by begin()
    d.pending.push_back({entries_.size() - 1, start, stop, false});
    return d.pending.size() - 1;
} catch (const std::bad_alloc&) {
    return kNone;  // timed on the host only
}

void TraceRecorder::end_device(std::size_t pending, TraceStream stream) noexcept {
    DeviceEvents::Pending& p = device_->pending[pending];
    // Not stopped (so left out by finish()) when capture began on the stream inside the range.
    p.stopped = stream_is_timeable(stream) && VQA_TRACE_CUDA_OK(cudaEventRecord(p.stop, stream));
}

void TraceRecorder::resolve_device() {
    DeviceEvents& d = *device_;
    if (d.reference != nullptr) {
        VQA_CUDA_CHECK(cudaEventSynchronize(d.reference));
    }
    for (const DeviceEvents::Pending& p : d.pending) {
        if (!p.stopped) {
            continue;
        }
        VQA_CUDA_CHECK(cudaEventSynchronize(p.stop));
        VQA_CUDA_CHECK(cudaEventSynchronize(p.start));  // on the same stream, so done already; one call to be sure
        float start_ms = 0.0f;
        float stop_ms = 0.0f;
        VQA_CUDA_CHECK(cudaEventElapsedTime(&start_ms, d.reference, p.start));
        VQA_CUDA_CHECK(cudaEventElapsedTime(&stop_ms, d.reference, p.stop));
        Entry& entry = entries_[p.entry];
        entry.record.start_us = d.reference_us + 1000.0 * static_cast<double>(start_ms);
        entry.record.end_us = d.reference_us + 1000.0 * static_cast<double>(stop_ms);
        entry.closed = true;
    }
}
#else
std::size_t TraceRecorder::begin_device(TraceStream /*stream*/, const TraceRecord& /*host*/) noexcept {
    return kNone;  // no CUDA in this build: host time only
}
void TraceRecorder::end_device(std::size_t /*pending*/, TraceStream /*stream*/) noexcept {}
void TraceRecorder::resolve_device() {}
#endif

std::vector<TraceRecord> TraceRecorder::finish() {
    const double now = now_us();
    const std::lock_guard<std::mutex> lock(mutex_);
    // Empties the recorder however this ends, so that a failed finish() does not leave device ranges behind.
    struct Reset {
        TraceRecorder& recorder;
        ~Reset() {
            recorder.entries_.clear();
            recorder.threads_.clear();
            if (recorder.device_ != nullptr) {
#if VQA_WITH_CUDA
                recorder.device_->reset();
#endif
            }
        }
    } reset{*this};
    for (Entry& entry : entries_) {
        if (!entry.closed && !entry.record.device) {
            entry.record.end_us = std::max(now, entry.record.start_us);
            entry.closed = true;
        }
    }
    if (device_ != nullptr) {
        resolve_device();
    }
    std::vector<TraceRecord> records;
    records.reserve(entries_.size());
    for (Entry& entry : entries_) {
        if (entry.closed) {
            records.push_back(std::move(entry.record));
        }
    }
    return records;
}

void TraceRange::begin_recording(const char* name) noexcept {
    detail::TraceThreadState& state = detail::trace_thread_state;
    try {
        open_ = recorder_->begin(name, stream_, state.depth);
        ++state.depth;
    } catch (...) {  // std::bad_alloc, or std::system_error from the mutex: this range goes unrecorded
        recorder_ = nullptr;
    }
}

}  // namespace vqa

// Image preparation on worker threads (engine/image_preparer.h).
#include "engine/image_preparer.h"

#include <algorithm>
#include <new>
#include <system_error>

#include "kernels/trace.h"

namespace vqa {

ImagePreparer::ImagePreparer(const std::vector<ImageInput>& images,
                             std::vector<std::size_t> order,
                             const ModelConfig& config,
                             int64_t max_pixels,
                             int threads)
    : images_(images),
      order_(std::move(order)),
      config_(config),
      max_pixels_(max_pixels),
      outcomes_(images.size()),
      done_(images.size(), 0) {
    TraceRecorder* recorder = detail::trace_thread_state.recorder;
    try {
        for (int t = 0; t < threads; ++t) {
            workers_.emplace_back([this, recorder] {
                if (recorder != nullptr) {
                    const TraceRecordingScope recording(*recorder);
                    work();
                } else {
                    work();
                }
            });
        }
    } catch (const std::system_error&) {
        // The threads that could be started share the work; with none, wait() prepares each image itself.
    }
}

ImagePreparer::~ImagePreparer() {
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    for (std::thread& worker : workers_) {
        worker.join();
    }
}

int ImagePreparer::default_threads(std::size_t images) {
    if (images <= 1) {
        return 0;
    }
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    return static_cast<int>(std::min<std::size_t>({images, cores, 8}));
}

void ImagePreparer::prepare(std::size_t m) noexcept {
    Outcome outcome;
    const TraceRange range("prepare_image");  // decode + preprocess, or read_regions
    try {
        outcome.image = prepare_image(images_[m], config_, max_pixels_);
    } catch (const Error& e) {
        outcome.code = e.code();
        outcome.error = e.what();
    } catch (const std::bad_alloc&) {
        outcome.code = ErrorCode::kOutOfMemory;
        outcome.error = images_[m].name() + ": out of memory while decoding";
    } catch (const std::exception& e) {
        outcome.code = ErrorCode::kInternal;
        outcome.error = images_[m].name() + ": " + e.what();
    }
    const std::lock_guard<std::mutex> lock(mutex_);
    outcomes_[m] = std::move(outcome);
    done_[m] = 1;
    ready_.notify_all();
}

void ImagePreparer::work() noexcept {
    for (;;) {
        std::size_t m = 0;
        {
            const std::lock_guard<std::mutex> lock(mutex_);
            if (stopping_ || next_ >= order_.size()) {
                return;
            }
            m = order_[next_++];
        }
        prepare(m);
    }
}

const ImagePreparer::Outcome& ImagePreparer::wait(std::size_t m) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (workers_.empty() && !done_[m]) {
        // No workers: prepare it here (it is taken out of the queue so that it is prepared once).
        lock.unlock();
        prepare(m);
        lock.lock();
    }
    ready_.wait(lock, [&] { return done_[m] != 0; });
    return outcomes_[m];
}

}  // namespace vqa

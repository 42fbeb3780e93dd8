// Decoding and preprocessing the images of one answer() call on worker threads, in the order the forward passes
// will need them, so that the passes (on the GPU, or the CPU's BLAS threads) overlap the decoding of the images
// of later passes. Internal to engine/.
//
//   ImagePreparer preparer(images, order, config, max_pixels, threads);
//   const ImagePreparer::Outcome& first = preparer.wait(order[0]);   // blocks until that image is ready
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/config.h"
#include "engine/inputs.h"
#include "vqa/engine.h"

namespace vqa {

class ImagePreparer {
public:
    struct Outcome {
        std::optional<PreparedImage> image;          // set when the image could be used
        ErrorCode code = ErrorCode::kInternal;       // otherwise: why not
        std::string error;
    };

    // Prepares images[order[0]], images[order[1]], ... (each index once) with prepare_image(). threads == 0
    // prepares each image on the calling thread when it is waited for. `images` and `config` must outlive the
    // preparer. A profile being recorded on the calling thread also records the workers' ranges.
    ImagePreparer(const std::vector<ImageInput>& images,
                  std::vector<std::size_t> order,
                  const ModelConfig& config,
                  int64_t max_pixels,
                  int threads);
    // Stops handing out images and joins the workers (an image being prepared is finished first).
    ~ImagePreparer();
    ImagePreparer(const ImagePreparer&) = delete;
    ImagePreparer& operator=(const ImagePreparer&) = delete;

    // The outcome for image m (one of `order`); waits until it is known. Never throws for a bad image.
    const Outcome& wait(std::size_t m);

    // Worker threads for `images` images to prepare: none for one image, else up to the cores, at most 8.
    static int default_threads(std::size_t images);

private:
    void prepare(std::size_t m) noexcept;
    void work() noexcept;

    const std::vector<ImageInput>& images_;
    std::vector<std::size_t> order_;
    const ModelConfig& config_;
    int64_t max_pixels_;
    std::vector<Outcome> outcomes_;  // by image index
    std::vector<char> done_;         // by image index, under mutex_
    std::size_t next_ = 0;           // next position of order_ to hand out, under mutex_
    bool stopping_ = false;
    std::mutex mutex_;
    std::condition_variable ready_;
    std::vector<std::thread> workers_;
};

}  // namespace vqa

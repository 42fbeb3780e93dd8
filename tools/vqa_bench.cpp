// vqa_bench: time Engine::answer() on synthetic inputs, per batch size.
//
//   vqa_bench --model models/easy-vqa --batch 1,8,64,256 --threads 2
//   vqa_bench --model DIR --json --dump-inputs inputs.json   # the same work for tools/bench_torch.py --inputs
//   vqa_bench --model DIR --regions 10,100 --padding packed,padded   # the gain of padding removal
//
// A call of batch B answers B questions about ceil(B / questions-per-image) images, question q about image
// q / questions-per-image, so each image is encoded once for all of its questions. The inputs are synthetic and
// fixed by --seed: random RGB pixels at the model's input size (grid encoders) or random region features and boxes
// (regions encoder; --regions MIN,MAX gives image m a count of regions drawn in MIN..MAX, the engine pads the rest
// with zero rows), and questions of random words from the model's vocab.json. tools/bench_synthetic.h makes them
// and writes --dump-inputs; this file times them and reports.
//
// --padding packed,padded loads one Engine per mode (EngineOptions::pack_sequences) and times both on every batch
// size, their calls alternating, so that a slow spell of the machine lands on both; the gain is padded / packed.
//
// Timed: the whole answer() call (tokenizing, normalising the pixels or padding the regions, the forward pass,
// softmax and top-k, the answer strings). Not timed: making the inputs, loading the model.
//
// Exit status: 0 done; 1 the model could not be loaded or a question failed; 2 usage error (also --regions outside
// 1..max_regions, or on a model without region features).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <sys/resource.h>
#include <thread>
#include <vector>

#include "tools/bench_synthetic.h"
#include "tools/forward_timer.h"
#include "tools/model_path.h"
#include "vqa/engine.h"

namespace {

using nlohmann::json;
using vqa::tools::BenchModel;
using vqa::tools::Workload;
using Clock = std::chrono::steady_clock;

// The environment variables that change what the CPU backend does; printed so that a result can be reproduced.
constexpr const char* kReportedEnv[] = {"OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OMP_PROC_BIND",
                                        "GOMP_CPU_AFFINITY"};

struct Timing {
    double median_ms = 0.0;
    double p90_ms = 0.0;
    double mean_ms = 0.0;
    double min_ms = 0.0;
    double max_ms = 0.0;
};

// Median (mean of the two middle values for an even count) and nearest-rank p90.
Timing summarize(std::vector<double> ms) {
    std::sort(ms.begin(), ms.end());
    const std::size_t n = ms.size();
    Timing t;
    t.median_ms = n % 2 == 1 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
    const auto rank = static_cast<std::size_t>((9 * n + 9) / 10);  // ceil(0.9 n)
    t.p90_ms = ms[std::max<std::size_t>(rank, 1) - 1];
    double sum = 0.0;
    for (double v : ms) {
        sum += v;
    }
    t.mean_ms = sum / static_cast<double>(n);
    t.min_ms = ms.front();
    t.max_ms = ms.back();
    return t;
}

double peak_rss_mib() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux: KiB
}

// What one padding mode measured at one batch size.
struct ModeResult {
    Timing timing;
    double questions_per_s = 0.0;
    std::vector<std::string> answers;  // top-1 answer of each question, from the last timed call
    bool has_from_features = false;
    Timing from_features;  // the forward pass alone (tools/forward_timer.h)
};

struct BatchResult {
    int batch = 0;
    int images = 0;
    int64_t regions = 0;  // region rows the call's images hold before padding (regions models)
    double peak_rss_mib = 0.0;
    std::vector<ModeResult> modes;  // one per Settings::padding, in its order
};

void check_results(const std::vector<vqa::Result>& results) {
    for (std::size_t i = 0; i < results.size(); ++i) {
        if (!results[i].ok) {
            throw std::runtime_error("question " + std::to_string(i) + " failed (" +
                                     vqa::error_code_name(results[i].error_code) + "): " + results[i].error);
        }
    }
}

// Position k of timed round i: the modes take turns going first (A B, B A, ...), so that a machine that speeds up
// or slows down during the run favours neither.
std::size_t turn(int i, std::size_t k, std::size_t modes) {
    return i % 2 == 0 ? k : modes - 1 - k;
}

// Times every engine (one per padding mode) on the workload, their calls alternating.
BatchResult run_batch(const std::vector<vqa::Engine>& engines, const Workload& w, int warmup, int iters) {
    const std::size_t n = engines.size();
    for (int i = 0; i < warmup; ++i) {
        for (const vqa::Engine& engine : engines) {
            check_results(engine.answer(w.images, w.queries));
        }
    }
    std::vector<std::vector<double>> ms(n);
    std::vector<std::vector<vqa::Result>> last(n);
    for (int i = 0; i < iters; ++i) {
        for (std::size_t k = 0; k < n; ++k) {
            const std::size_t e = turn(i, k, n);
            const Clock::time_point start = Clock::now();
            std::vector<vqa::Result> results = engines[e].answer(w.images, w.queries);
            const Clock::time_point stop = Clock::now();
            ms[e].push_back(std::chrono::duration<double, std::milli>(stop - start).count());
            check_results(results);
            last[e] = std::move(results);
        }
    }
    BatchResult r;
    r.batch = w.batch;
    r.images = static_cast<int>(w.images.size());
    for (const vqa::ImageInput& image : w.images) {
        if (image.kind() == vqa::ImageInput::Kind::kRegions) {
            r.regions += image.region_features().num_regions;
        }
    }
    for (std::size_t e = 0; e < n; ++e) {
        ModeResult mode;
        mode.timing = summarize(ms[e]);
        mode.questions_per_s = w.batch / (mode.timing.median_ms / 1000.0);
        for (const vqa::Result& result : last[e]) {
            mode.answers.push_back(result.answers.empty() ? "" : result.answers.front().text);
        }
        r.modes.push_back(std::move(mode));
    }
    r.peak_rss_mib = peak_rss_mib();
    return r;
}

// The forward pass alone, per padding mode, the passes alternating as in run_batch.
void time_from_features(const std::vector<std::unique_ptr<vqa::tools::ForwardTimer>>& timers,
                        const Workload& w,
                        int warmup,
                        int iters,
                        BatchResult& r) {
    const std::size_t n = timers.size();
    for (const auto& timer : timers) {
        timer->time(w.images, w.queries, warmup, 0);
    }
    std::vector<std::vector<double>> ms(n);
    for (int i = 0; i < iters; ++i) {
        for (std::size_t k = 0; k < n; ++k) {
            const std::size_t e = turn(i, k, n);
            ms[e].push_back(timers[e]->time(w.images, w.queries, 0, 1).front());
        }
    }
    for (std::size_t e = 0; e < n; ++e) {
        r.modes[e].from_features = summarize(ms[e]);
        r.modes[e].has_from_features = true;
    }
}

const char* device_name(vqa::Device d) {
    switch (d) {
        case vqa::Device::kCpu:
            return "cpu";
        case vqa::Device::kCuda:
            return "cuda";
        case vqa::Device::kAuto:
            return "auto";
    }
    return "?";
}

struct Settings {
    std::string model_dir;
    std::string device = "auto";
    std::string precision = "fp32";
    std::vector<int> batches{1, 8, 64, 256};
    int questions_per_image = 4;
    int threads = 0;
    int warmup = 3;
    int iters = 20;
    int max_batch = 0;
    uint64_t seed = 0;
    bool as_json = false;
    bool from_features = false;  // also time the forward pass alone (always on the CUDA backend)
    std::string dump_inputs;
    std::vector<int64_t> regions;                // --regions MIN,MAX; empty: every image has max_regions
    std::vector<std::string> padding{"packed"};  // EngineOptions::pack_sequences true ("packed") and/or false
};

// An option that does not fit the model (exit status 2, like a CLI11 parse error).
class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// --regions MIN,MAX checked against the model, into m's region count range.
void apply_region_counts(const Settings& s, BenchModel& m) {
    if (s.regions.empty()) {
        return;
    }
    if (s.regions.size() != 2) {
        throw UsageError("--regions expects MIN,MAX (two numbers), got " + std::to_string(s.regions.size()));
    }
    if (!m.regions) {
        throw UsageError("--regions needs a model with region features (image.encoder \"regions\"); " + s.model_dir +
                         " takes pixels");
    }
    const int64_t lo = s.regions[0];
    const int64_t hi = s.regions[1];
    if (lo < 1 || lo > hi || hi > m.max_regions) {
        throw UsageError("--regions " + std::to_string(lo) + "," + std::to_string(hi) +
                         ": expected 1 <= MIN <= MAX <= " + std::to_string(m.max_regions) +
                         " (the model's max_regions)");
    }
    m.min_count = lo;
    m.max_count = hi;
}

// The modes of --padding without repeats, packed first: the first is the one a row's top-level figures are from.
std::vector<std::string> padding_modes(const std::vector<std::string>& requested) {
    std::vector<std::string> modes;
    for (const char* mode : {"packed", "padded"}) {
        if (std::find(requested.begin(), requested.end(), mode) != requested.end()) {
            modes.emplace_back(mode);
        }
    }
    return modes;
}

json timing_json(const Timing& t) {
    return {{"median", t.median_ms}, {"p90", t.p90_ms}, {"mean", t.mean_ms}, {"min", t.min_ms}, {"max", t.max_ms}};
}

json mode_json(const ModeResult& r) {
    json out = {{"latency_ms", timing_json(r.timing)}, {"questions_per_s", r.questions_per_s}, {"answers", r.answers}};
    if (r.has_from_features) {
        out["from_features_ms"] = timing_json(r.from_features);
    }
    return out;
}

// Questions whose top-1 answer is the same in two modes.
int same_top1(const ModeResult& a, const ModeResult& b) {
    int same = 0;
    for (std::size_t i = 0; i < a.answers.size() && i < b.answers.size(); ++i) {
        same += a.answers[i] == b.answers[i] ? 1 : 0;
    }
    return same;
}

json report_json(const Settings& s,
                 const BenchModel& m,
                 const vqa::ModelInfo& info,
                 double load_ms,
                 const std::vector<BatchResult>& results) {
    json env = json::object();
    for (const char* name : kReportedEnv) {
        const char* value = std::getenv(name);
        env[name] = value != nullptr ? json(value) : json(nullptr);
    }
    json rows = json::array();
    for (const BatchResult& r : results) {
        // The first mode's figures at the top level, where tools/bench_report.py reads them.
        json row = {{"batch", r.batch}, {"images", r.images}};
        row.update(mode_json(r.modes.front()));
        row["peak_rss_mib"] = r.peak_rss_mib;
        if (m.regions) {
            row["regions"] = r.regions;
        }
        row["padding"] = s.padding.front();
        json by_padding = json::object();
        for (std::size_t e = 0; e < r.modes.size(); ++e) {
            by_padding[s.padding[e]] = mode_json(r.modes[e]);
        }
        row["by_padding"] = by_padding;
        if (r.modes.size() == 2) {  // packed, padded
            const ModeResult& packed = r.modes[0];
            const ModeResult& padded = r.modes[1];
            json gain = {{"latency", padded.timing.median_ms / packed.timing.median_ms},
                         {"same_top1", same_top1(packed, padded)}};
            if (packed.has_from_features) {
                gain["from_features"] = padded.from_features.median_ms / packed.from_features.median_ms;
            }
            row["packing_gain"] = gain;
        }
        rows.push_back(row);
    }
    return {{"tool", "vqa_bench"},
            {"version", vqa::version()},
            {"model",
             {{"path", s.model_dir},
              {"name", info.name},
              {"image_encoder", info.image_encoder},
              {"text_encoder", info.text_encoder},
              {"fusion", info.fusion},
              {"head", info.head},
              {"hidden", info.hidden},
              {"heads", info.heads},
              {"layers", info.layers},
              {"parameters", info.parameters},
              {"max_length", m.max_length},
              {"image", vqa::tools::image_json(m)}}},
            {"device", device_name(info.device)},
            {"precision", s.precision},
            {"threads", s.threads},
            {"hardware_threads", std::thread::hardware_concurrency()},
            {"env", env},
            {"questions_per_image", s.questions_per_image},
            {"max_batch", s.max_batch},
            {"warmup", s.warmup},
            {"iters", s.iters},
            {"seed", s.seed},
            {"padding", s.padding},
            {"timed", "Engine::answer(): tokenize, image preparation, forward, top-1 answers"},
            {"load_ms", load_ms},
            {"results", rows},
            {"peak_rss_mib", peak_rss_mib()}};
}

std::string format_ms(const ModeResult& r, bool from_features) {
    if (from_features && !r.has_from_features) {
        return "-";
    }
    char text[32];
    std::snprintf(text, sizeof text, "%.3f", from_features ? r.from_features.median_ms : r.timing.median_ms);
    return text;
}

// One row per batch size and one column per figure of the single padding mode.
void print_one_mode(std::ostream& out, const std::vector<BatchResult>& results) {
    char line[256];
    std::snprintf(line, sizeof line, "%7s %7s %12s %12s %14s %14s %16s\n", "batch", "images", "median ms", "p90 ms",
                  "questions/s", "peak RSS MiB", "forward-only ms");
    out << line;
    for (const BatchResult& r : results) {
        const ModeResult& m = r.modes.front();
        std::snprintf(line, sizeof line, "%7d %7d %12.3f %12.3f %14.1f %14.1f %16s\n", r.batch, r.images,
                      m.timing.median_ms, m.timing.p90_ms, m.questions_per_s, r.peak_rss_mib,
                      format_ms(m, true).c_str());
        out << line;
    }
}

// Packed and padded side by side, with the gain (padded median / packed median) of the call and of the forward pass.
void print_two_modes(std::ostream& out, const std::vector<BatchResult>& results) {
    char line[320];
    std::snprintf(line, sizeof line, "%7s %7s %9s %11s %11s %7s %11s %11s %11s %11s %8s %10s %13s\n", "batch", "images",
                  "regions", "packed ms", "padded ms", "gain", "packed p90", "padded p90", "fwd packed", "fwd padded",
                  "fwd gain", "same top1", "peak RSS MiB");
    out << line;
    for (const BatchResult& r : results) {
        const ModeResult& packed = r.modes[0];
        const ModeResult& padded = r.modes[1];
        char regions[32] = "-";
        if (r.regions > 0) {
            std::snprintf(regions, sizeof regions, "%.1f", static_cast<double>(r.regions) / r.images);
        }
        char forward_gain[32] = "-";
        if (packed.has_from_features) {
            std::snprintf(forward_gain, sizeof forward_gain, "%.3f",
                          padded.from_features.median_ms / packed.from_features.median_ms);
        }
        char same[32];
        std::snprintf(same, sizeof same, "%d/%d", same_top1(packed, padded), r.batch);
        std::snprintf(line, sizeof line, "%7d %7d %9s %11.3f %11.3f %7.3f %11.3f %11.3f %11s %11s %8s %10s %13.1f\n",
                      r.batch, r.images, regions, packed.timing.median_ms, padded.timing.median_ms,
                      padded.timing.median_ms / packed.timing.median_ms, packed.timing.p90_ms, padded.timing.p90_ms,
                      format_ms(packed, true).c_str(), format_ms(padded, true).c_str(), forward_gain, same,
                      r.peak_rss_mib);
        out << line;
    }
}

void print_table(std::ostream& out,
                 const Settings& s,
                 const BenchModel& m,
                 const vqa::ModelInfo& info,
                 double load_ms,
                 const std::vector<BatchResult>& results) {
    char line[256];
    out << "vqa_bench " << vqa::version() << ": " << info.name << " (" << info.image_encoder << " / "
        << info.text_encoder << " / " << info.fusion << " / " << info.head << ", d=" << info.hidden << ", "
        << info.heads << " heads, " << info.layers << " layers, " << info.parameters << " parameters)\n";
    std::snprintf(line, sizeof line,
                  "device %s, %s, threads %d (0 = all %u cores), %d questions per image, max_batch %d, "
                  "warmup %d, iters %d, load %.1f ms\n",
                  device_name(info.device), s.precision.c_str(), s.threads, std::thread::hardware_concurrency(),
                  s.questions_per_image, s.max_batch, s.warmup, s.iters, load_ms);
    out << line;
    std::string padding;
    for (const std::string& mode : s.padding) {
        padding += (padding.empty() ? "" : ",") + mode;
    }
    out << "padding " << padding;
    if (m.regions) {
        out << ", regions per image " << m.min_count << ".." << m.max_count << " (padded to " << m.max_regions << ")";
    }
    out << (s.padding.size() == 2 ? "; gain = padded median / packed median" : "") << "\n";
    if (s.padding.size() == 2) {
        print_two_modes(out, results);
    } else {
        print_one_mode(out, results);
    }
}

int run(Settings s) {
    if (s.max_batch == 0) {
        s.max_batch = *std::max_element(s.batches.begin(), s.batches.end());
    }
    s.padding = padding_modes(s.padding);
    BenchModel m = vqa::tools::read_bench_model(s.model_dir);
    apply_region_counts(s, m);
    std::vector<Workload> workloads;
    for (int batch : s.batches) {
        workloads.push_back(vqa::tools::make_workload(m, s.seed, batch, s.questions_per_image));
    }
    if (!s.dump_inputs.empty()) {
        vqa::tools::write_inputs(s.dump_inputs, s.model_dir, s.seed, s.questions_per_image, m, workloads);
    }

    vqa::EngineOptions options;
    options.device = s.device == "cpu"    ? vqa::Device::kCpu
                     : s.device == "cuda" ? vqa::Device::kCuda
                                          : vqa::Device::kAuto;
    options.precision = s.precision == "fp16"   ? vqa::Precision::kFp16
                        : s.precision == "bf16" ? vqa::Precision::kBf16
                                                : vqa::Precision::kFp32;
    options.threads = s.threads;
    options.max_batch = s.max_batch;
    // One engine per padding mode, each loaded once; load_ms is the first one's.
    std::vector<vqa::EngineOptions> mode_options;
    std::vector<vqa::Engine> engines;
    double load_ms = 0.0;
    for (const std::string& mode : s.padding) {
        mode_options.push_back(options);
        mode_options.back().pack_sequences = mode == "packed";
        const Clock::time_point start = Clock::now();
        engines.push_back(vqa::Engine::load(s.model_dir, mode_options.back()));
        if (engines.size() == 1) {
            load_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        }
    }

    std::vector<BatchResult> results;
    for (const Workload& w : workloads) {
        results.push_back(run_batch(engines, w, s.warmup, s.iters));
    }
    if (s.from_features || engines.front().info().device == vqa::Device::kCuda) {
        // The model loaded once more per mode, next to the engines, for the forward pass alone.
        std::vector<std::unique_ptr<vqa::tools::ForwardTimer>> timers;
        for (const vqa::EngineOptions& o : mode_options) {
            timers.push_back(std::make_unique<vqa::tools::ForwardTimer>(s.model_dir, o));
        }
        for (std::size_t i = 0; i < workloads.size(); ++i) {
            if (workloads[i].batch > s.max_batch) {
                continue;  // more than one forward pass: the whole-call figure covers it
            }
            time_from_features(timers, workloads[i], s.warmup, s.iters, results[i]);
        }
    }
    if (s.as_json) {
        std::cout << report_json(s, m, engines.front().info(), load_ms, results).dump(2) << "\n";
    } else {
        print_table(std::cout, s, m, engines.front().info(), load_ms, results);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Time Engine::answer() on synthetic images and questions, per batch size."};
    Settings s;
    app.add_option("-m,--model", s.model_dir, "model directory (default: the bundled easy-VQA model)");
    app.add_option("--device", s.device, "auto (CUDA when built and present, else the CPU), cpu or cuda")
        ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
        ->capture_default_str();
    app.add_option("--precision", s.precision, "fp32, fp16 or bf16 (fp16/bf16 need the CUDA backend)")
        ->check(CLI::IsMember({"fp32", "fp16", "bf16"}))
        ->capture_default_str();
    app.add_option("--batch", s.batches, "questions per answer() call, comma-separated")
        ->delimiter(',')
        ->check(CLI::Range(1, 1 << 20))
        ->capture_default_str();
    app.add_option("--questions-per-image", s.questions_per_image, "questions about each image of a call")
        ->check(CLI::Range(1, 1 << 20))
        ->capture_default_str();
    app.add_option("--threads", s.threads, "CPU threads (0 = all cores)")->check(CLI::NonNegativeNumber);
    app.add_option("--warmup", s.warmup, "untimed calls per batch size")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--iters", s.iters, "timed calls per batch size")
        ->check(CLI::Range(1, 1 << 20))
        ->capture_default_str();
    app.add_option("--max-batch", s.max_batch,
                   "EngineOptions::max_batch (0 = the largest --batch: every call is one forward pass)")
        ->check(CLI::Range(0, 1 << 20));
    app.add_option("--seed", s.seed, "seed of the synthetic inputs")->capture_default_str();
    app.add_flag("--json", s.as_json, "print JSON instead of a table");
    app.add_flag("--from-features", s.from_features,
                 "also time the forward pass alone on prepared inputs (always on with the CUDA backend)");
    app.add_option("--dump-inputs", s.dump_inputs,
                   "write the questions, image indices and pixel seed used here (for tools/bench_torch.py --inputs)");
    app.add_option("--regions", s.regions,
                   "MIN,MAX: image m holds a region count drawn in MIN..MAX, padded by the engine with zero rows to "
                   "max_regions (regions models; default: every image has max_regions)")
        ->delimiter(',');
    app.add_option("--padding", s.padding,
                   "packed, padded or both (comma-separated): EngineOptions::pack_sequences true, false; both time one "
                   "engine per mode, their calls alternating, and report padded / packed")
        ->delimiter(',')
        ->check(CLI::IsMember({"packed", "padded"}))
        ->capture_default_str();
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int code = app.exit(e);
        return code == 0 ? 0 : 2;
    }
    if (s.model_dir.empty()) {
        s.model_dir = vqa::tools::default_model_dir();
    }
    try {
        return run(s);
    } catch (const UsageError& e) {
        std::cerr << "vqa_bench: " << e.what() << "\n";
        return 2;
    } catch (const vqa::Error& e) {
        std::cerr << "vqa_bench: error (" << vqa::error_code_name(e.code()) << "): " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "vqa_bench: error: " << e.what() << "\n";
        return 1;
    }
}

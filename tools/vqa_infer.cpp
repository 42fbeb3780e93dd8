// vqa_infer: answer questions about images with an exported model.
//
//   vqa_infer --image examples/images/shape0.png --question "what color is the shape?"
//   vqa_infer --model DIR --image a.jpg -q "what is it?" -q "is it red?" --top-k 3 --json
//   vqa_infer --model REGIONS_MODEL --features boxes.npz -q "what is it?"
//   vqa_infer --model DIR --batch questions.jsonl --output answers.jsonl
//   vqa_infer --image a.jpg -q "what is it?" --profile --trace trace.json   stage times (docs/profiling.md)
//
// Exit status: 0 every question answered; 1 the model or the options could not be used (nothing answered);
// 2 usage error; 3 finished, but some questions (or batch lines) gave an error, reported in the output.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

#include "tools/batch_line.h"
#include "tools/model_path.h"
#include "vqa/engine.h"

namespace {

using nlohmann::json;

json answers_json(const vqa::Result& r, bool with_attention) {
    json out = json::object();
    if (!r.ok) {
        out["error"] = {{"code", vqa::error_code_name(r.error_code)}, {"message", r.error}};
        return out;
    }
    json answers = json::array();
    for (const vqa::Answer& a : r.answers) {
        json one = {{"answer", a.text}, {"score", a.score}};
        if (a.id >= 0) {
            one["id"] = a.id;
        }
        answers.push_back(one);
    }
    out["answers"] = answers;
    if (!r.warnings.empty()) {
        out["warnings"] = r.warnings;
    }
    if (with_attention && r.attention.glimpses > 0) {
        const vqa::AttentionMaps& a = r.attention;
        out["attention"] = {{"image_tokens", a.image_tokens},
                            {"grid", {a.grid_height, a.grid_width}},
                            {"glimpses", a.glimpses},
                            {"image_pooling", a.image_pooling},
                            {"tokens", a.tokens},
                            {"text_pooling", a.text_pooling}};
    }
    return out;
}

void print_human(std::ostream& out, const std::string& question, const vqa::Result& r) {
    out << "Q: " << question << "\n";
    if (!r.ok) {
        out << "   error (" << vqa::error_code_name(r.error_code) << "): " << r.error << "\n";
        return;
    }
    for (std::size_t i = 0; i < r.answers.size(); ++i) {
        char score[32];
        std::snprintf(score, sizeof score, "%.4f", r.answers[i].score);
        out << (i == 0 ? "A: " : "   ") << r.answers[i].text << "  (" << score << ")\n";
    }
    for (const std::string& w : r.warnings) {
        out << "   warning: " << w << "\n";
    }
}

using vqa::tools::BatchLine;
using vqa::tools::parse_batch_line;

// Answers one chunk of batch lines (images shared between lines are decoded once) and writes a record per line.
int run_batch_chunk(const vqa::Engine& engine,
                    const std::vector<BatchLine>& lines,
                    const vqa::AnswerOptions& options,
                    std::ostream& out) {
    std::vector<vqa::ImageInput> images;
    std::map<std::string, int64_t> image_index;
    std::vector<vqa::Query> queries;
    std::vector<std::size_t> query_line;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        if (!lines[i].error.empty()) {
            continue;
        }
        // A path read both as an image and as region features is two inputs.
        const std::string key = (lines[i].features ? "f:" : "i:") + lines[i].image;
        auto [it, inserted] = image_index.emplace(key, static_cast<int64_t>(images.size()));
        if (inserted) {
            images.push_back(lines[i].features ? vqa::ImageInput::region_file(lines[i].image)
                                               : vqa::ImageInput::file(lines[i].image));
        }
        queries.push_back({it->second, lines[i].question});
        query_line.push_back(i);
    }
    std::vector<vqa::Result> results;
    try {
        results = engine.answer(images, queries, options);
    } catch (const vqa::Error& e) {
        // A failure of the whole chunk (e.g. out of memory) fails its lines alone; later chunks still run.
        results.assign(queries.size(), vqa::Result{});
        for (vqa::Result& r : results) {
            r.error_code = e.code();
            r.error = e.what();
        }
    }
    std::vector<const vqa::Result*> by_line(lines.size(), nullptr);
    for (std::size_t q = 0; q < queries.size(); ++q) {
        by_line[query_line[q]] = &results[q];
    }
    int failures = 0;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        json record = {{"id", lines[i].id}, {"line", lines[i].number}};
        if (!lines[i].error.empty()) {
            record["error"] = {{"code", "invalid_argument"}, {"message", lines[i].error}};
            ++failures;
        } else {
            record[lines[i].features ? "features" : "image"] = lines[i].image;
            record["question"] = lines[i].question;
            record.update(answers_json(*by_line[i], options.return_attention));
            failures += by_line[i]->ok ? 0 : 1;
        }
        out << record.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";  // bad UTF-8 becomes U+FFFD
    }
    out.flush();
    return failures;
}

int run_batch(const vqa::Engine& engine,
              const std::string& path,
              int chunk_size,
              const vqa::AnswerOptions& options,
              std::ostream& out) {
    std::ifstream in(path);
    if (!in) {
        std::cerr << "vqa_infer: cannot open batch file " << path << "\n";
        return 1;
    }
    const bool progress = isatty(STDERR_FILENO) != 0;
    const std::size_t slash = path.find_last_of('/');
    const std::string base_dir = slash == std::string::npos ? "" : path.substr(0, slash);
    std::set<std::string> seen_ids;
    std::vector<BatchLine> chunk;
    std::string text;
    int64_t number = 0;
    int64_t done = 0;
    int failures = 0;
    const auto flush = [&] {
        failures += run_batch_chunk(engine, chunk, options, out);
        done += static_cast<int64_t>(chunk.size());
        chunk.clear();
        if (progress) {
            std::cerr << "\r" << done << " lines answered, " << failures << " with errors" << std::flush;
        }
    };
    while (std::getline(in, text)) {
        ++number;
        if (text.find_first_not_of(" \t\r") == std::string::npos) {
            continue;  // blank lines are not records
        }
        chunk.push_back(parse_batch_line(text, number, base_dir, seen_ids));
        if (static_cast<int>(chunk.size()) >= chunk_size) {
            flush();
        }
    }
    if (!chunk.empty()) {
        flush();
    }
    if (progress) {
        std::cerr << "\n";
    }
    return failures == 0 ? 0 : 3;
}

// Answers the questions about one image (--image) or one region feature file (--features) and prints them.
int run_single(const vqa::Engine& engine,
               const std::string& image,
               const std::string& features,
               const std::vector<std::string>& questions,
               const vqa::AnswerOptions& options,
               bool as_json,
               std::ostream& out) {
    const bool from_features = !features.empty();
    const std::string& input_path = from_features ? features : image;
    const vqa::ImageInput input = from_features ? vqa::ImageInput::region_file(features) : vqa::ImageInput::file(image);
    const std::vector<vqa::Result> results = engine.answer(input, questions, options);
    bool all_ok = true;
    if (as_json) {
        json records = json::array();
        for (std::size_t i = 0; i < results.size(); ++i) {
            json record = {{from_features ? "features" : "image", input_path}, {"question", questions[i]}};
            record.update(answers_json(results[i], options.return_attention));
            records.push_back(record);
            all_ok = all_ok && results[i].ok;
        }
        out << records.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
    } else {
        out << input_path << "\n";
        for (std::size_t i = 0; i < results.size(); ++i) {
            print_human(out, questions[i], results[i]);
            all_ok = all_ok && results[i].ok;
        }
    }
    return all_ok ? 0 : 3;
}

// --profile: one row per stage (the path of range names from the call down, so that the same name under two
// parents is two rows), in the order first seen, summed over every call that was profiled.
struct StageRow {
    std::string name;
    int depth = 0;
    bool device = false;
    std::size_t root = 0;  // the row of the call it belongs to ("load", "answer"), whose total is its 100%
    int64_t calls = 0;
    double total_us = 0.0;
};

std::vector<StageRow> stage_rows(const vqa::Profile& profile) {
    std::vector<StageRow> rows;
    std::map<std::string, std::size_t> row_of_key;
    std::map<int, std::vector<std::string>> open;  // per host thread: the key of the open range at each depth
    for (const vqa::ProfileRange& r : profile.ranges) {
        std::vector<std::string>& stack = open[r.thread];
        const auto depth = static_cast<std::size_t>(std::max(r.depth, 0));
        // A device range comes right after the host range it times, which is on the stack at its depth.
        const std::size_t parents = std::min(depth, stack.size());
        std::string key = (parents == 0 ? "" : stack[parents - 1] + "/") + r.name;
        if (r.device) {
            key += "@gpu";
        } else {
            stack.resize(parents);
            stack.push_back(key);
        }
        const auto [it, inserted] = row_of_key.emplace(key, rows.size());
        if (inserted) {
            const auto root = stack.empty() ? row_of_key.end() : row_of_key.find(stack.front());
            rows.push_back({r.name, r.depth, r.device, root == row_of_key.end() ? it->second : root->second, 0, 0.0});
        }
        StageRow& row = rows[it->second];
        row.calls += 1;
        row.total_us += r.duration_us;
    }
    return rows;
}

void print_profile_table(const vqa::Profile& profile, std::ostream& out) {
    const std::vector<StageRow> rows = stage_rows(profile);
    std::vector<std::string> labels;
    std::size_t width = 5;
    for (const StageRow& row : rows) {
        labels.push_back(std::string(2 * static_cast<std::size_t>(std::max(row.depth, 0)), ' ') + row.name +
                         (row.device ? " [GPU]" : ""));
        width = std::max(width, labels.back().size());
    }
    char line[512];
    std::snprintf(line, sizeof line, "%-*s %7s %11s %11s %9s\n", static_cast<int>(width), "stage", "calls", "total ms",
                  "mean ms", "% call");
    out << line;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const StageRow& row = rows[i];
        const double root_us = rows[row.root].total_us;
        char percent[16] = "-";
        if (root_us > 0.0) {
            std::snprintf(percent, sizeof percent, "%.1f", 100.0 * row.total_us / root_us);
        }
        std::snprintf(line, sizeof line, "%-*s %7lld %11.3f %11.3f %9s\n", static_cast<int>(width), labels[i].c_str(),
                      static_cast<long long>(row.calls), row.total_us / 1000.0,
                      row.total_us / 1000.0 / static_cast<double>(row.calls), percent);
        out << line;
    }
}

// --trace: Chrome's trace event format (complete "X" events, microseconds), which Perfetto and chrome://tracing
// open. Host threads are tracks 1, 2, ...; the GPU ranges launched from host thread n are track kGpuTrack + n.
void write_chrome_trace(const vqa::Profile& profile, std::ostream& out) {
    constexpr int kGpuTrack = 1000;
    double origin = 0.0;
    if (!profile.ranges.empty()) {
        origin = std::min_element(profile.ranges.begin(), profile.ranges.end(), [](const auto& a, const auto& b) {
                     return a.start_us < b.start_us;
                 })->start_us;
    }
    // Microseconds rounded to the nanosecond: the clock's resolution, and a readable file.
    const auto to_ns = [](double us) { return std::round(us * 1000.0) / 1000.0; };
    json events = json::array();
    events.push_back(
        {{"ph", "M"}, {"name", "process_name"}, {"pid", 1}, {"tid", 0}, {"args", {{"name", "vqa_infer"}}}});
    std::set<int> tracks;
    for (const vqa::ProfileRange& r : profile.ranges) {
        const int tid = r.device ? kGpuTrack + r.thread : 1 + r.thread;
        if (tracks.insert(tid).second) {
            const std::string thread = std::to_string(r.thread);
            const std::string label = r.device ? (r.thread == 0 ? "GPU" : "GPU (from host thread " + thread + ")")
                                               : (r.thread == 0 ? "host" : "host thread " + thread);
            events.push_back(
                {{"ph", "M"}, {"name", "thread_name"}, {"pid", 1}, {"tid", tid}, {"args", {{"name", label}}}});
            events.push_back({{"ph", "M"},
                              {"name", "thread_sort_index"},
                              {"pid", 1},
                              {"tid", tid},
                              {"args", {{"sort_index", tid}}}});
        }
        events.push_back({{"name", r.name},
                          {"cat", r.device ? "gpu" : "host"},
                          {"ph", "X"},
                          {"ts", to_ns(r.start_us - origin)},
                          {"dur", to_ns(r.duration_us)},
                          {"pid", 1},
                          {"tid", tid},
                          {"args", {{"depth", r.depth}}}});
    }
    const json trace = {{"traceEvents", events}, {"displayTimeUnit", "ms"}};
    out << trace.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Answer questions about images with a VQA model exported to a model directory."};
    std::string model_dir;
    std::string image;
    std::string features;
    std::vector<std::string> questions;
    std::string batch;
    std::string output;
    std::string device = "auto";
    std::string precision = "fp32";
    int top_k = 1;
    int threads = 0;
    int max_batch = 64;
    bool as_json = false;
    bool attention = false;
    bool show_version = false;
    bool profile_table = false;
    std::string trace_path;
    app.add_option("-m,--model", model_dir, "model directory (default: the bundled easy-VQA model)");
    auto* image_opt = app.add_option("-i,--image", image, "image file (JPEG, PNG, ...)");
    auto* features_opt = app.add_option("-f,--features", features,
                                        "region feature file (.npz in openvqa's layout, or .safetensors) for a "
                                        "regions model, instead of --image");
    auto* question_opt = app.add_option("-q,--question", questions, "a question about the image (repeatable)");
    auto* batch_opt = app.add_option("-b,--batch", batch,
                                     "JSON Lines file of {\"image\" or \"features\", \"question\"[, \"id\"]} (paths "
                                     "relative to the file's folder): one result line per input line, written as it "
                                     "goes");
    app.add_option("-o,--output", output, "write results here instead of standard output");
    app.add_option("-k,--top-k", top_k, "answers per question")->check(CLI::Range(1, 1000));
    app.add_flag("--json", as_json, "print JSON instead of text");
    app.add_flag("--attention", attention, "include the attention pooling weights in JSON output");
    app.add_option("--device", device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
    app.add_option("--precision", precision, "fp32, fp16 or bf16 (fp16/bf16 need the CUDA backend)")
        ->check(CLI::IsMember({"fp32", "fp16", "bf16"}));
    app.add_option("--threads", threads, "CPU threads (0 = all cores)")->check(CLI::NonNegativeNumber);
    app.add_option("--max-batch", max_batch, "questions per forward pass")->check(CLI::Range(1, 65536));
    app.add_flag("--profile", profile_table,
                 "after answering, print the time of each stage to standard error (summed over all calls)");
    app.add_option("--trace", trace_path,
                   "write a timeline of the stages to this file (Chrome trace JSON: open in https://ui.perfetto.dev)");
    app.add_flag("--version", show_version, "print the library version");
    image_opt->needs(question_opt);
    features_opt->needs(question_opt);
    features_opt->excludes(image_opt);
    batch_opt->excludes(image_opt);
    batch_opt->excludes(features_opt);
    question_opt->excludes(batch_opt);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int code = app.exit(e);
        return code == 0 ? 0 : 2;
    }
    if (show_version) {
        std::cout << "vqa_infer " << vqa::version() << "\n";
        return 0;
    }
    if (image.empty() && features.empty() && batch.empty()) {
        std::cerr << "vqa_infer: give --image or --features with --question, or --batch (see --help)\n";
        return 2;
    }

    std::ofstream file_out;
    if (!output.empty()) {
        file_out.open(output);
        if (!file_out) {
            std::cerr << "vqa_infer: cannot write " << output << "\n";
            return 1;
        }
    }
    std::ostream& out = output.empty() ? std::cout : file_out;
    std::ofstream trace_out;
    if (!trace_path.empty()) {
        trace_out.open(trace_path);
        if (!trace_out) {
            std::cerr << "vqa_infer: cannot write " << trace_path << "\n";
            return 1;
        }
    }
    vqa::Profile profile;
    vqa::Profile* const profiling = profile_table || !trace_path.empty() ? &profile : nullptr;

    try {
        vqa::EngineOptions options;
        options.device = device == "cpu"    ? vqa::Device::kCpu
                         : device == "cuda" ? vqa::Device::kCuda
                                            : vqa::Device::kAuto;
        options.precision = precision == "fp16"   ? vqa::Precision::kFp16
                            : precision == "bf16" ? vqa::Precision::kBf16
                                                  : vqa::Precision::kFp32;
        options.threads = threads;
        options.max_batch = max_batch;
        options.profile = profiling;
        const vqa::Engine engine =
            vqa::Engine::load(model_dir.empty() ? vqa::tools::default_model_dir() : model_dir, options);
        vqa::AnswerOptions answer_options;
        answer_options.top_k = top_k;
        answer_options.return_attention = attention;
        answer_options.profile = profiling;
        int status = 0;
        if (!batch.empty()) {
            status = run_batch(engine, batch, max_batch, answer_options, out);
        } else {
            status = run_single(engine, image, features, questions, answer_options, as_json, out);
        }
        if (profile_table) {
            print_profile_table(profile, std::cerr);
        }
        if (trace_out.is_open()) {
            write_chrome_trace(profile, trace_out);
            trace_out.close();
            if (!trace_out) {
                std::cerr << "vqa_infer: cannot write " << trace_path << "\n";
                return 1;
            }
        }
        return status;
    } catch (const vqa::Error& e) {
        std::cerr << "vqa_infer: error (" << vqa::error_code_name(e.code()) << "): " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "vqa_infer: error: " << e.what() << "\n";
        return 1;
    }
}

// vqa_infer: answer questions about images with an exported model.
//
//   vqa_infer --image examples/images/shape0.png --question "what color is the shape?"
//   vqa_infer --model DIR --image a.jpg -q "what is it?" -q "is it red?" --top-k 3 --json
//   vqa_infer --model REGIONS_MODEL --features boxes.npz -q "what is it?"
//   vqa_infer --model DIR --batch questions.jsonl --output answers.jsonl
//
// Exit status: 0 every question answered; 1 the model or the options could not be used (nothing answered);
// 2 usage error; 3 finished, but some questions (or batch lines) gave an error, reported in the output.
#include <CLI/CLI.hpp>
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
    int top_k = 1;
    int threads = 0;
    int max_batch = 64;
    bool as_json = false;
    bool attention = false;
    bool show_version = false;
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
    app.add_option("--threads", threads, "CPU threads (0 = all cores)")->check(CLI::NonNegativeNumber);
    app.add_option("--max-batch", max_batch, "questions per forward pass")->check(CLI::Range(1, 65536));
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

    try {
        vqa::EngineOptions options;
        options.device = device == "cpu"    ? vqa::Device::kCpu
                         : device == "cuda" ? vqa::Device::kCuda
                                            : vqa::Device::kAuto;
        options.threads = threads;
        options.max_batch = max_batch;
        const vqa::Engine engine =
            vqa::Engine::load(model_dir.empty() ? vqa::tools::default_model_dir() : model_dir, options);
        vqa::AnswerOptions answer_options;
        answer_options.top_k = top_k;
        answer_options.return_attention = attention;
        if (!batch.empty()) {
            return run_batch(engine, batch, max_batch, answer_options, out);
        }
        const bool from_features = !features.empty();
        const std::string& input_path = from_features ? features : image;
        const vqa::ImageInput input =
            from_features ? vqa::ImageInput::region_file(features) : vqa::ImageInput::file(image);
        const std::vector<vqa::Result> results = engine.answer(input, questions, answer_options);
        bool all_ok = true;
        if (as_json) {
            json records = json::array();
            for (std::size_t i = 0; i < results.size(); ++i) {
                json record = {{from_features ? "features" : "image", input_path}, {"question", questions[i]}};
                record.update(answers_json(results[i], attention));
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
    } catch (const vqa::Error& e) {
        std::cerr << "vqa_infer: error (" << vqa::error_code_name(e.code()) << "): " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "vqa_infer: error: " << e.what() << "\n";
        return 1;
    }
}

#include "cli/bench_embed.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "embed/embedder.h"
#include "image/image.h"

namespace lookalike::cli {
namespace fs = std::filesystem;

namespace {

std::string input_key(const image::InputSpec& s) {
  std::string key =
      std::to_string(s.width) + "x" + std::to_string(s.height) + "x" + std::to_string(s.channels);
  for (float m : s.mean) key += "/" + std::to_string(m);
  for (float d : s.stddev) key += "/" + std::to_string(d);
  if (s.channels == 1) key += std::string("/") + image::to_string(s.gray);
  return key;
}

}  // namespace

CLI::App* add_bench_embed_command(CLI::App& app, BenchEmbedOptions& o) {
  auto* cmd = app.add_subcommand(
      "bench-embed",
      "Measure images/s of models (native, TorchScript, ONNX) on the same photos, side by side");
  cmd->add_option("--model", o.models, "Model file, or 'pixels'; repeat for each model")->required();
  cmd->add_option("--images", o.images, "Folder of photos (JPEG, PNG, WebP)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--count", o.count, "Photos used (the first by file name)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--batch", o.batch, "Images per embedding call")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--rounds", o.rounds, "Rounds over all models; the median is reported")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  cmd->add_flag("--json", o.as_json, "Print as JSON");
  return cmd;
}

int run_bench_embed(const BenchEmbedOptions& o) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(o.images))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  if (files.size() > o.count) files.resize(o.count);
  if (files.empty()) throw Error(ErrorKind::kInvalidInput, "no photos in " + o.images);
  std::vector<image::Image> photos;
  for (const auto& f : files) photos.push_back(image::load_file(f, {}));

  std::vector<std::unique_ptr<embed::Embedder>> models;
  for (const auto& m : o.models) {
    if (m == "pixels") {
      models.push_back(embed::pixel_embedder(image::InputSpec{}));
    } else {
      models.push_back(embed::load_model(m));
    }
  }
  // Preprocessing is the same work for every model of one input size: done once, not timed.
  std::map<std::string, std::vector<float>> inputs;
  for (const auto& model : models) {
    const auto& spec = model->info().input;
    auto& buffer = inputs[input_key(spec)];
    if (!buffer.empty()) continue;
    const std::size_t per = std::size_t(spec.channels) * spec.width * spec.height;
    buffer.resize(photos.size() * per);
    for (std::size_t i = 0; i < photos.size(); ++i)
      image::preprocess(photos[i], spec, buffer.data() + i * per);
  }

  std::vector<std::vector<double>> rates(models.size());
  for (int round = 0; round < o.rounds; ++round) {
    for (std::size_t m = 0; m < models.size(); ++m) {
      const auto& info = models[m]->info();
      const auto& buffer = inputs[input_key(info.input)];
      const std::size_t per = buffer.size() / photos.size();
      std::vector<float> out(o.batch * std::size_t(info.dim));
      const auto start = std::chrono::steady_clock::now();
      for (std::size_t begin = 0; begin < photos.size(); begin += o.batch) {
        const std::size_t n = std::min(o.batch, photos.size() - begin);
        models[m]->embed_preprocessed(buffer.data() + begin * per, n, out.data());
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      rates[m].push_back(double(photos.size()) / seconds);
    }
  }

  nlohmann::json report = nlohmann::json::array();
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double first = median(rates[0]);
  for (std::size_t m = 0; m < models.size(); ++m) {
    const double rate = median(rates[m]);
    const auto [low, high] = std::minmax_element(rates[m].begin(), rates[m].end());
    report.push_back({{"model", o.models[m]},
                      {"identity", models[m]->info().identity()},
                      {"images_per_second", rate},
                      {"min", *low},
                      {"max", *high},
                      {"ratio_to_first", rate / first}});
  }
  if (o.as_json) {
    std::printf("%s\n",
                nlohmann::json{
                    {"images", photos.size()}, {"batch", o.batch}, {"rounds", o.rounds}, {"models", report}}
                    .dump()
                    .c_str());
    return 0;
  }
  std::printf("%zu photos, batch %zu, median of %d rounds\n", photos.size(), o.batch, o.rounds);
  std::printf("| model | images/s | min..max | vs first |\n|---|---|---|---|\n");
  for (const auto& r : report) {
    std::printf("| %s | %.0f | %.0f..%.0f | %.2fx |\n", r["identity"].get<std::string>().c_str(),
                r["images_per_second"].get<double>(), r["min"].get<double>(), r["max"].get<double>(),
                r["ratio_to_first"].get<double>());
  }
  return 0;
}

}  // namespace lookalike::cli

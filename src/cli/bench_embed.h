// The `bench-embed` subcommand: images/s of several models on the same photos, side by side.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace lookalike::cli {

struct BenchEmbedOptions {
  std::vector<std::string> models;  // model files (native, TorchScript, ONNX) or "pixels"
  std::string images;               // a folder of photos; the first `count` by name are used
  std::size_t count = 2000;
  std::size_t batch = 256;
  int rounds = 5;
  bool as_json = false;
};

// Adds `bench-embed` to app; its flags fill options.
CLI::App* add_bench_embed_command(CLI::App& app, BenchEmbedOptions& options);

// Decodes and preprocesses the photos once per input size (not timed), then embeds
// them with each model in turn, round after round (so that a noisy machine slows
// every model alike), and prints each model's median images/s. Returns the exit status.
int run_bench_embed(const BenchEmbedOptions& options);

}  // namespace lookalike::cli

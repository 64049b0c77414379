// The `eval-ranking` subcommand: the offline ranking evaluation with simulated
// shoppers (search/behaviour_sim.h), over one or several seeds.
#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <string>

#include "search/behaviour_sim.h"

namespace lookalike::cli {

struct EvalRankingCommand {
  std::string data_dir;
  std::string queries_file;
  std::size_t seeds = 1;  // runs seed, seed + 1, ... seed + seeds - 1
  bool as_json = false;
  search::RankingEvalOptions options;
};

// Adds `eval-ranking` to app; its flags fill command (defaults are command's).
CLI::App* add_eval_ranking_command(CLI::App& app, EvalRankingCommand& command);

// Runs it: one line (or JSON object) per seed on stdout, then the mean over seeds when
// there are several. Throws Error as the engine and the simulator do.
int run_eval_ranking(const EvalRankingCommand& command);

}  // namespace lookalike::cli

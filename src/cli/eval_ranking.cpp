#include "cli/eval_ranking.h"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <vector>

#include "search/engine.h"

namespace lookalike::cli {
using nlohmann::json;

namespace {

json uplift_json(const search::Uplift& u) {
  return json{{"mean", u.mean}, {"ci95", u.ci95}, {"relative", u.relative}};
}

json report_json(const search::RankingEvalReport& r, const std::string& model) {
  return json{{"seed", r.seed},
              {"model", model},
              {"colour_attribute", r.colour_attribute},
              {"users", r.users},
              {"users_scored", r.users_scored},
              {"history_sessions", r.history_sessions},
              {"future_sessions", r.future_sessions},
              {"scored_sessions", r.scored_sessions},
              {"history_events", r.history_events},
              {"future_events", r.future_events},
              {"ndcg_visual", r.ndcg_visual},
              {"ndcg_business", r.ndcg_business},
              {"ndcg_personal", r.ndcg_personal},
              {"business_over_visual", uplift_json(r.business_over_visual)},
              {"personal_over_business", uplift_json(r.personal_over_business)},
              {"personal_over_visual", uplift_json(r.personal_over_visual)},
              {"seconds", r.seconds}};
}

// Mean and sample standard deviation.
std::pair<double, double> mean_sd(const std::vector<double>& v) {
  double mean = 0, sq = 0;
  for (double x : v) mean += x;
  mean /= double(v.size());
  for (double x : v) sq += (x - mean) * (x - mean);
  return {mean, v.size() > 1 ? std::sqrt(sq / double(v.size() - 1)) : 0.0};
}

}  // namespace

CLI::App* add_eval_ranking_command(CLI::App& app, EvalRankingCommand& command) {
  auto* cmd = app.add_subcommand(
      "eval-ranking",
      "Offline ranking evaluation: simulated shoppers with hidden brand, colour and price preferences; "
      "NDCG@k of their next engagement for visual, business and personalised ranking");
  auto& o = command.options;
  cmd->add_option("--data", command.data_dir, "Data folder (simulated events are written, then forgotten)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--queries", command.queries_file, "Queries JSONL {\"image\": ..., \"category\": ...}")
      ->required();
  cmd->add_option("--seed", o.seed, "First seed")->capture_default_str();
  cmd->add_option("--seeds", command.seeds, "Number of seeds to run, one after another")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{100}));
  cmd->add_option("--users", o.users, "Simulated shoppers per seed")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{100000}));
  cmd->add_option("--sessions", o.sessions_per_user,
                  "Sessions per shopper over 35 days (the last 7 are the future)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000}));
  cmd->add_option("--photos-per-category", o.photos_per_category, "Query photos shoppers share per category")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{10000}));
  cmd->add_option("--depth", o.depth, "Products a shopper sees per search, re-ranked by each ranking")
      ->capture_default_str();
  cmd->add_option("--k", o.k, "NDCG cut-off")->capture_default_str();
  cmd->add_flag("--keep-events", o.keep_events,
                "Leave the simulated shoppers and their events in the folder");
  cmd->add_flag("--json", command.as_json, "One JSON object per seed (and one for the mean)");
  return cmd;
}

int run_eval_ranking(const EvalRankingCommand& command) {
  search::OpenOptions open;
  open.on_message = [](const std::string& m) { std::cerr << "lookalike: " << m << "\n"; };
  auto engine = search::Engine::open(command.data_dir, open);
  const std::string model = engine->info().model;
  std::vector<double> visual, business, personal, business_gain, personal_gain;
  for (std::size_t i = 0; i < command.seeds; ++i) {
    search::RankingEvalOptions options = command.options;
    options.seed = command.options.seed + i;
    options.on_message = open.on_message;
    const auto r = search::evaluate_ranking(*engine, command.queries_file, options);
    visual.push_back(r.ndcg_visual);
    business.push_back(r.ndcg_business);
    personal.push_back(r.ndcg_personal);
    business_gain.push_back(r.business_over_visual.mean);
    personal_gain.push_back(r.personal_over_business.mean);
    if (command.as_json) {
      std::cout << report_json(r, model).dump() << "\n";
      continue;
    }
    std::printf(
        "seed %llu: %zu shoppers (%zu scored), %zu history sessions with %zu events recorded, %zu future "
        "sessions (%zu scored); colour preference on attributes.%s; %.1f s\n"
        "  NDCG@%d  visual %.4f  business %.4f  personal %.4f\n"
        "  business - visual    %+.4f +- %.4f (%+.1f%%)\n"
        "  personal - business  %+.4f +- %.4f (%+.1f%%)\n"
        "  personal - visual    %+.4f +- %.4f (%+.1f%%)\n",
        static_cast<unsigned long long>(r.seed), r.users, r.users_scored, r.history_sessions,
        r.history_events, r.future_sessions, r.scored_sessions,
        r.colour_attribute.empty() ? "(none)" : r.colour_attribute.c_str(), r.seconds, options.k,
        r.ndcg_visual, r.ndcg_business, r.ndcg_personal, r.business_over_visual.mean,
        r.business_over_visual.ci95, 100 * r.business_over_visual.relative, r.personal_over_business.mean,
        r.personal_over_business.ci95, 100 * r.personal_over_business.relative, r.personal_over_visual.mean,
        r.personal_over_visual.ci95, 100 * r.personal_over_visual.relative);
  }
  if (command.seeds > 1) {
    const auto [v, v_sd] = mean_sd(visual);
    const auto [b, b_sd] = mean_sd(business);
    const auto [p, p_sd] = mean_sd(personal);
    const auto [bg, bg_sd] = mean_sd(business_gain);
    const auto [pg, pg_sd] = mean_sd(personal_gain);
    if (command.as_json) {
      std::cout << json{{"seeds", command.seeds},
                        {"model", model},
                        {"ndcg_visual", {{"mean", v}, {"sd", v_sd}}},
                        {"ndcg_business", {{"mean", b}, {"sd", b_sd}}},
                        {"ndcg_personal", {{"mean", p}, {"sd", p_sd}}},
                        {"business_over_visual", {{"mean", bg}, {"sd", bg_sd}}},
                        {"personal_over_business", {{"mean", pg}, {"sd", pg_sd}}}}
                       .dump()
                << "\n";
    } else {
      std::printf(
          "mean over %zu seeds (sd between seeds):\n  NDCG@%d  visual %.4f (%.4f)  business %.4f (%.4f)  "
          "personal %.4f (%.4f)\n  business - visual %+.4f (%.4f), personal - business %+.4f (%.4f)\n",
          command.seeds, command.options.k, v, v_sd, b, b_sd, p, p_sd, bg, bg_sd, pg, pg_sd);
    }
  }
  return 0;
}

}  // namespace lookalike::cli

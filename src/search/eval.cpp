#include "search/eval.h"

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/error.h"
#include "common/files.h"
#include "search/engine.h"

namespace lookalike::search {
namespace fs = std::filesystem;

namespace {

constexpr int kDepth = 100;
constexpr std::size_t kBatch = 256;

// Reads a queries file (JSONL, one object per line; blank lines skipped), passing
// `add` each line's object and the folder that image paths are relative to. A line
// that is not JSON or lacks a field is an error naming the file and line.
template <class Add>
void read_query_lines(const fs::path& file, Add&& add) {
  std::ifstream in(file);
  if (!in) throw Error(ErrorKind::kNotFound, "cannot open queries file " + file.string());
  const fs::path root = fs::absolute(file).parent_path();
  std::string line;
  for (std::size_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      add(nlohmann::json::parse(line), root);
    } catch (const std::exception& e) {
      throw Error(ErrorKind::kInvalidInput,
                  file.string() + " line " + std::to_string(number) + ": " + e.what());
    }
  }
}

struct ColourQuery {
  fs::path image;
  std::string product, group_id, colour, distortion;
};

std::vector<ColourQuery> read_colour_queries(const fs::path& file) {
  std::vector<ColourQuery> queries;
  read_query_lines(file, [&](const nlohmann::json& j, const fs::path& root) {
    queries.push_back(ColourQuery{resolve_inside(root, j.at("image").get<std::string>()),
                                  j.at("product").get<std::string>(), j.at("group_id").get<std::string>(),
                                  j.at("color").get<std::string>(), j.value("distortion", std::string())});
  });
  return queries;
}

// Searches every query photo, kBatch at a time, and hands each result that did not
// fail to `score` with the query's index; counts queries and failures and the time
// taken in `report` (an EvalReport or a ColourEvalReport).
template <class Report, class Score>
void search_all(const Engine& engine, const std::vector<fs::path>& photos, int k, bool with_details,
                const SearchOptions& options, const RankRequest* ranking,
                const std::function<void(std::size_t, std::size_t)>& on_progress, Report& report,
                Score&& score) {
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t begin = 0; begin < photos.size(); begin += kBatch) {
    const std::size_t end = std::min(photos.size(), begin + kBatch);
    const std::vector<fs::path> batch(photos.begin() + static_cast<std::ptrdiff_t>(begin),
                                      photos.begin() + static_cast<std::ptrdiff_t>(end));
    const auto results = engine.search_files(batch, k, with_details, options, ranking);
    for (std::size_t i = begin; i < end; ++i) {
      const auto& result = results[i - begin];
      if (!result.error.empty()) {
        ++report.failed;
        continue;
      }
      ++report.queries;
      score(i, result);
    }
    if (on_progress) on_progress(end, photos.size());
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

std::vector<EvalQuery> read_eval_queries(const fs::path& file) {
  std::vector<EvalQuery> queries;
  read_query_lines(file, [&](const nlohmann::json& j, const fs::path& root) {
    queries.push_back(EvalQuery{resolve_inside(root, j.at("image").get<std::string>()),
                                j.at("category").get<std::string>()});
  });
  return queries;
}

ColourEvalReport evaluate_colour(const Engine& engine, const fs::path& queries_file,
                                 const RankRequest& ranking, embed::Match match,
                                 const std::function<void(std::size_t, std::size_t)>& on_progress) {
  const auto queries = read_colour_queries(queries_file);
  ColourEvalReport report;
  std::size_t variant = 0, family = 0, colour = 0, variant_in_stock = 0;
  std::vector<fs::path> photos;
  std::vector<bool> in_stock;
  for (const auto& q : queries) {
    photos.push_back(q.image);
    const auto product = engine.product(q.product);
    in_stock.push_back(product && product->stock > 0);
  }
  SearchOptions options;
  options.match = match;
  search_all(engine, photos, 1, /*with_details=*/true, options, &ranking, on_progress, report,
             [&](std::size_t i, const QueryResult& result) {
               auto& per = report.by_distortion[queries[i].distortion];
               ++per.first;
               if (result.hits.empty()) return;
               const auto& first = result.hits.front();
               const bool right_variant = first.product_id == queries[i].product;
               variant += right_variant;
               per.second += right_variant;
               if (in_stock[i]) {
                 ++report.in_stock;
                 variant_in_stock += right_variant;
               }
               family += first.product.group_id == queries[i].group_id;
               auto it = first.product.attributes.find("color");
               colour += it != first.product.attributes.end() && it->second == queries[i].colour;
             });
  if (report.queries > 0) {
    report.variant_first = double(variant) / double(report.queries);
    report.family_first = double(family) / double(report.queries);
    report.colour_first = double(colour) / double(report.queries);
  }
  if (report.in_stock > 0) report.variant_first_in_stock = double(variant_in_stock) / double(report.in_stock);
  return report;
}

EvalReport evaluate(const Engine& engine, const fs::path& queries_file,
                    const std::function<void(std::size_t, std::size_t)>& on_progress) {
  auto queries = read_eval_queries(queries_file);
  std::unordered_map<std::string, std::string> category_of;
  for (const auto& id : engine.product_ids()) {
    if (auto p = engine.product(id)) category_of.emplace(id, p->category);
  }

  EvalReport report;
  double p1 = 0, p10 = 0, map = 0;
  std::vector<fs::path> photos;
  for (const auto& q : queries) photos.push_back(q.image);
  // A named SearchOptions: `{}` in the template's call makes g++ 12 fail (internal compiler error).
  const SearchOptions options;
  search_all(engine, photos, kDepth, /*with_details=*/false, options, /*ranking=*/nullptr, on_progress,
             report, [&](std::size_t i, const QueryResult& result) {
               double hits = 0, precision_sum = 0;
               for (std::size_t rank = 0; rank < result.hits.size(); ++rank) {
                 auto it = category_of.find(result.hits[rank].product_id);
                 bool relevant = it != category_of.end() && it->second == queries[i].category;
                 if (relevant) {
                   hits += 1;
                   precision_sum += hits / double(rank + 1);
                 }
                 if (rank == 0) p1 += relevant ? 1 : 0;
                 if (rank == 9) p10 += hits / 10;
               }
               if (result.hits.size() < 10) p10 += hits / 10;
               map += hits > 0 ? precision_sum / hits : 0;
             });
  if (report.queries > 0) {
    report.precision_at_1 = p1 / double(report.queries);
    report.precision_at_10 = p10 / double(report.queries);
    report.map_at_100 = map / double(report.queries);
  }
  return report;
}

}  // namespace lookalike::search

// Category retrieval quality: each query photo against the catalog, relevant
// meaning the product's category equals the query's.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "embed/embedder.h"

namespace lookalike::search {

class Engine;
struct RankRequest;

struct EvalReport {
  std::size_t queries = 0;   // evaluated (readable) queries
  std::size_t failed = 0;    // queries whose image could not be read or decoded
  double precision_at_1 = 0;
  double precision_at_10 = 0;
  // Mean over queries of AP@100 = sum over ranks i <= 100 of P@i * rel(i),
  // divided by the number of relevant products in the top 100 (0 when none).
  double map_at_100 = 0;
  double seconds = 0;        // decode + embed + search + grouping, all queries
  double queries_per_second() const { return seconds > 0 ? double(queries) / seconds : 0; }
};

// One line of a queries file: a photo and the category it shows.
struct EvalQuery {
  std::filesystem::path image;  // resolved inside the file's folder
  std::string category;
};

// Reads a queries file: JSONL lines {"image": path relative to the file, "category": ...};
// blank lines are skipped. Throws Error(kNotFound) when it cannot be opened and
// Error(kInvalidInput) naming the line of a malformed one (or an image path leaving the folder).
std::vector<EvalQuery> read_eval_queries(const std::filesystem::path& queries_file);

// queries_file: as read_eval_queries reads it.
// Throws Error(kInvalidInput) naming the line of a malformed query line.
EvalReport evaluate(const Engine& engine, const std::filesystem::path& queries_file,
                    const std::function<void(std::size_t done, std::size_t total)>& on_progress);

// Colour on the demo's variant catalog (demo_catalog.h): each query is a shopper's
// photo of one colour variant; the first result should be that very variant.
struct ColourEvalReport {
  std::size_t queries = 0;  // evaluated (readable) queries
  std::size_t failed = 0;   // queries whose image could not be read or decoded
  double variant_first =
      0;  // share whose first result is the query's own variant (right family, right colour)
  double family_first = 0;  // share whose first result is of the right family (group_id), any colour
  double colour_first = 0;  // share whose first result has the query's colour (attributes.color)
  // The queries whose photographed variant is in stock, and their variant_first. A
  // profile that demotes stock-outs (rank::StockPolicy::kDemote) puts an in-stock
  // look-alike before a variant that is out of stock, as a shop asks it to: this is
  // the colour figure that stock does not decide.
  std::size_t in_stock = 0;
  double variant_first_in_stock = 0;
  // Per distortion of the query photo: (queries, of which variant first).
  std::map<std::string, std::pair<std::size_t, std::size_t>> by_distortion;
  double seconds = 0;
};

// queries_file: JSONL lines {"image", "product", "group_id", "color", "distortion"}
// (demo-catalog's variant-queries.jsonl), image relative to the file. Each query is
// searched with `ranking` (k = 1). Throws Error(kInvalidInput) naming the line of a
// malformed query line, and the errors of Engine::search (an unknown profile).
// match: searched for products that look like the photo, or for its exact product
// (SearchOptions::match).
ColourEvalReport evaluate_colour(const Engine& engine, const std::filesystem::path& queries_file,
                                 const RankRequest& ranking, embed::Match match,
                                 const std::function<void(std::size_t done, std::size_t total)>& on_progress);

}  // namespace lookalike::search

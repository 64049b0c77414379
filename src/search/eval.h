// Category retrieval quality: each query photo against the catalog, relevant
// meaning the product's category equals the query's.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace lookalike::search {

class Engine;

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

}  // namespace lookalike::search

// The lookalike command line: batch work on a data folder. Data goes to stdout,
// messages and progress to stderr.
#include <malloc.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "catalog/event.h"
#include "catalog/text.h"
#include "cli/bench_embed.h"
#include "cli/eval_ranking.h"
#include "cli/runtime.h"
#include "cli/serve.h"
#include "common/error.h"
#include "common/files.h"
#include "embed/embedder.h"
#include "embed/train.h"
#include "image/image.h"
#include "rank/rank.h"
#include "search/demo_catalog.h"
#include "search/engine.h"
#include "search/eval.h"
#include "search/filter_bench.h"
#include "search/robustness.h"
#include "search/snapshot.h"
#include "search/training_data.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace lookalike;

namespace {

constexpr int kExitError = 1;
constexpr int kExitSkipped = 3;

const char* kExamples = R"(lookalike: visual product search for online shops

Examples:
  lookalike demo-catalog --out demo-data
  lookalike ingest --data demo-data --catalog demo-data/catalog.jsonl
  lookalike search --data demo-data --image demo-data/queries/00000.png --k 10
  lookalike search --data demo-data --queries paths.txt --k 10 --json
  lookalike search --data demo-data --image photo.jpg --profile default --user u42 --price 40 --explain
  lookalike events --data demo-data --file events.jsonl
  lookalike search --data demo-data --image q.png --filter 'category = "Sneaker" AND price < 50' --sort price_asc
  lookalike variants --data demo-data --id sku-1
  lookalike search --data demo-data --text "leather boot"
  lookalike search --data demo-data --image q.png --text northwind    (this look, from that brand)
  lookalike bench-filter --data demo-data --queries demo-data/queries.jsonl
  lookalike eval   --data demo-data --queries demo-data/queries.jsonl
  lookalike eval-robustness --data demo-data --items 2000 --seed 1
  lookalike eval-ranking --data demo-copy --queries demo-copy/queries.jsonl --seeds 3
  lookalike reindex --data demo-data --model new-model.lkm
  lookalike export-model --model models/fashion-cnn.lkm --out fashion-cnn.pt
  lookalike export-model --model models/fashion-cnn.lkm --format onnx --out fashion-cnn.onnx
  lookalike --threads 2 bench-embed --model models/fashion-cnn.lkm --model fashion-cnn.onnx --images demo-data/images
  lookalike export-model --onnx my-net.onnx --config my-net.json --out my-net-lookalike.onnx
  lookalike fuse-models --model models/fashion-cnn.lkm --model selfsup.lkm --weight 2 --weight 1 --out fused.lkm
  lookalike train  --catalog demo-data/catalog.jsonl --out models/fashion-cnn.lkm --seed 1
  lookalike train  --self-supervised --catalog demo-data/catalog.jsonl --out selfsup.lkm --epochs 8
  lookalike info   --data demo-data
  lookalike serve  --data demo-data --port 8080
  lookalike snapshot --data demo-data --out backups/demo-1   (while serving, too)
  lookalike restore  --from backups/demo-1 --data demo-data --force
)";

// The suite distortions of these names (--distortions, --hold-out).
std::vector<image::Distortion> suite_distortions_named(const std::vector<std::string>& names) {
  std::vector<image::Distortion> out;
  for (const auto& name : names) {
    auto d = image::distortion_from_string(name);
    if (!d || *d == image::Distortion::kNone) {
      std::string known;
      for (auto s : image::suite_distortions())
        known += std::string(known.empty() ? "" : ", ") + image::to_string(s);
      throw Error(ErrorKind::kInvalidInput, "unknown distortion '" + name + "' (known: " + known + ")");
    }
    out.push_back(*d);
  }
  return out;
}

json hit_json(const search::ProductHit& hit, bool explain) {
  json out{{"product_id", hit.product_id}, {"score", hit.score},
           {"similarity", hit.similarity}, {"title", hit.product.title},
           {"brand", hit.product.brand},   {"category", hit.product.category},
           {"price", hit.product.price},   {"currency", hit.product.currency},
           {"rating", hit.product.rating}, {"stock", hit.product.stock}};
  if (hit.text_relevance) out["text_relevance"] = *hit.text_relevance;
  if (explain && hit.ranking) out["explain"] = json::parse(rank::explain_json(*hit.ranking));
  return out;
}

json variant_json(const search::Variant& v) {
  json out{{"product_id", v.product_id}, {"color", v.color},       {"size", v.size},
           {"price", v.price},           {"currency", v.currency}, {"stock", v.stock}};
  if (v.score) out["score"] = *v.score;
  return out;
}

// With grouping: the family's size and its other variants (swatches) on each hit.
void add_variants(json& hit_out, const search::ProductHit& hit) {
  hit_out["family_size"] = hit.family_size;
  hit_out["variants"] = json::array();
  for (const auto& v : hit.variants) hit_out["variants"].push_back(variant_json(v));
}

// One variant in a line: "red 42 59.99 EUR stock 12".
std::string describe_variant(const std::string& color, const std::string& size, double price,
                             const std::string& currency, std::int64_t stock) {
  char text[96];
  std::snprintf(text, sizeof text, "%.2f %s stock %lld", price, currency.c_str(),
                static_cast<long long>(stock));
  std::string out;
  for (const auto& part : {color, size}) {
    if (!part.empty()) out += part + " ";
  }
  return out + text;
}

// `matched` only with a filter: without one, the line keeps its original two keys.
json result_json(const std::string& query, const search::QueryResult& result, bool filtered, bool explain,
                 bool grouped) {
  json out{{"query", query}};
  if (!result.error.empty()) {
    out["error"] = result.error;
    return out;
  }
  out["results"] = json::array();
  for (const auto& hit : result.hits) {
    out["results"].push_back(hit_json(hit, explain));
    if (grouped) add_variants(out["results"].back(), hit);
  }
  if (filtered) out["matched"] = result.matched;
  if (result.facets) out["facets"] = json::parse(filter::facets_json(*result.facets));
  return out;
}

void print_facets(const filter::Facets& f) {
  auto line = [](const std::string& name, const std::vector<filter::FacetValue>& values) {
    if (values.empty()) return;
    std::printf("  %-10s", name.c_str());
    for (const auto& v : values) std::printf("  %s (%zu)", v.value.c_str(), v.count);
    std::printf("\n");
  };
  line("category", f.category);
  line("brand", f.brand);
  for (const auto& [key, values] : f.attributes) line(key, values);
  std::printf("  %-10s", "price");
  for (const auto& b : f.price) {
    if (b.to) {
      std::printf("  %g-%g (%zu)", b.from, *b.to, b.count);
    } else {
      std::printf("  %g+ (%zu)", b.from, b.count);
    }
  }
  std::printf("\n");
}

void print_result_table(const std::string& query, const search::QueryResult& result, bool explain) {
  if (!result.error.empty()) {
    std::cerr << query << ": " << result.error << "\n";
    return;
  }
  std::printf("%s\n", query.c_str());
  int rank = 0;
  for (const auto& hit : result.hits) {
    const auto& p = hit.product;
    std::printf("%3d  %.3f  %-10s  %-40s  %-12s  %8.2f %s  stock %lld\n", ++rank, hit.score,
                hit.product_id.c_str(), p.title.c_str(), p.category.c_str(), p.price, p.currency.c_str(),
                static_cast<long long>(p.stock));
    if (!hit.variants.empty()) {
      std::printf("      %zu variants; also:", hit.family_size);
      for (const auto& v : hit.variants) {
        std::printf("  %s (%s)", v.product_id.c_str(),
                    describe_variant(v.color, v.size, v.price, v.currency, v.stock).c_str());
      }
      std::printf("\n");
    }
    if (!explain || !hit.ranking) continue;
    std::printf("      =");
    for (std::size_t c = 0; c < rank::kComponentCount; ++c) {
      const auto& part = hit.ranking->parts[c];
      if (part.weight == 0) continue;
      std::printf(" %s %+.3f (%.3f x %g)", rank::component_name(static_cast<rank::Component>(c)),
                  part.contribution(), part.value, part.weight);
    }
    std::printf("; rating %.2f Bayesian\n", hit.ranking->rating_average);
  }
}

search::OpenOptions open_options(const std::string& model, const std::string& index_factory) {
  search::OpenOptions options;
  options.model = model;
  options.index_factory = index_factory;
  options.on_message = [](const std::string& m) { std::cerr << "lookalike: " << m << "\n"; };
  return options;
}

// glibc hands blocks above 128 KiB back to the kernel as soon as they are freed
// (their own mappings, and trimming the heap), so the activations of every
// embedding batch (up to 26 MB a tensor) were mapped and zeroed again batch after
// batch: 13 of the 40 CPU seconds of ingesting the 60,000-image demo catalog were
// system time. Keeping such blocks in the heap for reuse: 2,040 -> 2,730 images/s
// at the same peak RSS (bench/RESULTS.md, "Allocator settings").
void keep_large_blocks_for_reuse() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's largest: below it, from the heap
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  mallopt(M_TOP_PAD, 64 << 20);
}

}  // namespace

int main(int argc, char** argv) {
  keep_large_blocks_for_reuse();
  CLI::App app{kExamples, "lookalike"};
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("--threads", threads, "CPU threads for embedding and search (default: all cores)");

  // demo-catalog
  auto* demo_cmd = app.add_subcommand("demo-catalog", "Build the demo catalog from Debian's Fashion-MNIST");
  std::string demo_out;
  demo::DemoCatalogOptions demo_options;
  demo_cmd->add_option("--out", demo_out, "Folder to write")->required();
  demo_cmd->add_option("--products", demo_options.max_products, "Number of catalog products (max 60000)");
  demo_cmd->add_option("--queries", demo_options.max_queries, "Number of query photos (max 10000)");
  demo_cmd->add_option("--dataset", demo_options.dataset_dir, "Folder with the Fashion-MNIST IDX files");
  demo_cmd->add_option("--variant-families", demo_options.variant_families,
                       "Colour variant families written to variants.jsonl (default 1000; 0: none)");
  demo_cmd
      ->add_option("--variant-queries", demo_options.variant_queries_per_family,
                   "Query photos per variant family (default 2)")
      ->check(CLI::Range(1, 4));

  // ingest
  auto* ingest_cmd = app.add_subcommand("ingest", "Import or update a catalog file (JSONL or CSV)");
  std::string data_dir, catalog_file, model, index_factory;
  bool strict = false, as_json = false;
  ingest_cmd->add_option("--data", data_dir, "Data folder (created when new)")->required();
  ingest_cmd->add_option("--catalog", catalog_file, "Catalog file, .jsonl or .csv")->required();
  ingest_cmd->add_option("--model", model,
                         "Model file for a new data folder, or 'pixels' (default: shipped model)");
  ingest_cmd->add_option("--index", index_factory,
                         "FAISS factory string (default: Flat up to 200k vectors, else HNSW32)");
  ingest_cmd->add_flag("--strict", strict, "Exit with status 3 when any line or image was skipped");
  ingest_cmd->add_flag("--json", as_json, "Print the summary as JSON");

  // delete
  auto* delete_cmd = app.add_subcommand("delete", "Delete products by id");
  std::vector<std::string> delete_ids;
  delete_cmd->add_option("--data", data_dir, "Data folder")->required();
  delete_cmd->add_option("--id", delete_ids, "Product id (repeatable)")->required();

  // train
  auto* train_cmd = app.add_subcommand("train",
                                       "Train the CNN embedder: on a labelled catalog's categories, or with "
                                       "--self-supervised on its photos alone");
  std::string train_out;
  embed::TrainOptions train_options;
  bool self_supervised = false;
  std::vector<std::string> held_out;
  train_cmd->add_option("--catalog", catalog_file, "Catalog file (labelled unless --self-supervised)")
      ->required();
  train_cmd->add_option("--out", train_out, "Model file to write")->required();
  train_cmd->add_option("--epochs", train_options.epochs, "Passes over the data");
  train_cmd->add_option("--batch", train_options.batch_size, "Batch size");
  train_cmd->add_option("--lr", train_options.learning_rate, "Peak learning rate");
  train_cmd->add_option("--dim", train_options.dim, "Embedding dimension");
  train_cmd->add_option("--width", train_options.width,
                        "Multiplies the channels of every conv block (default 1)");
  std::string train_gray = "luma";
  train_cmd
      ->add_option("--gray", train_gray,
                   "How colour photos are made grey for the model: luma (default) or value (max of R, G, "
                   "B; the model then sees every colour variant of an item alike), stored in the model")
      ->check(CLI::IsMember({"luma", "value"}));
  train_cmd->add_option("--erase", train_options.erase_probability,
                        "Chance of a random-erasing patch per training sample (default 0)");
  train_cmd->add_option("--seed", train_options.seed,
                        "Random seed (training is reproducible per seed and thread count)");
  train_cmd->add_flag("--resume", train_options.resume, "Resume from the checkpoint next to --out");
  train_cmd->add_flag("--self-supervised", self_supervised,
                      "No labels: learn to find each catalog image from synthetic shopper photos of it "
                      "(instance search); categories are ignored");
  train_cmd->add_option("--instance-weight", train_options.instance_weight,
                        "Labelled training: add the self-supervised loss with this weight, so that one model "
                        "learns categories and tells products apart (default 0: off)");
  train_cmd->add_option("--temperature", train_options.temperature,
                        "Self-supervised or --instance-weight: softmax temperature of the contrastive loss "
                        "(default 0.1)");
  train_cmd->add_option("--clean", train_options.clean_probability,
                        "Self-supervised or --instance-weight: chance that a training photo is undistorted "
                        "(default 0.2)");
  train_cmd
      ->add_option("--hold-out", held_out,
                   "Self-supervised or --instance-weight: comma-separated suite distortions never used for "
                   "training photos")
      ->delimiter(',');

  // info
  auto* info_cmd = app.add_subcommand("info", "Counts, model and index of a data folder");
  info_cmd->add_option("--data", data_dir, "Data folder")->required()->check(CLI::ExistingDirectory);
  info_cmd->add_flag("--json", as_json, "Print as JSON");

  // search
  auto* search_cmd = app.add_subcommand("search", "Find the products that look like a photo");
  std::string image_file, queries_file;
  int k = 10;
  search_cmd->add_option("--data", data_dir, "Data folder")->required()->check(CLI::ExistingDirectory);
  auto* image_opt = search_cmd->add_option("--image", image_file, "Query photo (JPEG, PNG or WebP)");
  search_cmd->add_option("--queries", queries_file, "File with one image path per line (batch mode)")
      ->excludes(image_opt);
  search_cmd->add_option("--k", k, "Number of products")->check(CLI::Range(1, search::Engine::kMaxK));
  search_cmd->add_flag("--json", as_json, "One JSON object per query on stdout");
  std::string filter_text, sort_name = "best";
  search::SearchOptions search_options;
  search_cmd->add_option("--filter", filter_text,
                         "Only products passing this filter, e.g. 'category = \"Sneaker\" AND price < 50' "
                         "(grammar in the README)");
  search_cmd->add_option("--sort", sort_name, "best, price_asc, price_desc or rating (default: best)");
  search_cmd
      ->add_option("--depth", search_options.depth,
                   "Candidates per query: the best matches re-ranked, sorted and counted in facets (default: "
                   "the profile's, 100)")
      ->check(CLI::Range(0, search::Engine::kMaxK));
  search_cmd->add_flag("--facets", search_options.facets, "Count category, brand, colour and price facets");
  bool no_group = false;
  search_cmd->add_flag(
      "--no-group", no_group,
      "List every product; by default products sharing a group_id are one result (their best "
      "variant, the others listed as its variants), and --k and --depth count families");
  std::string text;
  bool text_exact = false;
  search_cmd->add_option(
      "--text", text,
      "Words the products must contain (title, brand, category, attributes): alone, a search "
      "by text; with a photo, only matching products, scored by look and text");
  search_cmd->add_flag("--text-exact", text_exact, "Match the last word whole, not as a prefix");
  std::string match_name = "similar";
  search_cmd->add_option("--match", match_name,
                         "similar (products that look like the photo, the default) or exact (the photo's "
                         "own product: a fused model's exact weights)");

  search::RankRequest rank_request;
  bool explain = false;
  double price_target = -1, price_min = -1, price_max = -1;
  search_cmd->add_option(
      "--profile", rank_request.profile,
      "Ranking profile: a stored one, 'default' (business signals) or 'visual' (look only)");
  search_cmd->add_option("--user", rank_request.user_id, "Shopper id whose taste counts (from their events)");
  search_cmd->add_option("--price", price_target, "Target price: closer prices rank higher")
      ->check(CLI::PositiveNumber);
  search_cmd->add_option("--price-min", price_min, "Lower end of the wanted price range")
      ->check(CLI::NonNegativeNumber);
  search_cmd->add_option("--price-max", price_max, "Upper end of the wanted price range")
      ->check(CLI::PositiveNumber);
  search_cmd->add_flag("--explain", explain, "Show each result's score broken down by component");

  // variants
  auto* variants_cmd = app.add_subcommand(
      "variants", "Compare the variants of a product's family (products sharing its group_id)");
  std::string variant_id;
  variants_cmd->add_option("--data", data_dir, "Data folder")->required()->check(CLI::ExistingDirectory);
  variants_cmd->add_option("--id", variant_id, "Product id")->required();
  variants_cmd->add_flag("--json", as_json, "One JSON object per variant");

  // events
  auto* events_cmd = app.add_subcommand(
      "events", "Record shopper events (view, click, add_to_cart, purchase) from a JSONL file");
  std::string events_file;
  events_cmd->add_option("--data", data_dir, "Data folder")->required()->check(CLI::ExistingDirectory);
  events_cmd
      ->add_option("--file", events_file,
                   "JSONL, one {\"type\", \"product_id\", \"user_id\", \"time\"} per line")
      ->required();
  events_cmd->add_flag("--strict", strict, "Exit with status 3 when any line was rejected");
  events_cmd->add_flag("--json", as_json, "Print the summary as JSON");

  // bench-filter
  auto* bench_cmd = app.add_subcommand(
      "bench-filter", "Filtered search: recall@k against exact filtered search and latency per selectivity");
  std::size_t synthetic = 0, bench_queries = 200;
  bench_cmd->add_option("--data", data_dir, "Data folder (for --synthetic: created when missing)")
      ->required();
  bench_cmd->add_option("--queries", queries_file, "Queries JSONL {\"image\": ...} (not with --synthetic)");
  bench_cmd->add_option("--synthetic", synthetic, "Use a synthetic catalog of this many products");
  bench_cmd->add_option("--index", index_factory, "FAISS factory string for a new synthetic catalog");
  bench_cmd->add_option("--count", bench_queries, "Queries per selectivity (default 200)");
  bench_cmd->add_option("--k", k, "Results per query")->check(CLI::Range(1, search::Engine::kMaxK));
  bench_cmd->add_flag("--json", as_json, "Print the rows as JSON");

  // eval
  auto* eval_cmd =
      app.add_subcommand("eval", "Category retrieval quality: P@1, P@10, mAP@100 and throughput");
  eval_cmd->add_option("--data", data_dir, "Data folder")->required()->check(CLI::ExistingDirectory);
  eval_cmd->add_option("--queries", queries_file, "Queries JSONL {\"image\": ..., \"category\": ...}")
      ->required();
  eval_cmd->add_flag("--json", as_json, "Print as JSON");

  // eval-colour
  auto* colour_cmd = app.add_subcommand(
      "eval-colour",
      "Colour variants: share of shopper photos of one colour variant whose first result is that variant");
  std::string colour_profile = rank::kDefaultProfile;
  std::vector<double> colour_weights;
  colour_cmd->add_option("--data", data_dir, "Data folder")->required()->check(CLI::ExistingDirectory);
  colour_cmd
      ->add_option("--queries", queries_file,
                   "Queries JSONL {\"image\", \"product\", \"group_id\", \"color\"} (demo-catalog's "
                   "variant-queries.jsonl)")
      ->required();
  colour_cmd->add_option("--profile", colour_profile, "Ranking profile (default: default)");
  colour_cmd
      ->add_option("--colour-weight", colour_weights,
                   "Run once per weight, the profile's colour weight replaced by it (repeatable)")
      ->check(CLI::Range(0.0, rank::kMaxWeight));
  std::string colour_match = "similar";
  colour_cmd->add_option("--match", colour_match,
                         "similar (search by look, the default, as the shop's search does) or exact (for the "
                         "photo's own product)");
  colour_cmd->add_flag("--json", as_json, "One JSON object per run");

  // snapshot
  auto* snapshot_cmd = app.add_subcommand(
      "snapshot", "Consistent copy of a data folder, also while a server is serving and writing it");
  std::string snapshot_out;
  snapshot_cmd->add_option("--data", data_dir, "Data folder")->required()->check(CLI::ExistingDirectory);
  snapshot_cmd->add_option("--out", snapshot_out, "Folder to create (must not exist)")->required();
  snapshot_cmd->add_flag("--json", as_json, "Print the summary as JSON");

  // restore
  auto* restore_cmd =
      app.add_subcommand("restore", "Bring a data folder back from a snapshot (stop the server on it first)");
  std::string restore_from;
  bool force = false;
  restore_cmd->add_option("--from", restore_from, "Snapshot folder")
      ->required()
      ->check(CLI::ExistingDirectory);
  restore_cmd->add_option("--data", data_dir, "Data folder to restore (created when missing)")->required();
  restore_cmd->add_flag("--force", force, "Replace a data folder that is not empty");
  restore_cmd->add_flag("--json", as_json, "Print the summary as JSON");

  // eval-robustness
  auto* robust_cmd = app.add_subcommand(
      "eval-robustness",
      "Instance robustness: distorted photos of catalog items (crop, rotation, blur, clutter, ...) must find "
      "their own product; Recall@1 and Recall@10 per distortion");
  search::RobustnessOptions robust_options;
  std::vector<std::string> robust_distortions;
  robust_cmd->add_option("--data", data_dir, "Data folder")->required()->check(CLI::ExistingDirectory);
  robust_cmd->add_option("--items", robust_options.items, "Products sampled (default 2000)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}));
  robust_cmd->add_option("--seed", robust_options.seed,
                         "Picks the products and the distortions' strengths (default 1)");
  robust_cmd->add_option("--distortions", robust_distortions, "Comma-separated subset (default: all)")
      ->delimiter(',');
  std::string robust_match = "exact";
  robust_cmd->add_option("--match", robust_match,
                         "exact (search for the photo's own product, the default) or similar (by look)");
  robust_cmd->add_flag("--json", as_json, "Print as JSON");

  // reindex
  auto* reindex_cmd = app.add_subcommand(
      "reindex", "Switch a data folder to another model: re-embed every image, then switch atomically");
  std::string reindex_model;
  bool rollback = false;
  reindex_cmd->add_option("--data", data_dir, "Data folder")->required()->check(CLI::ExistingDirectory);
  auto* reindex_model_opt =
      reindex_cmd->add_option("--model", reindex_model, "Model file to switch to, or 'pixels'");
  reindex_cmd->add_flag("--rollback", rollback, "Restore the model that was active before the last switch")
      ->excludes(reindex_model_opt);
  reindex_cmd->add_flag("--json", as_json, "Print the summary as JSON");

  // export-model
  auto* export_cmd = app.add_subcommand(
      "export-model",
      "Write a model as TorchScript or ONNX with its config (usable as --model anywhere), or package a "
      "TorchScript or ONNX file made elsewhere with a config JSON");
  std::string export_model, export_torchscript, export_onnx, export_config, export_out, export_format;
  auto* export_model_opt =
      export_cmd->add_option("--model", export_model, "A model file of `lookalike train`");
  auto* export_ts_opt =
      export_cmd->add_option("--torchscript", export_torchscript, "A TorchScript file (torch.jit.save)")
          ->excludes(export_model_opt);
  export_cmd->add_option("--onnx", export_onnx, "An ONNX file (e.g. torch.onnx.export)")
      ->excludes(export_model_opt)
      ->excludes(export_ts_opt);
  export_cmd->add_option("--config", export_config,
                         "Model config JSON for --torchscript or --onnx (see README)");
  export_cmd
      ->add_option("--format", export_format,
                   "Format written for --model: torchscript or onnx (default: onnx when --out ends in .onnx)")
      ->check(CLI::IsMember({"torchscript", "onnx"}))
      ->needs(export_model_opt);
  export_cmd->add_option("--out", export_out, "File to write")->required();

  // fuse-models
  auto* fuse_cmd = app.add_subcommand("fuse-models",
                                      "Fuse models into one whose similarity is the weighted mean of theirs "
                                      "(e.g. categories and exact items)");
  std::vector<std::string> fuse_models;
  std::vector<double> fuse_weights;
  std::string fuse_out;
  fuse_cmd->add_option("--model", fuse_models, "A part: any model file (repeat, 2 to 8 parts)")->required();
  fuse_cmd->add_option("--weight", fuse_weights, "Each part's weight, in --model order (default: all 1)");
  std::vector<double> fuse_exact_weights;
  fuse_cmd->add_option("--exact-weight", fuse_exact_weights,
                       "Each part's weight when a search asks for the exact product (--match exact), in "
                       "--model order, 0 to leave a part out (default: the --weight ones)");
  fuse_cmd->add_option("--out", fuse_out, "File to write")->required();

  // bench-embed
  cli::BenchEmbedOptions bench_embed_options;
  auto* bench_embed_cmd = cli::add_bench_embed_command(app, bench_embed_options);

  // eval-ranking
  cli::EvalRankingCommand eval_ranking;
  auto* eval_ranking_cmd = cli::add_eval_ranking_command(app, eval_ranking);

  // serve
  server::ServerOptions serve_options;
  auto* serve_cmd = cli::add_serve_command(app, serve_options);

  CLI11_PARSE(app, argc, argv);
  cli::configure_threads(threads);

  try {
    if (*serve_cmd) return cli::run_serve(serve_options);
    if (*eval_ranking_cmd) return cli::run_eval_ranking(eval_ranking);
    if (*bench_embed_cmd) return cli::run_bench_embed(bench_embed_options);
    if (*demo_cmd) {
      cli::Progress progress("demo-catalog");
      auto report = demo::write_demo_catalog(demo_out, demo_options);
      std::cerr << "wrote " << report.products << " products to "
                << (fs::path(demo_out) / "catalog.jsonl").string() << " and " << report.queries
                << " queries to " << (fs::path(demo_out) / "queries.jsonl").string() << "\n";
      if (report.variants > 0) {
        std::cerr << "wrote " << report.variants << " colour variants to "
                  << (fs::path(demo_out) / "variants.jsonl").string() << " and " << report.variant_queries
                  << " variant query photos to " << (fs::path(demo_out) / "variant-queries.jsonl").string()
                  << "\n";
      }
      return 0;
    }
    if (*ingest_cmd) {
      auto engine = search::Engine::open(data_dir, open_options(model, index_factory));
      search::IngestOptions options;
      cli::Progress progress("ingest");
      options.on_progress = [&](std::size_t lines) { progress.update(lines, 0, "lines"); };
      options.on_skip = [&](std::size_t line, const std::string& image, const std::string& reason) {
        progress.message("skipped line " + std::to_string(line) + (image.empty() ? "" : " image " + image) +
                         ": " + reason);
      };
      auto r = engine->ingest(catalog_file, options);
      progress.done();
      json summary{{"lines", r.lines},
                   {"added", r.products_added},
                   {"updated", r.products_updated},
                   {"unchanged", r.products_unchanged},
                   {"deleted", r.products_deleted},
                   {"images_embedded", r.images_embedded},
                   {"images_reused", r.images_reused},
                   {"lines_skipped", r.lines_skipped},
                   {"images_skipped", r.images_skipped},
                   {"seconds", r.seconds},
                   {"images_per_second", r.seconds > 0 ? double(r.images_embedded) / r.seconds : 0.0}};
      if (as_json) {
        std::cout << summary.dump() << "\n";
      } else {
        std::printf(
            "imported %zu lines in %.1f s: %zu added, %zu updated, %zu unchanged, %zu deleted; "
            "%zu images embedded (%.0f/s), %zu reused; skipped %zu lines and %zu images\n",
            r.lines, r.seconds, r.products_added, r.products_updated, r.products_unchanged,
            r.products_deleted, r.images_embedded, summary["images_per_second"].get<double>(),
            r.images_reused, r.lines_skipped, r.images_skipped);
      }
      return strict && r.skipped() > 0 ? kExitSkipped : 0;
    }
    if (*snapshot_cmd || *restore_cmd) {
      auto say = [](const std::string& m) { std::cerr << "lookalike: " << m << "\n"; };
      const bool snap = snapshot_cmd->parsed();
      auto r = snap ? search::snapshot_data_folder(data_dir, snapshot_out, say)
                    : search::restore_data_folder(restore_from, data_dir, force, say);
      json summary{{"products", r.products},
                   {"images", r.images},
                   {"files", r.files},
                   {"bytes", r.bytes},
                   {"seconds", r.seconds}};
      if (as_json) {
        std::cout << summary.dump() << "\n";
      } else {
        std::printf("%s %s: %lld products, %lld images, %zu files, %llu bytes in %.1f s\n",
                    snap ? "snapshot written to" : "restored", (snap ? snapshot_out : data_dir).c_str(),
                    static_cast<long long>(r.products), static_cast<long long>(r.images), r.files,
                    static_cast<unsigned long long>(r.bytes), r.seconds);
      }
      return 0;
    }
    if (*delete_cmd) {
      auto engine = search::Engine::open(data_dir, open_options("", ""));
      std::size_t n = engine->delete_products(delete_ids);
      std::printf("deleted %zu of %zu products\n", n, delete_ids.size());
      return n == delete_ids.size() ? 0 : kExitError;
    }
    if (*train_cmd) {
      train_options.held_out = suite_distortions_named(held_out);
      const bool instance_loss = self_supervised || train_options.instance_weight > 0;
      if (!instance_loss &&
          (!held_out.empty() || train_cmd->count("--temperature") || train_cmd->count("--clean"))) {
        throw CLI::ValidationError("--temperature, --clean and --hold-out",
                                   "need --self-supervised or --instance-weight");
      }
      if (self_supervised && train_cmd->count("--instance-weight")) {
        throw CLI::ValidationError("--instance-weight", "is for labelled training, not --self-supervised");
      }
      cli::Progress progress("train");
      auto on_skip = [&](std::size_t line, const std::string& image, const std::string& reason) {
        progress.message("skipped line " + std::to_string(line) + " " + image + ": " + reason);
      };
      train_options.checkpoint = train_out + ".checkpoint";
      // A finished run removes its checkpoint, so --resume after it starts over: say so.
      if (train_options.resume && !fs::exists(train_options.checkpoint)) {
        std::cerr << "no checkpoint at " << train_options.checkpoint.string() << ": training from the start\n";
      }
      train_options.on_progress = [&](const embed::TrainProgress& p) { progress.train(p); };
      image::InputSpec input = embed::default_input_spec();
      input.gray = image::parse_gray(train_gray, "--gray");
      if (self_supervised) {
        auto set = search::load_catalog_images(catalog_file, input, image::DecodeLimits{}, on_skip);
        std::cerr << "training self-supervised on " << set.size() << " images\n";
        embed::train_self_supervised(set, train_options, train_out);
      } else {
        auto set =
            search::load_labelled_catalog(catalog_file, input, image::DecodeLimits{}, on_skip, instance_loss);
        std::cerr << "training on " << set.size() << " images in " << set.class_names.size()
                  << " categories\n";
        embed::train_model(set, train_options, train_out);
      }
      progress.done();
      std::error_code ec;
      fs::remove(train_options.checkpoint, ec);
      std::cerr << "wrote " << train_out << "\n";
      return 0;
    }
    if (*info_cmd) {
      auto engine = search::Engine::open(data_dir, open_options("", ""));
      auto i = engine->info();
      json out{{"products", i.products},
               {"images", i.images},
               {"embedded", i.embedded},
               {"model", i.model},
               {"model_parts", i.model_parts},
               {"previous_model", i.previous_model},
               {"index", i.index_factory},
               {"index_vectors", i.index_vectors},
               {"index_bytes", i.index_bytes}};
      if (as_json) {
        std::cout << out.dump() << "\n";
      } else {
        std::printf("products       %lld\nimages         %lld\nembedded       %lld\nmodel          %s\n",
                    static_cast<long long>(i.products), static_cast<long long>(i.images),
                    static_cast<long long>(i.embedded), i.model.c_str());
        for (const auto& part : i.model_parts) std::printf("  part         %s\n", part.c_str());
        std::printf("previous model %s\nindex          %s, %zu vectors, %llu bytes\n",
                    i.previous_model.empty() ? "(none)" : i.previous_model.c_str(), i.index_factory.c_str(),
                    i.index_vectors, static_cast<unsigned long long>(i.index_bytes));
      }
      return 0;
    }
    if (*search_cmd) {
      if (image_file.empty() && queries_file.empty() && text.empty())
        throw CLI::RequiredError("--image, --queries or --text");
      if (price_target > 0) rank_request.price.target = price_target;
      if (price_min >= 0) rank_request.price.min = price_min;
      if (price_max > 0) rank_request.price.max = price_max;
      if (price_min >= 0 && price_max > 0 && price_min > price_max) {
        throw Error(ErrorKind::kInvalidInput, "--price-min is above --price-max");
      }
      auto engine = search::Engine::open(data_dir, open_options("", ""));
      std::vector<std::string> paths;
      if (!image_file.empty()) {
        paths.push_back(image_file);
      } else if (!queries_file.empty()) {
        std::ifstream in(queries_file);
        if (!in) throw Error(ErrorKind::kNotFound, "cannot open " + queries_file);
        for (std::string line; std::getline(in, line);) {
          if (!line.empty() && line.back() == '\r') line.pop_back();
          if (!line.empty()) paths.push_back(line);
        }
      }
      if (!filter_text.empty()) search_options.filter = filter::Filter::parse(filter_text);
      search_options.sort = search::parse_sort(sort_name);
      search_options.group_variants = !no_group;
      search_options.match = embed::parse_match(match_name);
      rank_request.depth = search_options.depth;
      if (search_options.facets) search_options.facet_options.attributes = {"color", "material"};
      if (!text.empty()) search_options.text = catalog::TextQuery::parse(text, {}, !text_exact);
      if (paths.empty()) {
        const std::string label = "text: " + text;
        auto result = engine->search_text(k, /*with_details=*/true, search_options, &rank_request);
        if (as_json) {
          std::cout << result_json(label, result, /*filtered=*/true, explain, search_options.group_variants).dump() << "\n";
        } else {
          print_result_table(label, result, explain);
          std::printf("  (%zu products match)\n", result.matched);
          if (result.facets) print_facets(*result.facets);
        }
        return 0;
      }
      bool any_failed = false;
      constexpr std::size_t kBatch = 256;
      for (std::size_t begin = 0; begin < paths.size(); begin += kBatch) {
        std::vector<fs::path> files(
            paths.begin() + static_cast<long>(begin),
            paths.begin() + static_cast<long>(std::min(paths.size(), begin + kBatch)));
        auto results = engine->search_files(files, k, /*with_details=*/true, search_options, &rank_request);
        for (std::size_t i = 0; i < results.size(); ++i) {
          any_failed = any_failed || !results[i].error.empty();
          if (as_json) {
            std::cout << result_json(paths[begin + i], results[i],
                                     search_options.filter.has_value() || search_options.text.has_value(),
                                     explain, search_options.group_variants)
                             .dump()
                      << "\n";
          } else {
            print_result_table(paths[begin + i], results[i], explain);
            if (results[i].error.empty() && (search_options.filter || search_options.text)) {
              std::printf(
                  search_options.text ? "  (%zu products match)\n" : "  (%zu products pass the filter)\n",
                  results[i].matched);
            }
            if (results[i].facets) print_facets(*results[i].facets);
          }
        }
      }
      return any_failed && !image_file.empty() ? kExitError : 0;
    }
    if (*variants_cmd) {
      auto engine = search::Engine::open(data_dir, open_options("", ""));
      for (const auto& p : engine->variants(variant_id)) {
        if (as_json) {
          std::cout << catalog::to_json_line(p) << "\n";
          continue;
        }
        auto attribute = [&](const char* key) {
          auto it = p.attributes.find(key);
          return it == p.attributes.end() ? std::string("-") : it->second;
        };
        std::printf("%s %-12s  %-10s  %-6s  %-10s  %8.2f %s  stock %-5lld  rating %.1f (%lld)  %s\n",
                    p.id == variant_id ? "*" : " ", p.id.c_str(), attribute("color").c_str(),
                    attribute("size").c_str(), attribute("material").c_str(), p.price, p.currency.c_str(),
                    static_cast<long long>(p.stock), p.rating, static_cast<long long>(p.rating_count),
                    p.images.empty() ? "(no image)" : p.images.front().c_str());
      }
      return 0;
    }
    if (*events_cmd) {
      auto engine = search::Engine::open(data_dir, open_options("", ""));
      std::ifstream in(events_file, std::ios::binary);
      if (!in) throw Error(ErrorKind::kNotFound, "cannot open " + events_file);
      const catalog::EventLimits limits;
      constexpr std::size_t kBatch = 1000;
      std::size_t line_number = 0, accepted = 0, rejected = 0;
      std::vector<catalog::Event> batch;
      std::vector<std::size_t> batch_lines;
      std::vector<std::pair<std::size_t, std::string>>
          errors;  // of this batch's lines, printed in line order
      auto flush = [&] {
        auto report = engine->record_events(batch);
        accepted += report.accepted;
        for (const auto& [index, why] : report.rejected) errors.emplace_back(batch_lines[index], why);
        std::sort(errors.begin(), errors.end());
        for (const auto& [line, why] : errors) std::cerr << events_file << ":" << line << ": " << why << "\n";
        rejected += errors.size();
        errors.clear();
        batch.clear();
        batch_lines.clear();
      };
      for (std::string line; std::getline(in, line);) {
        ++line_number;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        try {
          batch.push_back(catalog::parse_event(line, catalog::unix_now_ms(), limits));
          batch_lines.push_back(line_number);
        } catch (const Error& e) {
          errors.emplace_back(line_number, e.what());
        }
        if (batch.size() >= kBatch) flush();
      }
      if (in.bad()) throw Error(ErrorKind::kIO, "cannot read " + events_file);
      flush();
      if (as_json) {
        std::cout << json{{"lines", line_number}, {"accepted", accepted}, {"rejected", rejected}}.dump()
                  << "\n";
      } else {
        std::printf("recorded %zu events from %zu lines; rejected %zu\n", accepted, line_number, rejected);
      }
      return strict && rejected > 0 ? kExitSkipped : 0;
    }
    if (*bench_cmd) {
      std::unique_ptr<search::Engine> engine;
      std::vector<float> queries;
      auto say = [](const std::string& m) { std::cerr << "lookalike: " << m << "\n"; };
      if (synthetic > 0) {
        search::SyntheticCatalogOptions synthetic_options;
        synthetic_options.products = synthetic;
        synthetic_options.index_factory = index_factory;
        if (!fs::exists(data_dir)) {
          const auto start = std::chrono::steady_clock::now();
          search::write_synthetic_catalog(data_dir, synthetic_options, say);
          say("synthetic catalog written in " +
              std::to_string(
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()) +
              " s");
        }
        engine = search::Engine::open(data_dir, open_options("", ""));
        queries = search::synthetic_queries(synthetic_options, static_cast<std::size_t>(engine->dim()),
                                            bench_queries);
      } else {
        if (queries_file.empty()) throw CLI::RequiredError("--queries or --synthetic");
        engine = search::Engine::open(data_dir, open_options("", ""));
        const fs::path root = fs::absolute(queries_file).parent_path();
        std::ifstream in(queries_file);
        if (!in) throw Error(ErrorKind::kNotFound, "cannot open " + queries_file);
        std::vector<image::Image> images;
        for (std::string line; images.size() < bench_queries && std::getline(in, line);) {
          if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
          auto path = resolve_inside(root, json::parse(line).at("image").get<std::string>());
          images.push_back(image::load_file(path, engine->limits(), engine->query_min_side()));
        }
        queries = engine->embed(images);
      }
      search::FilterBenchOptions bench_options;
      bench_options.queries = bench_queries;
      bench_options.k = k;
      auto rows = search::bench_filtered_search(*engine, data_dir, queries, bench_options, say);
      auto info = engine->info();
      for (const auto& r : rows) {
        json row{{"target", r.target},        {"selectivity", r.selectivity}, {"strategy", r.strategy},
                 {"recall", r.recall},        {"complete", r.complete},       {"p50_ms", r.p50_ms},
                 {"p99_ms", r.p99_ms},        {"chosen", r.chosen},           {"k", k},
                 {"products", info.products}, {"index", info.index_factory}};
        if (as_json) {
          std::cout << row.dump() << "\n";
        } else {
          std::printf("%-9.4g %-6s recall@%d %.4f  complete %.3f  p50 %7.2f ms  p99 %7.2f ms  %s\n",
                      r.selectivity, r.strategy.c_str(), k, r.recall, r.complete, r.p50_ms, r.p99_ms,
                      r.chosen.c_str());
        }
      }
      return 0;
    }
    if (*eval_cmd) {
      auto engine = search::Engine::open(data_dir, open_options("", ""));
      cli::Progress progress("eval");
      auto r = search::evaluate(*engine, queries_file, [&](std::size_t done, std::size_t total) {
        progress.update(done, total, "queries");
      });
      progress.done();
      json out{{"queries", r.queries},
               {"failed", r.failed},
               {"precision_at_1", r.precision_at_1},
               {"precision_at_10", r.precision_at_10},
               {"map_at_100", r.map_at_100},
               {"seconds", r.seconds},
               {"queries_per_second", r.queries_per_second()},
               {"model", engine->info().model}};
      if (as_json) {
        std::cout << out.dump() << "\n";
      } else {
        std::printf(
            "queries        %zu (%zu failed)\nP@1            %.4f\nP@10           %.4f\nmAP@100        %.4f\n"
            "throughput     %.0f queries/s (%.1f s)\n",
            r.queries, r.failed, r.precision_at_1, r.precision_at_10, r.map_at_100, r.queries_per_second(),
            r.seconds);
      }
      return 0;
    }
    if (*colour_cmd) {
      auto engine = search::Engine::open(data_dir, open_options("", ""));
      const rank::Profile profile = engine->ranking_profile(colour_profile);
      std::vector<std::optional<double>> runs;
      for (double w : colour_weights) runs.emplace_back(w);
      if (runs.empty()) runs.emplace_back(std::nullopt);
      for (const auto& weight : runs) {
        search::RankRequest request;
        request.profile = colour_profile;
        if (weight) {
          request.custom_profile = profile;
          request.custom_profile->weights[rank::kColour] = *weight;
        }
        cli::Progress progress("eval-colour");
        auto r = search::evaluate_colour(
            *engine, queries_file, request, embed::parse_match(colour_match),
            [&](std::size_t done, std::size_t total) { progress.update(done, total, "queries"); });
        progress.done();
        json per = json::object();
        for (const auto& [name, counts] : r.by_distortion) {
          per[name] = {{"queries", counts.first},
                       {"variant_first", counts.first ? double(counts.second) / double(counts.first) : 0.0}};
        }
        const double used = weight.value_or(profile.weights[rank::kColour]);
        json out{{"profile", colour_profile},
                 {"colour_weight", used},
                 {"match", colour_match},
                 {"queries", r.queries},
                 {"failed", r.failed},
                 {"variant_first", r.variant_first},
                 {"family_first", r.family_first},
                 {"colour_first", r.colour_first},
                 {"in_stock", r.in_stock},
                 {"variant_first_in_stock", r.variant_first_in_stock},
                 {"by_distortion", per},
                 {"seconds", r.seconds},
                 {"model", engine->info().model}};
        if (as_json) {
          std::cout << out.dump() << "\n";
        } else {
          std::printf(
              "profile %s, colour weight %g, match %s\nqueries          %zu (%zu failed)\nvariant first    "
              "%.4f   (the "
              "photographed colour variant is the first result)\nfamily first     %.4f   (any colour of the "
              "right item)\ncolour first     %.4f   (any item of the right colour)\nin stock         %.4f   "
              "(variant first, the %zu queries whose variant is in stock)\n",
              colour_profile.c_str(), used, colour_match.c_str(), r.queries, r.failed, r.variant_first,
              r.family_first, r.colour_first, r.variant_first_in_stock, r.in_stock);
          for (const auto& [name, counts] : r.by_distortion) {
            std::printf("  %-12s   %.4f   (%zu queries)\n", name.c_str(),
                        counts.first ? double(counts.second) / double(counts.first) : 0.0, counts.first);
          }
          std::printf("time             %.1f s\n", r.seconds);
        }
      }
      return 0;
    }
    if (*reindex_cmd) {
      if (reindex_model.empty() && !rollback) throw CLI::RequiredError("--model or --rollback");
      auto engine = search::Engine::open(data_dir, open_options("", ""));
      cli::Progress progress("reindex");
      search::ReindexOptions options;
      options.on_progress = [&](std::size_t done, std::size_t total) {
        progress.update(done, total, "images");
      };
      auto r = rollback ? engine->rollback(options) : engine->reindex(reindex_model, options);
      progress.done();
      json out{{"from", r.from},         {"to", r.to},         {"images", r.images},
               {"embedded", r.embedded}, {"reused", r.reused}, {"seconds", r.seconds}};
      if (as_json) {
        std::cout << out.dump() << "\n";
      } else if (r.from == r.to) {
        std::printf("model %s is already active; nothing to do\n", r.to.c_str());
      } else {
        std::printf("switched from %s to %s in %.1f s: %zu images, %zu embedded, %zu reused\n",
                    r.from.c_str(), r.to.c_str(), r.seconds, r.images, r.embedded, r.reused);
      }
      return 0;
    }
    if (*export_cmd) {
      const bool has_config = !export_config.empty();
      auto config = [&] {
        auto bytes = read_file(export_config, std::size_t(1) << 20);
        return std::string(bytes.begin(), bytes.end());
      };
      if (!export_model.empty()) {
        if (has_config)
          throw CLI::ValidationError("--config", "goes with --torchscript or --onnx, not --model");
        if (export_format.empty())
          export_format = fs::path(export_out).extension() == ".onnx" ? "onnx" : "torchscript";
        if (export_format == "onnx") {
          embed::export_onnx(export_model, export_out);
        } else {
          embed::export_torchscript(export_model, export_out);
        }
      } else if (!export_torchscript.empty() && has_config) {
        embed::package_torchscript(export_torchscript, config(), export_out);
      } else if (!export_onnx.empty() && has_config) {
        embed::package_onnx(export_onnx, config(), export_out);
      } else {
        throw CLI::RequiredError("--model, or --torchscript or --onnx with --config");
      }
      auto model = embed::load_model(export_out);
      std::printf("wrote %s: %s\n", export_out.c_str(), model->info().identity().c_str());
      return 0;
    }
    if (*fuse_cmd) {
      if (!fuse_weights.empty() && fuse_weights.size() != fuse_models.size()) {
        throw CLI::ValidationError("--weight", "give one per --model (" + std::to_string(fuse_models.size()) +
                                                   "), or none for equal weights");
      }
      if (!fuse_exact_weights.empty() && fuse_exact_weights.size() != fuse_models.size()) {
        throw CLI::ValidationError("--exact-weight", "give one per --model (" +
                                                         std::to_string(fuse_models.size()) +
                                                         "), or none for the --weight ones");
      }
      std::vector<embed::FusedPart> parts;
      for (std::size_t i = 0; i < fuse_models.size(); ++i) {
        parts.push_back({fuse_models[i], fuse_weights.empty() ? 1.0 : fuse_weights[i]});
        if (!fuse_exact_weights.empty()) parts.back().exact_weight = fuse_exact_weights[i];
      }
      embed::write_fused_model(parts, fuse_out);
      auto model = embed::load_model(fuse_out);
      std::printf("wrote %s: %s\n", fuse_out.c_str(), model->info().identity().c_str());
      return 0;
    }
    if (*robust_cmd) {
      robust_options.distortions = suite_distortions_named(robust_distortions);
      robust_options.match = embed::parse_match(robust_match);
      auto engine = search::Engine::open(data_dir, open_options("", ""));
      cli::Progress progress("eval-robustness");
      robust_options.on_progress = [&](std::size_t done, std::size_t total) {
        progress.update(done, total, "queries");
      };
      auto r = search::evaluate_robustness(*engine, robust_options);
      progress.done();
      auto row_json = [](const search::RobustnessRow& row) {
        return json{{"distortion", row.distortion},
                    {"queries", row.queries},
                    {"recall_at_1", row.recall_at_1},
                    {"recall_at_10", row.recall_at_10}};
      };
      json out{{"items", r.items},
               {"unreadable", r.unreadable},
               {"seed", robust_options.seed},
               {"seconds", r.seconds},
               {"model", engine->info().model},
               {"match", embed::to_string(robust_options.match)},
               {"overall", row_json(r.overall)},
               {"distortions", json::array()}};
      for (const auto& row : r.rows) out["distortions"].push_back(row_json(row));
      if (as_json) {
        std::cout << out.dump() << "\n";
      } else {
        std::printf("%zu products, seed %llu, model %s, match %s\n%-14s %8s %8s %8s\n", r.items,
                    static_cast<unsigned long long>(robust_options.seed), engine->info().model.c_str(),
                    embed::to_string(robust_options.match), "distortion", "queries", "R@1", "R@10");
        for (const auto& row : r.rows) {
          std::printf("%-14s %8zu %8.4f %8.4f%s\n", row.distortion.c_str(), row.queries, row.recall_at_1,
                      row.recall_at_10, row.distortion == "none" ? "  (control, not in overall)" : "");
        }
        std::printf("%-14s %8zu %8.4f %8.4f\n", "overall", r.overall.queries, r.overall.recall_at_1,
                    r.overall.recall_at_10);
      }
      return 0;
    }
  } catch (const Error& e) {
    std::cerr << "lookalike: error (" << to_string(e.kind()) << "): " << e.what() << "\n";
    return kExitError;
  } catch (const CLI::Error& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "lookalike: internal error: " << e.what() << "\n";
    return kExitError;
  }
  return 0;
}

#include "search/engine.h"

#include <algorithm>
#include <chrono>
#include <unordered_map>
#include <unordered_set>

#include "catalog/store.h"
#include "common/error.h"
#include "common/files.h"
#include "embed/embedder.h"
#include "index/vector_index.h"

namespace lookalike::search {
namespace fs = std::filesystem;

namespace {

constexpr const char* kStoreFile = "catalog.db";
constexpr const char* kModelFile = "model.lkm";
constexpr const char* kIndexFile = "index.lkx";
constexpr const char* kMetaModel = "model";          // identity of the model that made the vectors
constexpr const char* kMetaModelKind = "model_kind";  // "file" or kPixelsModel
constexpr std::size_t kEmbedBatch = 256;
constexpr std::size_t kMaxModelFileBytes = std::size_t(1) << 30;

image::InputSpec pixel_input_spec() {
  image::InputSpec spec;  // raw pixels scaled to [0, 1]: the documented baseline
  spec.width = 28;
  spec.height = 28;
  spec.channels = 1;
  spec.mean = {0.f};
  spec.stddev = {1.f};
  return spec;
}

std::unique_ptr<embed::Embedder> load_embedder(const std::string& model) {
  if (model == kPixelsModel) return embed::pixel_embedder(pixel_input_spec());
  return embed::load_model(model);
}

// Embeds preprocessed inputs in bounded batches, so memory does not grow with n.
std::vector<float> embed_all(const embed::Embedder& embedder, const std::vector<float>& inputs, std::size_t n) {
  const auto& spec = embedder.info().input;
  const std::size_t per_input = static_cast<std::size_t>(spec.channels) * spec.width * spec.height;
  const std::size_t dim = static_cast<std::size_t>(embedder.info().dim);
  std::vector<float> out(n * dim);
  for (std::size_t begin = 0; begin < n; begin += kEmbedBatch) {
    std::size_t count = std::min(kEmbedBatch, n - begin);
    embedder.embed_preprocessed(inputs.data() + begin * per_input, count, out.data() + begin * dim);
  }
  return out;
}

// The input side a model needs, for reduced-size JPEG decoding.
int min_side_for(const embed::Embedder& embedder) {
  return std::max(embedder.info().input.width, embedder.info().input.height);
}

// Turns catalog entries into store changes, a batch at a time: reads and hashes
// each image, reuses the stored vector when the bytes and the model are the same,
// decodes and embeds the rest in one batch, then commits the batch.
class BatchWriter {
 public:
  BatchWriter(catalog::Store& store, const embed::Embedder& embedder, const image::DecodeLimits& limits,
              fs::path root, const IngestOptions& options, IngestReport& report)
      : store_(&store), embedder_(embedder), limits_(limits), root_(std::move(root)), options_(options),
        report_(report) {}

  void add(std::size_t line, catalog::CatalogEntry entry) {
    report_.lines = std::max(report_.lines, line);
    batch_.push_back(Pending{line, std::move(entry), {}});
    if (batch_.size() >= options_.batch_size) flush();
  }

  void reject(std::size_t line, const std::string& message) {
    report_.lines = std::max(report_.lines, line);
    ++report_.lines_skipped;
    skip(line, "", message);
  }

  void flush();

 private:
  struct PendingImage {
    catalog::ImageRecord record;
    std::ptrdiff_t input_row = -1;  // row in the batch's inputs when it needs embedding
  };
  struct Pending {
    std::size_t line = 0;
    catalog::CatalogEntry entry;
    std::vector<PendingImage> images;
  };

  void skip(std::size_t line, const std::string& image, const std::string& reason) {
    if (options_.on_skip) options_.on_skip(line, image, reason);
  }

  catalog::Store* store_;
  const embed::Embedder& embedder_;
  const image::DecodeLimits& limits_;
  const fs::path root_;
  const IngestOptions& options_;
  IngestReport& report_;
  std::vector<Pending> batch_;
};

void BatchWriter::flush() {
  if (batch_.empty()) return;
  const std::string identity = embedder_.info().identity();
  const auto& spec = embedder_.info().input;
  const std::size_t per_input = static_cast<std::size_t>(spec.channels) * spec.width * spec.height;
  const int min_side = min_side_for(embedder_);
  std::vector<float> inputs;
  std::size_t rows = 0;
  for (auto& pending : batch_) {
    if (pending.entry.deleted) continue;
    const auto& product = pending.entry.product;
    auto old_images = store_->images_of(product.id, /*with_embeddings=*/true);
    for (std::size_t position = 0; position < product.images.size(); ++position) {
      const std::string& path = product.images[position];
      const catalog::ImageRecord* old = nullptr;
      for (const auto& o : old_images) {
        if (o.path == path) old = &o;
      }
      PendingImage img;
      img.record.product_id = product.id;
      img.record.position = static_cast<int>(position);
      img.record.path = path;
      img.record.model = identity;
      try {
        fs::path source = resolve_inside(root_, path);
        auto bytes = read_file(source, limits_.max_file_bytes);
        img.record.source = source.string();
        img.record.sha256 = sha256_hex(bytes.data(), bytes.size());
        if (old && old->sha256 == img.record.sha256 && old->model == identity) {
          img.record.embedding = old->embedding;
          ++report_.images_reused;
        } else {
          auto decoded = image::decode(bytes.data(), bytes.size(), limits_, min_side);
          inputs.resize((rows + 1) * per_input);
          image::preprocess(decoded, spec, inputs.data() + rows * per_input);
          img.input_row = static_cast<std::ptrdiff_t>(rows++);
        }
      } catch (const Error& e) {
        ++report_.images_skipped;
        skip(pending.line, path, e.what());
        if (!old || old->model != identity) continue;
        img.record = *old;  // keep the vector we have rather than lose the image
        img.record.position = static_cast<int>(position);
      }
      pending.images.push_back(std::move(img));
    }
  }
  const std::size_t dim = static_cast<std::size_t>(embedder_.info().dim);
  auto vectors = embed_all(embedder_, inputs, rows);
  report_.images_embedded += rows;

  catalog::Store::Transaction tx(*store_);
  for (auto& pending : batch_) {
    const auto& product = pending.entry.product;
    if (pending.entry.deleted) {
      if (store_->delete_product(product.id)) ++report_.products_deleted;
      continue;
    }
    bool existed = store_->get_product(product.id).has_value();
    bool changed = store_->upsert_product(product);
    auto old_images = store_->images_of(product.id, /*with_embeddings=*/false);
    bool same_images = old_images.size() == pending.images.size();
    for (std::size_t i = 0; same_images && i < old_images.size(); ++i) {
      const auto& n = pending.images[i].record;
      same_images = n.path == old_images[i].path && n.sha256 == old_images[i].sha256 &&
                    n.model == old_images[i].model && n.position == old_images[i].position;
    }
    if (!same_images) {
      for (const auto& o : old_images) store_->delete_image(o.id);
      for (auto& img : pending.images) {
        if (img.input_row >= 0) {
          const float* v = vectors.data() + static_cast<std::size_t>(img.input_row) * dim;
          img.record.embedding.assign(v, v + dim);
        }
        store_->add_image(img.record);
      }
      changed = true;
    }
    if (!existed) {
      ++report_.products_added;
    } else if (changed) {
      ++report_.products_updated;
    } else {
      ++report_.products_unchanged;
    }
  }
  tx.commit();
  batch_.clear();
  if (options_.on_progress) options_.on_progress(report_.lines);
}

}  // namespace

struct Engine::Snapshot {
  std::unique_ptr<index::VectorIndex> index;
  std::vector<std::int64_t> image_ids;      // sorted, parallel to image_products
  std::vector<std::string> image_products;  // product id of each image id

  const std::string* product_of(std::int64_t image_id) const {
    auto it = std::lower_bound(image_ids.begin(), image_ids.end(), image_id);
    if (it == image_ids.end() || *it != image_id) return nullptr;
    return &image_products[static_cast<std::size_t>(it - image_ids.begin())];
  }
};

fs::path shipped_model_path() { return fs::path(LOOKALIKE_SOURCE_DIR) / "models" / "fashion-cnn.lkm"; }

Engine::~Engine() = default;

std::unique_ptr<Engine> Engine::open(const fs::path& data_dir, const OpenOptions& options) {
  std::unique_ptr<Engine> engine(new Engine());
  engine->dir_ = data_dir;
  engine->limits_ = options.limits;
  engine->index_factory_ = options.index_factory;
  engine->on_message_ = options.on_message;
  create_private_directory(data_dir);
  engine->store_ = catalog::Store::open(data_dir / kStoreFile);
  auto& store = *engine->store_;

  auto stored_identity = store.get_meta(kMetaModel);
  if (stored_identity) {
    auto kind = store.get_meta(kMetaModelKind).value_or("file");
    engine->embedder_ = load_embedder(kind == kPixelsModel ? std::string(kPixelsModel)
                                                             : (data_dir / kModelFile).string());
    const std::string identity = engine->embedder_->info().identity();
    if (identity != *stored_identity) {
      throw Error(ErrorKind::kModelMismatch, "the model in " + data_dir.string() + " is " + identity +
                                                 " but the stored vectors were made by " + *stored_identity);
    }
    if (!options.model.empty()) {
      auto requested = load_embedder(options.model)->info().identity();
      if (requested != identity) {
        throw Error(ErrorKind::kModelMismatch,
                    "data folder " + data_dir.string() + " holds vectors of model " + identity + ", not of " +
                        requested + " (" + options.model +
                        "); use a new data folder for another model (re-indexing in place is not supported yet)");
      }
    }
  } else {
    std::string model = options.model.empty() ? shipped_model_path().string() : options.model;
    engine->embedder_ = load_embedder(model);
    if (model != kPixelsModel) {
      auto bytes = read_file(model, kMaxModelFileBytes);
      write_file_atomic(data_dir / kModelFile, bytes.data(), bytes.size());
    }
    catalog::Store::Transaction tx(store);
    store.set_meta(kMetaModel, engine->embedder_->info().identity());
    store.set_meta(kMetaModelKind, model == kPixelsModel ? kPixelsModel : "file");
    tx.commit();
  }
  engine->reader_ = catalog::Store::open(data_dir / kStoreFile);
  std::lock_guard<std::mutex> lock(engine->write_mutex_);
  engine->load_or_rebuild_index();
  return engine;
}

std::shared_ptr<const Engine::Snapshot> Engine::snapshot() const { return std::atomic_load(&snapshot_); }

void Engine::load_or_rebuild_index() {
  const std::string identity = embedder_->info().identity();
  std::string why;
  try {
    auto snap = std::make_shared<Snapshot>();
    snap->index = index::VectorIndex::load(dir_ / kIndexFile, identity);
    if (snap->index->stamp().store_version != store_->vectors_version()) {
      why = "the index is older than the catalog";
    } else {
      store_->for_each_embedding(identity, [&](std::int64_t id, const std::string& product, const std::vector<float>&) {
        snap->image_ids.push_back(id);
        snap->image_products.push_back(product);
      });
      if (snap->image_ids.size() == snap->index->size()) {
        std::atomic_store(&snapshot_, std::shared_ptr<const Snapshot>(std::move(snap)));
        return;
      }
      why = "the index does not hold every stored vector";
    }
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kNotFound && e.kind() != ErrorKind::kInvalidInput &&
        e.kind() != ErrorKind::kModelMismatch) {
      throw;
    }
    if (e.kind() != ErrorKind::kNotFound) {
      why = e.what();
    } else if (store_->counts().embedded > 0) {
      why = "the index file is missing";
    }
  }
  publish_index(why);
}

void Engine::publish_index(const std::string& why) {
  const std::string identity = embedder_->info().identity();
  const std::size_t dim = static_cast<std::size_t>(embedder_->info().dim);
  auto snap = std::make_shared<Snapshot>();
  std::vector<float> vectors;
  store_->for_each_embedding(identity, [&](std::int64_t id, const std::string& product, const std::vector<float>& v) {
    if (v.size() != dim) {
      throw Error(ErrorKind::kInternal, "stored vector of image " + std::to_string(id) + " has dimension " +
                                            std::to_string(v.size()) + ", expected " + std::to_string(dim));
    }
    snap->image_ids.push_back(id);
    snap->image_products.push_back(product);
    vectors.insert(vectors.end(), v.begin(), v.end());
  });
  const std::size_t n = snap->image_ids.size();
  std::string factory = index_factory_.empty() ? index::VectorIndex::default_factory(n) : index_factory_;
  index::IndexStamp stamp{identity, store_->vectors_version()};
  snap->index = index::VectorIndex::build(static_cast<int>(dim), factory, stamp, n, vectors.data(), snap->image_ids.data());
  snap->index->save(dir_ / kIndexFile);
  std::atomic_store(&snapshot_, std::shared_ptr<const Snapshot>(std::move(snap)));
  if (!why.empty() && on_message_) {
    on_message_("rebuilt the vector index from the catalog store (" + std::to_string(n) + " vectors): " + why);
  }
}

IngestReport Engine::ingest(const fs::path& catalog_file, const IngestOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(write_mutex_);
  IngestReport report;
  BatchWriter writer(*store_, *embedder_, limits_, fs::absolute(catalog_file).parent_path(), options, report);
  catalog::read_catalog(
      catalog_file, options.parse_limits,
      [&](std::size_t line, catalog::CatalogEntry&& entry) { writer.add(line, std::move(entry)); },
      [&](std::size_t line, const std::string& message) { writer.reject(line, message); });
  writer.flush();
  if (snapshot()->index->stamp().store_version != store_->vectors_version()) publish_index("");
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

IngestReport Engine::apply(const std::vector<catalog::CatalogEntry>& entries, const fs::path& image_root,
                           const IngestOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(write_mutex_);
  IngestReport report;
  BatchWriter writer(*store_, *embedder_, limits_, fs::absolute(image_root), options, report);
  for (std::size_t i = 0; i < entries.size(); ++i) writer.add(i + 1, entries[i]);
  writer.flush();
  if (snapshot()->index->stamp().store_version != store_->vectors_version()) publish_index("");
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

std::size_t Engine::delete_products(const std::vector<std::string>& ids) {
  std::lock_guard<std::mutex> lock(write_mutex_);
  std::size_t deleted = 0;
  catalog::Store::Transaction tx(*store_);
  for (const auto& id : ids) deleted += store_->delete_product(id) ? 1 : 0;
  tx.commit();
  if (snapshot()->index->stamp().store_version != store_->vectors_version()) publish_index("");
  return deleted;
}

std::vector<QueryResult> Engine::search_vectors(const Snapshot& snap, const float* vectors, std::size_t n, int k,
                                                const std::string& exclude) const {
  if (k < 1 || k > kMaxK) {
    throw Error(ErrorKind::kInvalidInput, "k must be between 1 and " + std::to_string(kMaxK));
  }
  const std::size_t dim = static_cast<std::size_t>(embedder_->info().dim);
  const std::size_t want = static_cast<std::size_t>(k);
  // Several images of one product count once: ask for more images than k, and
  // ask again with a deeper list when they were not enough distinct products.
  auto group = [&](const index::Hit* hits, std::size_t count, QueryResult& result) {
    std::unordered_set<std::string> seen;
    result.hits.clear();
    for (std::size_t j = 0; j < count && result.hits.size() < want; ++j) {
      if (hits[j].id < 0) break;
      const std::string* product = snap.product_of(hits[j].id);
      if (!product || *product == exclude || !seen.insert(*product).second) continue;
      result.hits.push_back(ProductHit{*product, hits[j].score, hits[j].id, {}});
    }
  };
  const std::size_t total = snap.index->size();
  const std::size_t depth = std::min<std::size_t>(total, want * 2 + 8);
  std::vector<QueryResult> results(n);
  if (depth == 0 || n == 0) return results;
  auto hits = snap.index->search(n, vectors, static_cast<int>(depth));
  for (std::size_t q = 0; q < n; ++q) {
    group(hits.data() + q * depth, depth, results[q]);
    std::size_t deeper = depth;
    while (results[q].hits.size() < want && deeper < total) {
      deeper = std::min(total, deeper * 4);
      auto more = snap.index->search(1, vectors + q * dim, static_cast<int>(deeper));
      group(more.data(), deeper, results[q]);
    }
  }
  return results;
}

void Engine::fill_details(std::vector<QueryResult>& results) const {
  std::lock_guard<std::mutex> lock(reader_mutex_);
  for (auto& result : results) {
    for (auto& hit : result.hits) {
      if (auto p = reader_->get_product(hit.product_id)) hit.product = std::move(*p);
    }
  }
}

std::vector<QueryResult> Engine::search(const std::vector<image::Image>& queries, int k, bool with_details) const {
  const auto& spec = embedder_->info().input;
  const std::size_t per_input = static_cast<std::size_t>(spec.channels) * spec.width * spec.height;
  std::vector<float> inputs(queries.size() * per_input);
  for (std::size_t i = 0; i < queries.size(); ++i) image::preprocess(queries[i], spec, inputs.data() + i * per_input);
  auto vectors = embed_all(*embedder_, inputs, queries.size());
  auto results = search_vectors(*snapshot(), vectors.data(), queries.size(), k, "");
  if (with_details) fill_details(results);
  return results;
}

std::vector<QueryResult> Engine::search_files(const std::vector<fs::path>& files, int k, bool with_details) const {
  std::vector<QueryResult> results(files.size());
  std::vector<image::Image> decoded;
  std::vector<std::size_t> positions;
  const int min_side = min_side_for(*embedder_);
  for (std::size_t i = 0; i < files.size(); ++i) {
    try {
      decoded.push_back(image::load_file(files[i], limits_, min_side));
      positions.push_back(i);
    } catch (const Error& e) {
      results[i].error = e.what();
    }
  }
  auto found = search(decoded, k, with_details);
  for (std::size_t j = 0; j < positions.size(); ++j) results[positions[j]] = std::move(found[j]);
  return results;
}

QueryResult Engine::similar_products(const std::string& product_id, int k, bool with_details) const {
  std::vector<catalog::ImageRecord> images;
  {
    std::lock_guard<std::mutex> lock(reader_mutex_);
    if (!reader_->get_product(product_id)) throw Error(ErrorKind::kNotFound, "no product with id " + product_id);
    images = reader_->images_of(product_id, /*with_embeddings=*/true);
  }
  const std::string identity = embedder_->info().identity();
  const std::size_t dim = static_cast<std::size_t>(embedder_->info().dim);
  std::vector<float> vectors;
  for (const auto& img : images) {
    if (img.model == identity && img.embedding.size() == dim) {
      vectors.insert(vectors.end(), img.embedding.begin(), img.embedding.end());
    }
  }
  QueryResult merged;
  const std::size_t n = vectors.size() / dim;
  if (n == 0) return merged;  // a product without images has no look to match
  auto per_image = search_vectors(*snapshot(), vectors.data(), n, k, product_id);
  // A product that looks like any of this product's photos qualifies, by its best score.
  std::unordered_map<std::string, ProductHit> best;
  for (auto& result : per_image) {
    for (auto& hit : result.hits) {
      auto [it, inserted] = best.emplace(hit.product_id, hit);
      if (!inserted && hit.score > it->second.score) it->second = hit;
    }
  }
  for (auto& [id, hit] : best) merged.hits.push_back(std::move(hit));
  std::sort(merged.hits.begin(), merged.hits.end(), [](const ProductHit& a, const ProductHit& b) {
    return a.score != b.score ? a.score > b.score : a.product_id < b.product_id;
  });
  if (merged.hits.size() > static_cast<std::size_t>(k)) merged.hits.resize(static_cast<std::size_t>(k));
  std::vector<QueryResult> results{std::move(merged)};
  if (with_details) fill_details(results);
  return std::move(results.front());
}

std::optional<fs::path> Engine::image_source(const std::string& product_id, int position) const {
  std::lock_guard<std::mutex> lock(reader_mutex_);
  for (const auto& img : reader_->images_of(product_id, /*with_embeddings=*/false)) {
    if (img.position == position) return fs::path(img.source);
  }
  return std::nullopt;
}

std::optional<catalog::Product> Engine::product(const std::string& id) const {
  std::lock_guard<std::mutex> lock(reader_mutex_);
  return reader_->get_product(id);
}

std::vector<std::string> Engine::product_ids() const {
  std::lock_guard<std::mutex> lock(reader_mutex_);
  return reader_->product_ids();
}

int Engine::query_min_side() const { return min_side_for(*embedder_); }

EngineInfo Engine::info() const {
  auto snap = snapshot();
  std::lock_guard<std::mutex> lock(reader_mutex_);
  auto counts = reader_->counts();
  EngineInfo info;
  info.products = counts.products;
  info.images = counts.images;
  info.embedded = counts.embedded;
  info.model = embedder_->info().identity();
  info.index_factory = snap->index->factory();
  info.index_vectors = snap->index->size();
  std::error_code ec;
  info.index_bytes = fs::file_size(dir_ / kIndexFile, ec);
  return info;
}

}  // namespace lookalike::search

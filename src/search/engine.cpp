#include "search/engine.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <limits>
#include <numeric>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "catalog/store.h"
#include "common/error.h"
#include "common/files.h"
#include "embed/embedder.h"
#include "image/colour.h"
#include "image/views.h"
#include "index/vector_index.h"
#include "search/behaviour_board.h"
#include "search/variants.h"

namespace lookalike::search {
namespace fs = std::filesystem;

namespace {

constexpr const char* kStoreFile = "catalog.db";
constexpr const char* kModelFile = "model.lkm";
constexpr const char* kIndexFile = "index.lkx";
// A model switch stages the new model file here, commits, then renames it to
// kModelFile after moving the old one to kPreviousModelFile.
constexpr const char* kNextModelFile = "model.lkm.next";
constexpr const char* kPreviousModelFile = "previous-model.lkm";
constexpr const char* kMetaModel = "model";          // identity of the model that made the vectors
constexpr const char* kMetaModelKind = "model_kind";  // "file" or kPixelsModel
constexpr const char* kMetaPreviousModel = "previous_model";  // identity restorable by rollback
constexpr const char* kMetaPreviousModelKind = "previous_model_kind";
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

// Renames within the data folder and makes the rename durable.
void move_file(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  if (ec)
    throw Error(ErrorKind::kIO,
                "cannot rename " + from.string() + " to " + to.string() + ": " + ec.message());
  int fd = ::open(to.parent_path().c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0 || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    throw Error(ErrorKind::kIO, "cannot fsync " + to.parent_path().string());
  }
  ::close(fd);
}

// A model about to serve must turn images into finite unit vectors: a probe
// (a dark frame with a bright square, and its negative) catches weights that
// loaded but compute garbage (NaN or infinite values, a zero vector).
void probe(const embed::Embedder& embedder, const std::string& name) {
  const auto& info = embedder.info();
  if (info.dim <= 0 || info.input.width <= 0 || info.input.height <= 0) {
    throw Error(ErrorKind::kInvalidInput, "model " + name + " declares an empty input or output shape");
  }
  std::vector<image::Image> images(2);
  for (int which = 0; which < 2; ++which) {
    auto& img = images[static_cast<std::size_t>(which)];
    img.width = img.height = 32;
    img.channels = 3;
    img.pixels.assign(32 * 32 * 3, which ? 230 : 20);
    for (int y = 8; y < 24; ++y) {
      for (int x = 8; x < 24; ++x) {
        for (int c = 0; c < 3; ++c)
          img.pixels[static_cast<std::size_t>((y * 32 + x) * 3 + c)] = which ? 20 : 230;
      }
    }
  }
  std::vector<float> out(2 * static_cast<std::size_t>(info.dim));
  embedder.embed(images, out.data());
  for (int row = 0; row < 2; ++row) {
    double norm = 0;
    for (int j = 0; j < info.dim; ++j) {
      float v = out[static_cast<std::size_t>(row * info.dim + j)];
      if (!std::isfinite(v)) {
        throw Error(ErrorKind::kInvalidInput, "model " + name + " gives non-finite values on a probe image");
      }
      norm += double(v) * v;
    }
    if (std::abs(std::sqrt(norm) - 1.0) > 1e-3) {
      throw Error(ErrorKind::kInvalidInput, "model " + name + " gives a vector of length " +
                                                std::to_string(std::sqrt(norm)) +
                                                " on a probe image; vectors must be L2-normalised");
    }
  }
}

// Embeds preprocessed inputs in bounded batches, so memory does not grow with n;
// query photos for `match` (Embedder::embed_queries), catalog photos without one.
std::vector<float> embed_all(const embed::Embedder& embedder, const std::vector<float>& inputs, std::size_t n,
                             std::optional<embed::Match> match = std::nullopt) {
  const auto& spec = embedder.info().input;
  const std::size_t per_input = static_cast<std::size_t>(spec.channels) * spec.width * spec.height;
  const std::size_t dim = static_cast<std::size_t>(embedder.info().dim);
  std::vector<float> out(n * dim);
  for (std::size_t begin = 0; begin < n; begin += kEmbedBatch) {
    std::size_t count = std::min(kEmbedBatch, n - begin);
    const float* batch = inputs.data() + begin * per_input;
    if (match) {
      embedder.embed_queries(*match, batch, count, out.data() + begin * dim);
    } else {
      embedder.embed_preprocessed(batch, count, out.data() + begin * dim);
    }
  }
  return out;
}

// The input side a model needs, for reduced-size JPEG decoding.
int min_side_for(const embed::Embedder& embedder) {
  return std::max(embedder.info().input.width, embedder.info().input.height);
}

// SQLite takes a missing or empty file for a new database, so a store that was removed or
// truncated to nothing would silently become an empty catalog. The files made after the
// store (the model copy, the index) tell that one existed.
void refuse_lost_store(const fs::path& data_dir) {
  std::error_code ec;
  auto size_of = [&](const fs::path& p) { return fs::is_regular_file(p, ec) ? fs::file_size(p, ec) : 0; };
  const fs::path store = data_dir / kStoreFile;
  if (size_of(store) > 0 || size_of(fs::path(store.string() + "-wal")) > 0) return;
  for (const char* made_later : {kModelFile, kIndexFile}) {
    if (fs::exists(data_dir / made_later, ec)) {
      throw Error(ErrorKind::kIO, store.string() + " is " + (fs::exists(store, ec) ? "empty" : "missing") +
                                      " but " + (data_dir / made_later).string() +
                                      " is there: the catalog store was lost; restore the data folder from a "
                                      "snapshot (lookalike restore), or remove the folder to start afresh");
    }
  }
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

  // Ids of the products added, changed or deleted by the committed batches.
  const std::vector<std::string>& touched() const { return touched_; }

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
  std::vector<std::string> touched_;
};

void BatchWriter::flush() {
  if (batch_.empty()) return;
  const std::string identity = embedder_.info().identity();
  const auto& spec = embedder_.info().input;
  const std::size_t per_input = static_cast<std::size_t>(spec.channels) * spec.width * spec.height;
  const int min_side = min_side_for(embedder_);

  // One task per image of the batch. The store is read here, on this thread (one
  // SQLite connection); reading, hashing, decoding, the colour descriptor and
  // preprocessing then run on all cores, since they are most of an import's work
  // outside the model.
  struct Task {
    Pending* pending;
    std::size_t position;
    const catalog::ImageRecord* old;  // the stored image of that path, if any
    PendingImage img;
    std::vector<float> input;  // preprocessed, when it needs a vector
    bool reused = false;       // its stored vector is kept
    std::string error;         // why it is skipped
    std::exception_ptr failure;
  };
  std::vector<std::vector<catalog::ImageRecord>> stored(batch_.size());
  std::vector<Task> tasks;
  for (std::size_t b = 0; b < batch_.size(); ++b) {
    auto& pending = batch_[b];
    if (pending.entry.deleted) continue;
    stored[b] = store_->images_of(pending.entry.product.id, /*with_embeddings=*/true);
    for (std::size_t position = 0; position < pending.entry.product.images.size(); ++position) {
      const catalog::ImageRecord* old = nullptr;
      for (const auto& o : stored[b]) {
        if (o.path == pending.entry.product.images[position]) old = &o;
      }
      tasks.push_back(Task{&pending, position, old, {}, {}, false, {}, nullptr});
    }
  }
  image::parallel_for(tasks.size(), [&](std::size_t t) {
    Task& task = tasks[t];
    const auto& product = task.pending->entry.product;
    const std::string& path = product.images[task.position];
    auto& record = task.img.record;
    record.product_id = product.id;
    record.position = static_cast<int>(task.position);
    record.path = path;
    record.model = identity;
    try {
      fs::path source = resolve_inside(root_, path);
      auto bytes = read_file(source, limits_.max_file_bytes);
      record.source = source.string();
      record.sha256 = sha256_hex(bytes.data(), bytes.size());
      const bool same_bytes = task.old && task.old->sha256 == record.sha256;
      if (same_bytes && task.old->model == identity) {
        record.embedding = task.old->embedding;
        task.reused = true;
      }
      if (same_bytes && task.old->colour.size() == image::kColourBins) record.colour = task.old->colour;
      // Decoded when it needs a vector or a colour (one stored before colours were).
      if (record.embedding.empty() || record.colour.empty()) {
        auto decoded = image::decode(bytes.data(), bytes.size(), limits_, min_side);
        if (record.colour.empty()) {
          const auto colour = image::colour_descriptor(decoded);
          record.colour.assign(colour.begin(), colour.end());
        }
        if (record.embedding.empty()) {
          task.input.resize(per_input);
          image::preprocess(decoded, spec, task.input.data());
        }
      }
    } catch (const Error& e) {
      task.error = e.what();
    } catch (...) {
      task.failure = std::current_exception();  // not the image's fault: the import fails
    }
  });
  for (const auto& task : tasks) {
    if (task.failure) std::rethrow_exception(task.failure);
  }

  // In catalog order again: skips are reported and rows numbered as they come.
  std::vector<float> inputs;
  std::size_t rows = 0;
  for (auto& task : tasks) {
    const std::string& path = task.pending->entry.product.images[task.position];
    if (!task.error.empty()) {
      ++report_.images_skipped;
      skip(task.pending->line, path, task.error);
      if (!task.old || task.old->model != identity) continue;
      task.img.record = *task.old;  // keep the vector we have rather than lose the image
      task.img.record.position = static_cast<int>(task.position);
    } else {
      if (task.reused) ++report_.images_reused;
      if (!task.input.empty()) {
        inputs.insert(inputs.end(), task.input.begin(), task.input.end());
        task.img.input_row = static_cast<std::ptrdiff_t>(rows++);
      }
    }
    task.pending->images.push_back(std::move(task.img));
  }
  const std::size_t dim = static_cast<std::size_t>(embedder_.info().dim);
  auto vectors = embed_all(embedder_, inputs, rows);
  report_.images_embedded += rows;

  std::vector<std::string> touched;
  catalog::Store::Transaction tx(*store_);
  for (auto& pending : batch_) {
    const auto& product = pending.entry.product;
    if (pending.entry.deleted) {
      if (store_->delete_product(product.id)) {
        ++report_.products_deleted;
        touched.push_back(product.id);
      }
      continue;
    }
    bool existed = store_->get_product(product.id).has_value();
    bool changed = store_->upsert_product(product);
    auto old_images = store_->images_of(product.id, /*with_embeddings=*/false);
    bool same_images = old_images.size() == pending.images.size();
    for (std::size_t i = 0; same_images && i < old_images.size(); ++i) {
      const auto& n = pending.images[i].record;
      same_images = n.path == old_images[i].path && n.sha256 == old_images[i].sha256 &&
                    n.model == old_images[i].model && n.position == old_images[i].position &&
                    n.colour.empty() == old_images[i].colour.empty();
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
    if (!existed || changed) touched.push_back(product.id);
  }
  tx.commit();
  touched_.insert(touched_.end(), touched.begin(), touched.end());
  batch_.clear();
  if (options_.on_progress) options_.on_progress(report_.lines);
}

}  // namespace

// Index rows and metadata table rows, both ways, so that a filter evaluated on
// the table can be applied to the vectors inside the search.
struct RowMap {
  static constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();
  std::vector<std::uint32_t> product_of_row;  // index row -> table row; kNone for an unknown product
  std::vector<std::uint32_t> begin;           // table row t has the index rows rows[begin[t] .. begin[t + 1])
  std::vector<std::uint32_t> rows;

  std::pair<const std::uint32_t*, const std::uint32_t*> rows_of(std::uint32_t table_row) const {
    if (static_cast<std::size_t>(table_row) + 1 >= begin.size()) return {nullptr, nullptr};  // added since
    return {rows.data() + begin[table_row], rows.data() + begin[table_row + 1]};
  }
};

// What only changes when vectors change: shared by the snapshots of
// metadata-only writes, which replace just the table.
struct Engine::SnapshotVectors {
  std::shared_ptr<const embed::Embedder> embedder;  // the model that made every vector in index
  std::unique_ptr<index::VectorIndex> index;
  std::vector<std::int64_t> image_ids;      // sorted, parallel to image_products
  std::vector<std::string> image_products;  // product id of each image id
  // Colour descriptor of each image id, parallel to image_ids; all 0 when unknown.
  std::vector<image::ColourDescriptor> image_colours;
  RowMap row_map;
};

struct Engine::Snapshot {
  std::shared_ptr<const embed::Embedder> embedder;  // that of vectors, kept here for short access
  std::shared_ptr<const SnapshotVectors> vectors;
  std::shared_ptr<const filter::Table> table;  // every product's metadata

  const index::VectorIndex& index() const { return *vectors->index; }

  const std::string* product_of(std::int64_t image_id) const {
    const auto& ids = vectors->image_ids;
    auto it = std::lower_bound(ids.begin(), ids.end(), image_id);
    if (it == ids.end() || *it != image_id) return nullptr;
    return &vectors->image_products[static_cast<std::size_t>(it - ids.begin())];
  }

  // nullptr when the image has no known colour.
  const image::ColourDescriptor* colour_of(std::int64_t image_id) const {
    const auto& ids = vectors->image_ids;
    auto it = std::lower_bound(ids.begin(), ids.end(), image_id);
    if (it == ids.end() || *it != image_id) return nullptr;
    const auto& colour = vectors->image_colours[static_cast<std::size_t>(it - ids.begin())];
    return image::has_colour(colour) ? &colour : nullptr;
  }
};

namespace {

// image_ids sorted, image_products parallel to it.
RowMap build_row_map(const index::VectorIndex& index, const std::vector<std::int64_t>& image_ids,
                     const std::vector<std::string>& image_products, const filter::Table& table) {
  RowMap map;
  map.product_of_row.assign(index.size(), RowMap::kNone);
  std::vector<std::uint32_t> counts(table.rows() + 1, 0);
  for (std::size_t row = 0; row < index.size(); ++row) {
    auto it = std::lower_bound(image_ids.begin(), image_ids.end(), index.id_of_row(row));
    if (it == image_ids.end() || *it != index.id_of_row(row)) continue;
    auto t = table.row_of(image_products[static_cast<std::size_t>(it - image_ids.begin())]);
    if (!t) continue;
    map.product_of_row[row] = *t;
    ++counts[*t + 1];
  }
  map.begin.resize(counts.size());
  std::partial_sum(counts.begin(), counts.end(), map.begin.begin());
  map.rows.resize(map.begin.back());
  std::vector<std::uint32_t> next(map.begin.begin(), map.begin.end() - 1);
  for (std::size_t row = 0; row < index.size(); ++row) {
    const std::uint32_t t = map.product_of_row[row];
    if (t != RowMap::kNone) map.rows[next[t]++] = static_cast<std::uint32_t>(row);
  }
  return map;
}

// Lets the index visit only the vectors of products the filter passed.
class MatchingRows final : public index::VectorIndex::RowFilter {
 public:
  MatchingRows(const RowMap& map, const std::vector<std::uint8_t>& mask) : map_(map), mask_(mask) {}
  bool allows(std::size_t row) const override {
    const std::uint32_t t = map_.product_of_row[row];
    return t != RowMap::kNone && t < mask_.size() && mask_[t];
  }

 private:
  const RowMap& map_;
  const std::vector<std::uint8_t>& mask_;
};

// How hard the index looks for a filter passing this fraction of its vectors:
// a graph walk meets few allowed vectors when the fraction is small, so it
// must keep more candidates to find k of them (measured in bench/).
int breadth_for(double selectivity) {
  constexpr double kBase = 64;
  constexpr int kMaxBreadth = 1024;
  return static_cast<int>(std::min<double>(kMaxBreadth, std::max(128.0, std::ceil(kBase / selectivity))));
}

}  // namespace

Sort parse_sort(const std::string& name) {
  if (name == "best" || name == "best_match") return Sort::kBestMatch;
  if (name == "price_asc") return Sort::kPriceAsc;
  if (name == "price_desc") return Sort::kPriceDesc;
  if (name == "rating") return Sort::kRating;
  throw Error(ErrorKind::kInvalidInput,
              "unknown sort \"" + name.substr(0, 64) + "\"; use best, price_asc, price_desc or rating");
}

const char* to_string(Sort sort) {
  switch (sort) {
    case Sort::kBestMatch:
      return "best";
    case Sort::kPriceAsc:
      return "price_asc";
    case Sort::kPriceDesc:
      return "price_desc";
    case Sort::kRating:
      return "rating";
  }
  return "best";
}

fs::path shipped_model_path() { return fs::path(LOOKALIKE_SOURCE_DIR) / "models" / "fashion-fused.lkm"; }

Engine::~Engine() = default;

std::unique_ptr<Engine> Engine::open(const fs::path& data_dir, const OpenOptions& options) {
  std::unique_ptr<Engine> engine(new Engine());
  engine->dir_ = data_dir;
  engine->limits_ = options.limits;
  engine->index_factory_ = options.index_factory;
  engine->exact_scan_max_vectors_ = options.exact_scan_max_vectors;
  engine->on_message_ = options.on_message;
  create_private_directory(data_dir);
  if (std::size_t removed = remove_stale_temp_files(data_dir); removed > 0 && options.on_message) {
    options.on_message("removed " + std::to_string(removed) + " temp file(s) left in " + data_dir.string() +
                       " by a process that was killed");
  }
  refuse_lost_store(data_dir);
  engine->store_ = catalog::Store::open(data_dir / kStoreFile);
  auto& store = *engine->store_;
  store.check_integrity(data_dir / kStoreFile);

  std::shared_ptr<const embed::Embedder> embedder;
  auto stored_identity = store.get_meta(kMetaModel);
  if (stored_identity) {
    engine->settle_model_files(/*after_crash=*/true);
    auto kind = store.get_meta(kMetaModelKind).value_or("file");
    embedder =
        load_embedder(kind == kPixelsModel ? std::string(kPixelsModel) : (data_dir / kModelFile).string());
    const std::string identity = embedder->info().identity();
    if (identity != *stored_identity) {
      throw Error(ErrorKind::kModelMismatch, "the model in " + data_dir.string() + " is " + identity +
                                                 " but the stored vectors were made by " + *stored_identity);
    }
    if (!options.model.empty()) {
      auto requested = load_embedder(options.model)->info().identity();
      if (requested != identity) {
        throw Error(ErrorKind::kModelMismatch,
                    "data folder " + data_dir.string() + " holds vectors of model " + identity + ", not of " +
                        requested + " (" + options.model + "); switch it with `lookalike reindex --data " +
                        data_dir.string() + " --model " + options.model + "`");
      }
    }
  } else {
    std::string model = options.model.empty() ? shipped_model_path().string() : options.model;
    embedder = load_embedder(model);
    probe(*embedder, model);
    if (model != kPixelsModel) {
      auto bytes = read_file(model, kMaxModelFileBytes);
      write_file_atomic(data_dir / kModelFile, bytes.data(), bytes.size());
    }
    catalog::Store::Transaction tx(store);
    store.set_meta(kMetaModel, embedder->info().identity());
    store.set_meta(kMetaModelKind, model == kPixelsModel ? kPixelsModel : "file");
    tx.commit();
  }
  engine->reader_ = catalog::Store::open(data_dir / kStoreFile);
  engine->signals_ = catalog::Store::open(data_dir / kStoreFile);
  engine->behaviour_ = std::make_unique<BehaviourBoard>();
  std::lock_guard<std::mutex> lock(engine->write_mutex_);
  engine->fill_missing_colours();
  engine->load_or_rebuild_index(std::move(embedder));
  return engine;
}

void Engine::fill_missing_colours() {
  const auto missing = store_->images_without_colour();
  if (missing.empty()) return;
  constexpr std::size_t kBatch = 512;
  std::size_t filled = 0, failed = 0;
  std::string first_failure;
  for (std::size_t begin = 0; begin < missing.size(); begin += kBatch) {
    std::vector<std::pair<std::int64_t, image::ColourDescriptor>> done;
    for (std::size_t i = begin; i < std::min(missing.size(), begin + kBatch); ++i) {
      const auto& img = missing[i];
      try {
        auto bytes = read_file(img.source, limits_.max_file_bytes);
        // A file changed since import would give the colour of another picture.
        if (sha256_hex(bytes.data(), bytes.size()) != img.sha256) {
          throw Error(ErrorKind::kIO, img.source + " changed since it was imported");
        }
        done.emplace_back(img.id, image::colour_descriptor(image::decode(bytes.data(), bytes.size(), limits_,
                                                                         image::kColourMaxSide)));
      } catch (const Error& e) {
        if (failed++ == 0)
          first_failure = "image " + img.path + " of product " + img.product_id + ": " + e.what();
      }
    }
    catalog::Store::Transaction tx(*store_);
    for (const auto& [id, colour] : done)
      store_->set_image_colour(id, std::vector<float>(colour.begin(), colour.end()));
    tx.commit();
    filled += done.size();
  }
  if (!on_message_) return;
  if (filled > 0) {
    on_message_("computed the colour of " + std::to_string(filled) +
                " image(s) stored before colours were kept, from their source files");
  }
  if (failed > 0) {
    on_message_(std::to_string(failed) +
                " image(s) have no colour, so colour ranking treats them as unknown (0) " +
                "until the catalog is imported again; the first: " + first_failure);
  }
}

std::shared_ptr<const Engine::Snapshot> Engine::snapshot() const { return std::atomic_load(&snapshot_); }

std::string Engine::active_model() const { return snapshot()->embedder->info().identity(); }

void Engine::load_or_rebuild_index(std::shared_ptr<const embed::Embedder> embedder) {
  const std::string identity = embedder->info().identity();
  std::string why;
  try {
    auto vectors = std::make_shared<SnapshotVectors>();
    vectors->embedder = embedder;
    vectors->index = index::VectorIndex::load(dir_ / kIndexFile, identity);
    if (vectors->index->stamp().store_version != store_->vectors_version()) {
      why = "the index is older than the catalog";
    } else {
      store_->for_each_embedding(identity,
                                 [&](std::int64_t id, const std::string& product, const std::vector<float>&) {
                                   vectors->image_ids.push_back(id);
                                   vectors->image_products.push_back(product);
                                 });
      if (vectors->image_ids.size() == vectors->index->size()) {
        publish(std::move(vectors));
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
  publish_index(std::move(embedder), why);
}

void Engine::publish(std::shared_ptr<SnapshotVectors> vectors) {
  // Colours go with the vectors: an image's colour changes only with its bytes (a new
  // image row), or when a missing one is filled in at open, before the first publish.
  vectors->image_colours.assign(vectors->image_ids.size(), image::ColourDescriptor{});
  store_->for_each_colour([&](std::int64_t id, const std::vector<float>& colour) {
    const auto& ids = vectors->image_ids;
    auto it = std::lower_bound(ids.begin(), ids.end(), id);
    // A descriptor of another length (a damaged row) stays unknown rather than misread.
    if (it == ids.end() || *it != id || colour.size() != image::kColourBins) return;
    std::copy(colour.begin(), colour.end(),
              vectors->image_colours[static_cast<std::size_t>(it - ids.begin())].begin());
  });
  auto table = std::make_shared<filter::Table>();
  store_->for_each_product([&](const catalog::Product& product) { table->upsert(product); });
  // for_each_product leaves out the images: count the stored ones (swatches show the first).
  for (const auto& product : vectors->image_products) {
    if (auto row = table->row_of(product)) table->set_images(*row, table->images(*row) + 1);
  }
  vectors->row_map = build_row_map(*vectors->index, vectors->image_ids, vectors->image_products, *table);
  {
    // No event batch commits while the board is read from the store and replaced.
    std::lock_guard<std::mutex> lock(signals_mutex_);
    behaviour_->load(*store_);
  }
  auto snap = std::make_shared<Snapshot>();
  snap->embedder = vectors->embedder;
  snap->vectors = std::move(vectors);
  snap->table = std::move(table);
  std::atomic_store(&snapshot_, std::shared_ptr<const Snapshot>(std::move(snap)));
}

void Engine::publish_index(std::shared_ptr<const embed::Embedder> embedder, const std::string& why) {
  const std::string identity = embedder->info().identity();
  const std::size_t dim = static_cast<std::size_t>(embedder->info().dim);
  auto snap = std::make_shared<SnapshotVectors>();
  snap->embedder = std::move(embedder);
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
  const index::VectorIndex& built = *snap->index;
  // Searchable at once: the changes are already committed to the store, so a failure to
  // save the derived file (disk full) must not fail the write that led here. A file that
  // is left older than the store is rebuilt at the next open.
  publish(std::move(snap));
  try {
    built.save(dir_ / kIndexFile);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kIO) throw;
    if (on_message_) {
      on_message_(std::string("could not save the vector index (the catalog store is intact; the index will be "
                              "rebuilt from it at the next start): ") +
                  e.what());
    }
  }
  if (!why.empty() && on_message_) {
    on_message_("rebuilt the vector index from the catalog store (" + std::to_string(n) +
                " vectors): " + why);
  }
}

void Engine::publish_metadata(const std::vector<std::string>& changed) {
  auto current = snapshot();
  // Copy-on-write: searches keep reading the table they started with.
  auto table = std::make_shared<filter::Table>(*current->table);
  for (const auto& id : changed) {
    if (auto product = store_->get_product(id)) {
      table->upsert(*product);
    } else {
      table->remove(id);
    }
  }
  {
    std::lock_guard<std::mutex> lock(signals_mutex_);
    behaviour_->reload(*store_, changed);
  }
  auto snap = std::make_shared<Snapshot>();
  snap->embedder = current->embedder;
  snap->vectors = current->vectors;
  snap->table = std::move(table);
  std::atomic_store(&snapshot_, std::shared_ptr<const Snapshot>(std::move(snap)));
}

void Engine::publish_after(const std::function<void()>& write, const std::vector<std::string>& changed) {
  auto publish_if_changed = [&] {
    const auto snap = snapshot();
    if (snap->index().stamp().store_version != store_->vectors_version()) {
      publish_index(snap->embedder, "");
    } else if (!changed.empty()) {
      publish_metadata(changed);
    }
  };
  try {
    write();
  } catch (...) {
    // Batches committed before the failure (or the interruption) are in the store: make
    // them searchable too, so that the index and the store agree whatever happened.
    try {
      publish_if_changed();
    } catch (const std::exception&) {
      // The write's own error is the one to report; the next write or open retries this.
    }
    throw;
  }
  publish_if_changed();
}

IngestReport Engine::ingest(const fs::path& catalog_file, const IngestOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(write_mutex_);
  IngestReport report;
  const auto snap = snapshot();
  BatchWriter writer(*store_, *snap->embedder, limits_, fs::absolute(catalog_file).parent_path(), options, report);
  publish_after(
      [&] {
        catalog::read_catalog(
            catalog_file, options.parse_limits,
            [&](std::size_t line, catalog::CatalogEntry&& entry) { writer.add(line, std::move(entry)); },
            [&](std::size_t line, const std::string& message) { writer.reject(line, message); });
        writer.flush();
      },
      writer.touched());
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

IngestReport Engine::apply(const std::vector<catalog::CatalogEntry>& entries, const fs::path& image_root,
                           const IngestOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(write_mutex_);
  IngestReport report;
  const auto snap = snapshot();
  BatchWriter writer(*store_, *snap->embedder, limits_, fs::absolute(image_root), options, report);
  publish_after(
      [&] {
        for (std::size_t i = 0; i < entries.size(); ++i) writer.add(i + 1, entries[i]);
        writer.flush();
      },
      writer.touched());
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

std::size_t Engine::delete_products(const std::vector<std::string>& ids) {
  std::lock_guard<std::mutex> lock(write_mutex_);
  std::size_t deleted = 0;
  std::vector<std::string> removed;
  publish_after(
      [&] {
        catalog::Store::Transaction tx(*store_);
        for (const auto& id : ids) {
          if (store_->delete_product(id)) {
            ++deleted;
            removed.push_back(id);
          }
        }
        tx.commit();
      },
      removed);
  return deleted;
}

namespace {

void check_request(int k, const SearchOptions& options) {
  if (k < 1 || k > Engine::kMaxK) {
    throw Error(ErrorKind::kInvalidInput, "k must be between 1 and " + std::to_string(Engine::kMaxK));
  }
  if (options.depth < 0 || options.depth > Engine::kMaxK) {
    throw Error(ErrorKind::kInvalidInput, "depth must be between 0 and " + std::to_string(Engine::kMaxK));
  }
}

// Products a query must gather before sorting and counting facets.
std::size_t wanted(int k, const SearchOptions& options) {
  if (options.sort == Sort::kBestMatch && !options.facets) return static_cast<std::size_t>(k);
  return static_cast<std::size_t>(std::max(k, options.depth > 0 ? options.depth : Engine::kDefaultDepth));
}

// Facets over the candidates, then the order asked for, then the first k (families when grouping).
void finish(const filter::Table& table, int k, const SearchOptions& options, QueryResult& result) {
  if (options.facets) {
    std::vector<std::uint32_t> rows;
    for (const auto& hit : result.hits) {
      if (auto row = table.row_of(hit.product_id)) rows.push_back(*row);
    }
    result.facets = filter::count_facets(table, rows, options.facet_options);
  }
  if (options.sort != Sort::kBestMatch) {
    auto key = [&](const ProductHit& hit) {
      auto row = table.row_of(hit.product_id);
      if (!row) return 0.0;
      switch (options.sort) {
        case Sort::kPriceAsc:
          return -table.price(*row);
        case Sort::kPriceDesc:
          return table.price(*row);
        case Sort::kRating:
          return table.rating(*row);
        case Sort::kBestMatch:
          break;
      }
      return 0.0;
    };
    // Candidates arrive best match first; a stable sort keeps that order among equal keys.
    std::stable_sort(result.hits.begin(), result.hits.end(),
                     [&](const ProductHit& a, const ProductHit& b) { return key(a) > key(b); });
  }
  keep_first(table, options.group_variants, static_cast<std::size_t>(k), result.hits);
}

// Sets each hit's text relevance (by metadata table row; empty: the query has no text).
void attach_text(const filter::Table& table, const std::vector<double>& text_relevance, QueryResult& result) {
  if (text_relevance.empty()) return;
  for (auto& hit : result.hits) {
    auto row = table.row_of(hit.product_id);
    if (row && *row < text_relevance.size()) hit.text_relevance = text_relevance[*row];
  }
}

// One query's result from the candidates of several of its vectors (a product's
// photos, a photo's views): every product at its best score, best first, the first
// `want` of them (families when grouping); model, matched and strategy of the first
// vector. Scores from vectors after the first count `handicap` less.
QueryResult merge_best(const filter::Table& table, bool grouping, std::size_t want, double handicap,
                       std::vector<QueryResult>::iterator first, std::vector<QueryResult>::iterator last) {
  QueryResult merged;
  merged.model = first->model;
  merged.matched = first->matched;
  merged.strategy = first->strategy;
  std::unordered_map<std::string, ProductHit> best;
  for (auto it = first; it != last; ++it) {
    for (auto& hit : it->hits) {
      if (it != first) hit.score -= static_cast<float>(handicap);
      auto [found, inserted] = best.emplace(hit.product_id, hit);
      if (!inserted && hit.score > found->second.score) found->second = std::move(hit);
    }
  }
  for (auto& [id, hit] : best) merged.hits.push_back(std::move(hit));
  std::sort(merged.hits.begin(), merged.hits.end(), [](const ProductHit& a, const ProductHit& b) {
    return a.score != b.score ? a.score > b.score : a.product_id < b.product_id;
  });
  keep_first(table, grouping, want, merged.hits);
  return merged;
}

}  // namespace

std::vector<double> Engine::text_relevance(const Snapshot& snap, const SearchOptions& options) const {
  if (!options.text) return {};
  const auto matches = ReaderLease(*this)->match_text(*options.text);
  // The store may be a write ahead of the snapshot: products it does not know yet are
  // left out, as the vector search leaves them out.
  std::vector<double> relevance(snap.table->rows(), 0.0);
  for (const auto& match : matches) {
    auto row = snap.table->row_of(match.product_id);
    if (row && snap.table->alive(*row)) relevance[*row] = std::max(match.relevance, 1e-12);
  }
  return relevance;
}

QueryResult Engine::search_text(int k, bool with_details, const SearchOptions& options,
                                const RankRequest* ranking) const {
  check_request(k, options);
  if (!options.text) throw Error(ErrorKind::kInvalidInput, "a search by text needs text");
  std::optional<PreparedRanking> prepared;
  if (options.sort == Sort::kBestMatch) prepared = prepare_ranking(ranking, k);
  std::size_t want = wanted(k, options);
  if (prepared) want = std::max(want, static_cast<std::size_t>(prepared->depth));
  const auto snap = snapshot();
  const filter::Table& table = *snap->table;
  const auto relevance = text_relevance(*snap, options);
  const auto mask = options.filter ? options.filter->evaluate(table) : std::vector<std::uint8_t>();
  QueryResult result;
  result.model = snap->embedder->info().identity();
  result.strategy = "text";
  result.text_only = true;
  const RowMap& map = snap->vectors->row_map;
  for (std::uint32_t t = 0; t < relevance.size(); ++t) {
    if (!(relevance[t] > 0) || (options.filter && (t >= mask.size() || !mask[t]))) continue;
    ++result.matched;
    ProductHit hit{table.id(t), static_cast<float>(relevance[t]), 0, {}};
    hit.text_relevance = relevance[t];
    // The product's first image stands for it where ranking needs one (the shopper's taste).
    auto [first, last] = map.rows_of(t);
    if (first != last) hit.image_id = snap->index().id_of_row(*first);
    result.hits.push_back(std::move(hit));
  }
  auto better = [](const ProductHit& a, const ProductHit& b) {
    if (*a.text_relevance != *b.text_relevance) return *a.text_relevance > *b.text_relevance;
    return a.product_id < b.product_id;
  };
  if (result.hits.size() > want) {
    std::partial_sort(result.hits.begin(), result.hits.begin() + static_cast<std::ptrdiff_t>(want),
                      result.hits.end(), better);
    result.hits.resize(want);
  } else {
    std::sort(result.hits.begin(), result.hits.end(), better);
  }
  finish(table, prepared ? static_cast<int>(want) : k, options, result);
  std::vector<QueryResult> results{std::move(result)};
  finish_results(*snap, results, k, prepared ? ranking : nullptr, prepared, with_details,
                 /*query_colours=*/nullptr, options.group_variants);
  return std::move(results.front());
}

std::vector<QueryResult> Engine::candidates(const Snapshot& snap, const float* vectors, std::size_t n,
                                            std::size_t want, const std::string& exclude,
                                            const SearchOptions& options,
                                            const std::vector<double>& text_relevance) const {
  const std::size_t dim = static_cast<std::size_t>(snap.embedder->info().dim);
  const index::VectorIndex& index = snap.index();
  const filter::Table& table = *snap.table;
  const bool grouping = options.group_variants;
  // With grouping, "more like this" leaves out the product's whole family.
  std::optional<std::uint64_t> excluded_family;
  if (grouping && !exclude.empty()) {
    if (auto row = table.row_of(exclude); row && table.alive(*row)) excluded_family = table.family_key(*row);
  }
  // Several images of one product count once: ask for more images than products
  // wanted, and ask again with a deeper list when they were not enough. With
  // grouping, `want` counts families, and every variant of a family already found
  // stays a candidate (re-ranking picks the family's best); returns what was found
  // (families or products).
  auto group = [&](const index::Hit* hits, std::size_t count, QueryResult& result) {
    std::unordered_set<std::string> seen;
    std::unordered_set<std::uint64_t> families;
    result.hits.clear();
    for (std::size_t j = 0; j < count; ++j) {
      if (hits[j].id < 0) break;
      if (!grouping && result.hits.size() >= want) break;
      const std::string* product = snap.product_of(hits[j].id);
      if (!product || *product == exclude || seen.count(*product)) continue;
      if (grouping) {
        const std::uint64_t family = family_of(table, *product, static_cast<std::uint32_t>(j));
        if (excluded_family && family == *excluded_family) continue;
        if (!families.count(family)) {
          if (families.size() >= want) continue;
          families.insert(family);
        }
      }
      seen.insert(*product);
      result.hits.push_back(ProductHit{*product, hits[j].score, hits[j].id, {}});
    }
    return grouping ? families.size() : result.hits.size();
  };
  std::vector<QueryResult> results(n);
  for (auto& result : results) result.model = snap.embedder->info().identity();
  if (n == 0) return results;
  const std::size_t total = index.size();

  if (!options.filter && text_relevance.empty()) {
    for (auto& r : results) {
      r.matched = snap.table->live();
      r.strategy = index.exhaustive() ? "exact" : "index";
    }
    const std::size_t depth = std::min<std::size_t>(total, want * 2 + 8);
    if (depth == 0) return results;
    auto hits = index.search(n, vectors, static_cast<int>(depth));
    for (std::size_t q = 0; q < n; ++q) {
      std::size_t found = group(hits.data() + q * depth, depth, results[q]);
      std::size_t deeper = depth;
      while (found < want && deeper < total) {
        deeper = std::min(total, deeper * 4);
        auto more = index.search(1, vectors + q * dim, static_cast<int>(deeper));
        found = group(more.data(), deeper, results[q]);
      }
    }
    return results;
  }

  // The filter is evaluated once on the metadata table, and the text matches are
  // marked on it; the search then only ever sees vectors of products that passed.
  std::vector<std::uint8_t> mask;
  if (options.filter) {
    mask = options.filter->evaluate(*snap.table);
  } else {
    mask.resize(snap.table->rows());
    for (std::uint32_t t = 0; t < mask.size(); ++t) mask[t] = snap.table->alive(t) ? 1 : 0;
  }
  for (std::size_t t = 0; t < text_relevance.size() && t < mask.size(); ++t) {
    if (!(text_relevance[t] > 0)) mask[t] = 0;
  }
  const RowMap& map = snap.vectors->row_map;
  std::vector<std::uint32_t> rows;        // index rows of the matching products
  std::size_t matched = 0, findable = 0;  // findable: products, or families when grouping
  // Families with a group_id by key (dense: a flag each), the others are one product each.
  std::vector<std::uint8_t> findable_groups(grouping ? table.grouped_family_keys() : 0, 0);
  for (std::uint32_t t = 0; t < mask.size(); ++t) {
    if (!mask[t]) continue;
    ++matched;
    auto [first, last] = map.rows_of(t);
    if (first == last) continue;
    rows.insert(rows.end(), first, last);
    if (snap.table->id(t) == exclude) continue;
    if (!grouping) {
      ++findable;
    } else if (const std::uint64_t family = table.family_key(t); family != excluded_family) {
      if (family >= findable_groups.size()) {
        ++findable;
      } else if (!findable_groups[family]) {
        findable_groups[family] = 1;
        ++findable;
      }
    }
  }
  const std::size_t expected = std::min(want, findable);  // what a complete answer holds
  for (auto& r : results) {
    r.matched = matched;
    r.strategy = rows.empty() ? "none" : "exact";
  }
  if (rows.empty()) return results;

  auto exact = [&](std::size_t q, QueryResult& result) {
    std::size_t depth = std::min(rows.size(), want * 2 + 8);
    for (;;) {
      auto hits = index.search_rows(1, vectors + q * dim, static_cast<int>(depth), rows.data(), rows.size());
      if (group(hits.data(), depth, result) >= expected || depth == rows.size()) return;
      depth = std::min(rows.size(), depth * 4);
    }
  };
  const bool use_exact = options.strategy == FilterStrategy::kExact ||
                         (options.strategy == FilterStrategy::kAuto &&
                          (index.exhaustive() || rows.size() <= exact_scan_max_vectors_));
  if (use_exact) {
    for (std::size_t q = 0; q < n; ++q) exact(q, results[q]);
    return results;
  }

  MatchingRows allowed(map, mask);
  const double selectivity =
      static_cast<double>(rows.size()) / static_cast<double>(std::max<std::size_t>(1, total));
  const int breadth = breadth_for(selectivity);
  const std::size_t depth = std::min(rows.size(), want * 2 + 8);
  auto hits = index.search_filtered(n, vectors, static_cast<int>(depth), allowed, breadth);
  for (std::size_t q = 0; q < n; ++q) {
    auto& result = results[q];
    result.strategy = "index";
    std::size_t found = group(hits.data() + q * depth, depth, result);
    // Too few came back (a sparse filter cut the graph walk short): look wider,
    // then, as a last resort, scan the matching vectors exactly.
    std::size_t deeper = depth;
    int wider = breadth;
    for (int attempt = 0; attempt < 2 && found < expected && deeper < rows.size(); ++attempt) {
      deeper = std::min(rows.size(), deeper * 4);
      wider = std::min(4096, wider * 4);
      auto more = index.search_filtered(1, vectors + q * dim, static_cast<int>(deeper), allowed, wider);
      found = group(more.data(), deeper, result);
    }
    if (found < expected) {
      exact(q, result);
      result.strategy = "index+exact";
    }
  }
  return results;
}

const image::ColourDescriptor* Engine::colour_of(const Snapshot& snap, std::int64_t image_id) {
  return snap.colour_of(image_id);
}

const filter::Table& Engine::table_of(const Snapshot& snap) { return *snap.table; }

void Engine::fill_details(std::vector<QueryResult>& results) const {
  std::lock_guard<std::mutex> lock(reader_mutex_);
  for (auto& result : results) {
    for (auto& hit : result.hits) {
      if (auto p = reader_->get_product(hit.product_id)) hit.product = std::move(*p);
    }
  }
}

std::vector<QueryResult> Engine::search_snapshot(const Snapshot& snap, const float* vectors, std::size_t n,
                                                 int k, bool with_details, const SearchOptions& options,
                                                 const RankRequest* ranking,
                                                 const std::vector<image::ColourDescriptor>* query_colours,
                                                 const std::vector<std::size_t>& views) const {
  check_request(k, options);
  // A sort by a field replaces the ranking profile's order.
  std::optional<PreparedRanking> prepared;
  if (options.sort == Sort::kBestMatch) prepared = prepare_ranking(ranking, k);
  std::size_t want = wanted(k, options);
  if (prepared) want = std::max(want, static_cast<std::size_t>(prepared->depth));
  const auto text = text_relevance(snap, options);
  std::vector<float> weighted;
  if (options.match != embed::Match::kSimilar) {
    weighted.assign(vectors, vectors + n * static_cast<std::size_t>(snap.embedder->info().dim));
    snap.embedder->weight_queries(options.match, weighted.data(), n);
    vectors = weighted.data();
  }
  auto results = candidates(snap, vectors, n, want, "", options, text);
  for (auto& result : results) attach_text(*snap.table, text, result);
  if (!views.empty()) {
    std::vector<QueryResult> merged;
    auto first = results.begin();
    for (std::size_t count : views) {
      merged.push_back(
          merge_best(*snap.table, options.group_variants, want, image::kViewHandicap, first, first + count));
      first += count;
    }
    results = std::move(merged);
  }
  for (auto& result : results) finish(*snap.table, prepared ? static_cast<int>(want) : k, options, result);
  finish_results(snap, results, k, prepared ? ranking : nullptr, prepared, with_details, query_colours,
                 options.group_variants);
  return results;
}

std::vector<QueryResult> Engine::search_vectors(const float* vectors, std::size_t n, int k, bool with_details,
                                                const SearchOptions& options, const RankRequest* ranking) const {
  return search_snapshot(*snapshot(), vectors, n, k, with_details, options, ranking);
}

std::vector<float> Engine::embed(const std::vector<image::Image>& images) const {
  const auto snap = snapshot();
  const auto& spec = snap->embedder->info().input;
  const std::size_t per_input = static_cast<std::size_t>(spec.channels) * spec.width * spec.height;
  std::vector<float> inputs(images.size() * per_input);
  for (std::size_t i = 0; i < images.size(); ++i) image::preprocess(images[i], spec, inputs.data() + i * per_input);
  return embed_all(*snap->embedder, inputs, images.size());
}

std::vector<QueryResult> Engine::search(const std::vector<image::Image>& queries, int k, bool with_details,
                                        const SearchOptions& options, const RankRequest* ranking) const {
  check_request(k, options);
  const auto snap = snapshot();  // one model and its index for the whole batch
  const auto& spec = snap->embedder->info().input;
  const std::size_t per_input = static_cast<std::size_t>(spec.channels) * spec.width * spec.height;
  // An exact-item search embeds each photo's views (image/views.h) and scores each
  // product by its best view.
  std::vector<std::vector<image::Image>> view_sets(options.match == embed::Match::kExact ? queries.size()
                                                                                         : 0);
  image::parallel_for(view_sets.size(),
                      [&](std::size_t i) { view_sets[i] = image::exact_match_views(queries[i]); });
  std::vector<const image::Image*> inputs_of;
  std::vector<std::size_t> views;
  for (std::size_t i = 0; i < queries.size(); ++i) {
    if (view_sets.empty()) {
      inputs_of.push_back(&queries[i]);
      continue;
    }
    for (const auto& view : view_sets[i]) inputs_of.push_back(&view);
    views.push_back(view_sets[i].size());
  }
  std::vector<float> inputs(inputs_of.size() * per_input);
  image::parallel_for(inputs_of.size(), [&](std::size_t i) {
    image::preprocess(*inputs_of[i], spec, inputs.data() + i * per_input);
  });
  auto vectors = embed_all(*snap->embedder, inputs, inputs_of.size(), options.match);
  std::vector<image::ColourDescriptor> colours;
  // Only a re-ranked search reads colours: the look order and field sorts do not.
  if (ranking && ranking->profile != rank::kVisualProfile && options.sort == Sort::kBestMatch) {
    colours.reserve(queries.size());
    for (const auto& query : queries) colours.push_back(image::colour_descriptor(query));
  }
  return search_snapshot(*snap, vectors.data(), inputs_of.size(), k, with_details, options, ranking,
                         colours.empty() ? nullptr : &colours, views);
}

std::vector<QueryResult> Engine::search_files(const std::vector<fs::path>& files, int k, bool with_details,
                                              const SearchOptions& options, const RankRequest* ranking) const {
  check_request(k, options);
  std::vector<QueryResult> results(files.size());
  std::vector<image::Image> decoded;
  std::vector<std::size_t> positions;
  const int min_side = query_min_side();
  for (std::size_t i = 0; i < files.size(); ++i) {
    try {
      decoded.push_back(image::load_file(files[i], limits_, min_side));
      positions.push_back(i);
    } catch (const Error& e) {
      results[i].error = e.what();
    }
  }
  auto found = search(decoded, k, with_details, options, ranking);
  for (std::size_t j = 0; j < positions.size(); ++j) results[positions[j]] = std::move(found[j]);
  return results;
}

QueryResult Engine::similar_products(const std::string& product_id, int k, bool with_details,
                                     const SearchOptions& options, const RankRequest* ranking) const {
  check_request(k, options);
  std::optional<PreparedRanking> prepared;
  if (options.sort == Sort::kBestMatch) prepared = prepare_ranking(ranking, k);
  std::size_t want = wanted(k, options);
  if (prepared) want = std::max(want, static_cast<std::size_t>(prepared->depth));
  std::shared_ptr<const Snapshot> snap;
  std::vector<float> vectors;
  std::size_t dim = 0;
  // The product's own colour stands in for a query photo's: that of its first image with one.
  std::vector<image::ColourDescriptor> colour;
  // The stored vectors must be those of the snapshot's model; a model switch between
  // taking the snapshot and reading them shows as a mismatch, and they are read again.
  for (int attempt = 0; attempt < 2; ++attempt) {
    snap = snapshot();
    std::vector<catalog::ImageRecord> images;
    {
      std::lock_guard<std::mutex> lock(reader_mutex_);
      if (!reader_->get_product(product_id))
        throw Error(ErrorKind::kNotFound, "no product with id " + product_id);
      images = reader_->images_of(product_id, /*with_embeddings=*/true);
    }
    const std::string identity = snap->embedder->info().identity();
    dim = static_cast<std::size_t>(snap->embedder->info().dim);
    vectors.clear();
    colour.clear();
    for (const auto& img : images) {
      if (colour.empty() && img.colour.size() == image::kColourBins) {
        image::ColourDescriptor c{};
        std::copy(img.colour.begin(), img.colour.end(), c.begin());
        if (image::has_colour(c)) colour.push_back(c);
      }
      if (img.model == identity && img.embedding.size() == dim) {
        vectors.insert(vectors.end(), img.embedding.begin(), img.embedding.end());
      }
    }
    if (!vectors.empty() || images.empty()) break;
  }
  const std::size_t n = vectors.size() / dim;
  if (n == 0) {  // a product without images has no look to match
    QueryResult none;
    none.model = snap->embedder->info().identity();
    return none;
  }
  const auto text = text_relevance(*snap, options);
  snap->embedder->weight_queries(options.match, vectors.data(), n);
  auto per_image = candidates(*snap, vectors.data(), n, want, product_id, options, text);
  for (auto& result : per_image) attach_text(*snap->table, text, result);
  // A product that looks like any of this product's photos qualifies, by its best score.
  QueryResult merged = merge_best(*snap->table, options.group_variants, want, /*handicap=*/0,
                                  per_image.begin(), per_image.end());
  finish(*snap->table, prepared ? static_cast<int>(want) : k, options, merged);
  std::vector<QueryResult> results{std::move(merged)};
  finish_results(*snap, results, k, prepared ? ranking : nullptr, prepared, with_details,
                 colour.empty() ? nullptr : &colour, options.group_variants);
  return std::move(results.front());
}

int Engine::dim() const { return snapshot()->embedder->info().dim; }

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

std::vector<catalog::Product> Engine::variants(const std::string& product_id) const {
  const auto snap = snapshot();
  const filter::Table& table = *snap->table;
  std::vector<std::string> ids;
  if (auto row = table.row_of(product_id); row && table.alive(*row)) {
    for (std::uint32_t member : table.family(*row)) ids.push_back(table.id(member));
  }
  if (ids.empty()) ids.push_back(product_id);
  std::sort(ids.begin(), ids.end());
  std::vector<catalog::Product> out;
  std::lock_guard<std::mutex> lock(reader_mutex_);
  for (const auto& id : ids) {
    // A product deleted after the snapshot was taken is left out.
    if (auto p = reader_->get_product(id)) out.push_back(std::move(*p));
  }
  if (out.empty()) throw Error(ErrorKind::kNotFound, "no product with id " + product_id);
  return out;
}

std::vector<std::string> Engine::product_ids() const {
  std::lock_guard<std::mutex> lock(reader_mutex_);
  return reader_->product_ids();
}

int Engine::query_min_side() const { return min_side_for(*snapshot()->embedder); }

EngineInfo Engine::info() const {
  auto snap = snapshot();
  std::lock_guard<std::mutex> lock(reader_mutex_);
  auto counts = reader_->counts();
  EngineInfo info;
  info.products = counts.products;
  info.images = counts.images;
  info.embedded = counts.embedded;
  info.model = snap->embedder->info().identity();
  info.model_parts = snap->embedder->info().parts;
  info.previous_model = reader_->get_meta(kMetaPreviousModel).value_or("");
  info.reindex = reindex_progress();
  info.index_factory = snap->index().factory();
  info.index_vectors = snap->index().size();
  std::error_code ec;
  info.index_bytes = fs::file_size(dir_ / kIndexFile, ec);
  return info;
}

// ---- model switches (reindex) ----

void Engine::settle_model_files(bool after_crash) {
  std::error_code ec;
  const fs::path next = dir_ / kNextModelFile, active = dir_ / kModelFile,
                 previous = dir_ / kPreviousModelFile;
  const auto stored = store_->get_meta(kMetaModel).value_or("");
  const auto kind = store_->get_meta(kMetaModelKind).value_or("file");
  if (fs::exists(next, ec)) {
    std::string staged;
    try {
      staged = embed::load_model(next)->info().identity();
    } catch (const Error&) {
      // A staged file that does not load was never committed: the switch did not happen.
    }
    if (staged == stored && kind != kPixelsModel) {
      if (fs::exists(active, ec)) move_file(active, previous);
      move_file(next, active);
      if (after_crash && on_message_) {
        on_message_("finished the switch to model " + stored + " that was interrupted");
      }
    } else {
      fs::remove(next, ec);
    }
  }
  if (kind == kPixelsModel && fs::exists(active, ec)) {
    // A switch to raw pixels commits first and moves the old model file aside after.
    move_file(active, previous);
  }
}

void Engine::set_progress(std::size_t done, std::size_t total, const ReindexOptions& options) {
  {
    std::lock_guard<std::mutex> lock(progress_mutex_);
    progress_.done = done;
    progress_.total = total;
  }
  if (options.on_progress) options.on_progress(done, total);
}

std::size_t Engine::embed_missing(const embed::Embedder& target, bool holding_write_lock,
                                  ReindexReport& report, const ReindexOptions& options) {
  const std::string identity = target.info().identity();
  std::vector<catalog::ImageRecord> images;
  std::vector<std::int64_t> kept;
  {
    std::unique_lock<std::mutex> lock(write_mutex_, std::defer_lock);
    if (!holding_write_lock) lock.lock();
    images = store_->all_images();
    kept = store_->kept_vector_ids(identity);
  }
  std::vector<const catalog::ImageRecord*> todo;
  for (const auto& img : images) {
    if (img.model != identity && !std::binary_search(kept.begin(), kept.end(), img.id)) todo.push_back(&img);
  }
  const std::size_t total = images.size();
  std::size_t done = total - todo.size();
  report.images = total;
  set_progress(done, total, options);
  const auto& spec = target.info().input;
  const std::size_t per_input = static_cast<std::size_t>(spec.channels) * spec.width * spec.height;
  const std::size_t dim = static_cast<std::size_t>(target.info().dim);
  const int min_side = min_side_for(target);
  std::size_t embedded = 0;
  for (std::size_t begin = 0; begin < todo.size(); begin += kEmbedBatch) {
    const std::size_t count = std::min(kEmbedBatch, todo.size() - begin);
    std::vector<float> inputs(count * per_input);
    for (std::size_t i = 0; i < count; ++i) {
      const auto& img = *todo[begin + i];
      auto bytes = read_file(img.source, limits_.max_file_bytes);
      if (sha256_hex(bytes.data(), bytes.size()) != img.sha256) {
        throw Error(ErrorKind::kIO,
                    "image " + img.path + " of product " + img.product_id + " (" + img.source +
                        ") changed since it was imported; import the catalog again, then reindex");
      }
      image::preprocess(image::decode(bytes.data(), bytes.size(), limits_, min_side), spec,
                        inputs.data() + i * per_input);
    }
    std::vector<float> vectors(count * dim);
    target.embed_preprocessed(inputs.data(), count, vectors.data());
    {
      std::unique_lock<std::mutex> lock(write_mutex_, std::defer_lock);
      if (!holding_write_lock) lock.lock();
      catalog::Store::Transaction tx(*store_);
      for (std::size_t i = 0; i < count; ++i) {
        store_->keep_vector(identity, todo[begin + i]->id,
                            std::vector<float>(vectors.begin() + static_cast<std::ptrdiff_t>(i * dim),
                                               vectors.begin() + static_cast<std::ptrdiff_t>((i + 1) * dim)));
      }
      tx.commit();
    }
    embedded += count;
    done += count;
    set_progress(done, total, options);
  }
  report.embedded += embedded;
  return embedded;
}

ReindexReport Engine::reindex(const std::string& model, const ReindexOptions& options) {
  std::unique_lock<std::mutex> only_one(reindex_mutex_, std::try_to_lock);
  if (!only_one.owns_lock()) {
    throw Error(ErrorKind::kInvalidInput, "a reindex of " + dir_.string() + " is already running");
  }
  const auto start = std::chrono::steady_clock::now();
  std::shared_ptr<const embed::Embedder> target = load_embedder(model);
  probe(*target, model);
  const std::string identity = target->info().identity();
  std::vector<std::uint8_t> model_bytes;
  if (model != kPixelsModel) model_bytes = read_file(model, kMaxModelFileBytes);

  ReindexReport report;
  report.from = snapshot()->embedder->info().identity();
  report.to = identity;
  {
    std::lock_guard<std::mutex> lock(progress_mutex_);
    progress_ = ReindexProgress{true, identity, 0, 0, ""};
  }
  try {
    if (identity != report.from) {
      // The bulk of the work, while searches and writes go on with the active model.
      embed_missing(*target, /*holding_write_lock=*/false, report, options);
      std::lock_guard<std::mutex> lock(write_mutex_);
      // Images imported meanwhile were embedded with the active model only.
      embed_missing(*target, /*holding_write_lock=*/true, report, options);
      const auto old_kind = store_->get_meta(kMetaModelKind).value_or("file");
      if (!model_bytes.empty())
        write_file_atomic(dir_ / kNextModelFile, model_bytes.data(), model_bytes.size());
      {
        catalog::Store::Transaction tx(*store_);
        store_->activate_kept_vectors(identity, report.from);
        store_->set_meta(kMetaModel, identity);
        store_->set_meta(kMetaModelKind, model == kPixelsModel ? kPixelsModel : "file");
        store_->set_meta(kMetaPreviousModel, report.from);
        store_->set_meta(kMetaPreviousModelKind, old_kind);
        tx.commit();
      }
      // From here the store says `identity`; the files follow (settle_model_files
      // finishes this after a crash).
      std::error_code ec;
      if (old_kind == kPixelsModel) fs::remove(dir_ / kPreviousModelFile, ec);
      settle_model_files(/*after_crash=*/false);
      publish_index(target, "switched to model " + identity);
    } else {
      std::lock_guard<std::mutex> lock(reader_mutex_);
      report.images = static_cast<std::size_t>(reader_->counts().images);
    }
  } catch (...) {
    // Also an exception thrown by on_progress to interrupt: the active model stays.
    std::error_code ec;
    fs::remove(dir_ / kNextModelFile, ec);
    std::string why = "interrupted";
    try {
      throw;
    } catch (const Error& e) {
      why = e.what();
    } catch (...) {
    }
    std::lock_guard<std::mutex> lock(progress_mutex_);
    progress_.running = false;
    progress_.last_error = why;
    throw;
  }
  report.reused = report.images - report.embedded;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::lock_guard<std::mutex> lock(progress_mutex_);
  progress_.running = false;
  progress_.done = progress_.total = report.images;
  return report;
}

std::string Engine::check_model(const std::string& model) {
  auto embedder = load_embedder(model);
  probe(*embedder, model);
  return embedder->info().identity();
}

ReindexReport Engine::rollback(const ReindexOptions& options) {
  std::string previous, kind;
  {
    std::lock_guard<std::mutex> lock(reader_mutex_);
    previous = reader_->get_meta(kMetaPreviousModel).value_or("");
    kind = reader_->get_meta(kMetaPreviousModelKind).value_or("file");
  }
  if (previous.empty()) {
    throw Error(ErrorKind::kNotFound, "data folder " + dir_.string() + " has no previous model to restore");
  }
  if (kind == kPixelsModel) return reindex(kPixelsModel, options);
  // The file is copied aside: the switch moves the active model onto kPreviousModelFile.
  const fs::path copy = dir_ / "rollback-model.lkm";
  auto bytes = read_file(dir_ / kPreviousModelFile, kMaxModelFileBytes);
  write_file_atomic(copy, bytes.data(), bytes.size());
  try {
    if (embed::load_model(copy)->info().identity() != previous) {
      throw Error(ErrorKind::kModelMismatch, (dir_ / kPreviousModelFile).string() +
                                                 " is not the previous model " + previous +
                                                 "; restore it with reindex --model FILE");
    }
    auto report = reindex(copy.string(), options);
    std::error_code ec;
    fs::remove(copy, ec);
    return report;
  } catch (...) {
    std::error_code ec;
    fs::remove(copy, ec);
    throw;
  }
}

ReindexProgress Engine::reindex_progress() const {
  std::lock_guard<std::mutex> lock(progress_mutex_);
  return progress_;
}

}  // namespace lookalike::search

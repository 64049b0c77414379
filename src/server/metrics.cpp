#include "server/metrics.h"

#include <cstdio>
#include <sstream>

#include "search/engine.h"

namespace lookalike::server {
namespace {

// Label values are quoted; backslash, double quote and newline are escaped.
std::string label(const std::string& value) {
  std::string out;
  out.reserve(value.size() + 2);
  out += '"';
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

void header(std::ostringstream& out, const char* name, const char* type, const char* help) {
  out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

}  // namespace

void Metrics::observe(const std::string& route, const std::string& method, int status, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{route, method, status}];
  Histogram& h = durations_[route];
  std::size_t i = 0;
  while (i < kBuckets.size() && seconds > kBuckets[i]) ++i;
  if (i < kBuckets.size()) ++h.buckets[i];
  ++h.count;
  h.sum += seconds;
}

void Metrics::count_overload_refusal() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++overload_refusals_;
}

void Metrics::add_ingest(std::size_t images, std::size_t skipped) {
  std::lock_guard<std::mutex> lock(mutex_);
  ingest_images_ += images;
  ingest_skipped_ += skipped;
}

std::string Metrics::render(const search::EngineInfo* info) const {
  std::ostringstream out;
  std::lock_guard<std::mutex> lock(mutex_);

  header(out, "lookalike_http_requests_total", "counter",
         "HTTP requests answered, by route pattern (none: no route matched), method and status.");
  for (const auto& [key, count] : requests_) {
    const auto& [route, method, status] = key;
    out << "lookalike_http_requests_total{route=" << label(route) << ",method=" << label(method)
        << ",status=\"" << status << "\"} " << count << '\n';
  }

  header(out, "lookalike_http_request_duration_seconds", "histogram",
         "Time from a request being ready to read until its response was written, by route pattern.");
  static const char* kLe[] = {"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
                              "0.1",   "0.25",   "0.5",   "1",    "2.5",   "5"};
  for (const auto& [route, h] : durations_) {
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < kBuckets.size(); ++i) {
      cumulative += h.buckets[i];
      out << "lookalike_http_request_duration_seconds_bucket{route=" << label(route) << ",le=\"" << kLe[i]
          << "\"} " << cumulative << '\n';
    }
    out << "lookalike_http_request_duration_seconds_bucket{route=" << label(route) << ",le=\"+Inf\"} "
        << h.count << '\n';
    out << "lookalike_http_request_duration_seconds_sum{route=" << label(route) << "} " << number(h.sum)
        << '\n';
    out << "lookalike_http_request_duration_seconds_count{route=" << label(route) << "} " << h.count << '\n';
  }

  header(out, "lookalike_http_overload_refusals_total", "counter",
         "Requests refused with 503 before being read because the queue or the connection limit was full.");
  out << "lookalike_http_overload_refusals_total " << overload_refusals_ << '\n';

  if (info) {
    header(out, "lookalike_catalog_products", "gauge", "Products in the catalog store.");
    out << "lookalike_catalog_products " << info->products << '\n';
    header(out, "lookalike_catalog_images", "gauge", "Product images in the catalog store.");
    out << "lookalike_catalog_images " << info->images << '\n';
    header(out, "lookalike_index_vectors", "gauge", "Vectors in the search index.");
    out << "lookalike_index_vectors " << info->index_vectors << '\n';
    header(out, "lookalike_index_size_bytes", "gauge", "Size of the index file on disk.");
    out << "lookalike_index_size_bytes " << info->index_bytes << '\n';
    header(out, "lookalike_model_info", "gauge", "The active model (identity label); always 1.");
    out << "lookalike_model_info{model=" << label(info->model) << "} 1\n";
    header(out, "lookalike_reindex_running", "gauge", "1 while a reindex (model switch) runs, else 0.");
    out << "lookalike_reindex_running " << (info->reindex.running ? 1 : 0) << '\n';
    header(out, "lookalike_reindex_images_done", "gauge",
           "Images with a vector of the model the running or last reindex switches to.");
    out << "lookalike_reindex_images_done " << info->reindex.done << '\n';
    header(out, "lookalike_reindex_images_total", "gauge", "Images that reindex has to cover.");
    out << "lookalike_reindex_images_total " << info->reindex.total << '\n';
  }

  header(out, "lookalike_ingest_images_total", "counter",
         "Product images stored through the API (PUT and imports), embedded or reused.");
  out << "lookalike_ingest_images_total " << ingest_images_ << '\n';
  header(out, "lookalike_ingest_skipped_total", "counter",
         "Catalog lines and images skipped by API writes and imports (bad line, undecodable image, ...).");
  out << "lookalike_ingest_skipped_total " << ingest_skipped_ << '\n';
  return out.str();
}

}  // namespace lookalike::server

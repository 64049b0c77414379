// The API of docs/API.md on top of the transport: admission (route, body framing,
// keys), the route handlers, and the one place where engine errors become HTTP
// statuses. Internal to the server module.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "server/decode_budget.h"
#include "server/keys.h"
#include "server/transport.h"

namespace lookalike {
class Error;
}
namespace lookalike::search {
class Engine;
}
namespace lookalike::image {
struct DecodeLimits;
}

namespace lookalike::server {

class ImportQueue;
class Metrics;
class ReindexRunner;

// An answer other than success, thrown by handlers and admission.
struct ApiError {
  int status = 500;
  std::string code;
  std::string message;
  std::vector<std::pair<std::string, std::string>> headers;
};

// The one mapping from engine error kinds to HTTP statuses and codes.
ApiError to_api_error(const Error& error);

// The engine, once loaded, and what the API derives from it.
class EngineSlot {
 public:
  std::shared_ptr<search::Engine> get() const;
  void set(std::shared_ptr<search::Engine> engine);

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<search::Engine> engine_;
};

struct ApiOptions {
  std::filesystem::path data_dir;
  std::filesystem::path web_dir;
  std::size_t max_body_bytes = 16u << 20;
  bool public_search = false;
  std::string cors_origin;
  std::int64_t decode_budget_pixels = 50'000'000;  // ServerOptions::decode_budget_pixels
};

class Api final : public RequestHandler {
 public:
  static constexpr int kMaxPageSize = 100;
  static constexpr std::size_t kMaxUploadImages = 16;
  static constexpr std::size_t kMaxEventsPerRequest = 10000;
  static constexpr std::size_t kMaxEventErrors = 100;  // listed in a response; the rest are counted

  Api(ApiOptions options, ApiKeys keys, EngineSlot& engine, Metrics& metrics, ImportQueue& imports,
      ReindexRunner& reindexer);

  bool admit(const httplib::Request& req, httplib::Response& res, RequestState& state) override;
  void handle(const httplib::Request& req, httplib::Response& res, RequestState& state) override;
  void fill_error(httplib::Response& res) override;
  void finished(const httplib::Request& req, const httplib::Response& res,
                const RequestState& state) override;
  void refused_overloaded() override;

 private:
  void authorize(const httplib::Request& req, const Route& route) const;
  std::shared_ptr<search::Engine> engine() const;
  // The image's share of the decode budget, held while it decodes; nothing for an
  // image that decode will refuse from its header. Throws decode's errors for a bad
  // header and ApiError 503 when the budget stays spent.
  std::optional<DecodeBudget::Ticket> decode_ticket(const std::uint8_t* data, std::size_t size,
                                                    const image::DecodeLimits& limits) const;

  void serve_static(const httplib::Request& req, httplib::Response& res, const std::string& file) const;
  void readyz(httplib::Response& res) const;
  void metrics(httplib::Response& res) const;
  void search(const httplib::Request& req, httplib::Response& res) const;
  void get_product(httplib::Response& res, const std::string& id) const;
  void similar(const httplib::Request& req, httplib::Response& res, const std::string& id) const;
  void variants(httplib::Response& res, const std::string& id) const;
  void image(const httplib::Request& req, httplib::Response& res, const std::string& id,
             const std::string& n) const;
  void put_product(const httplib::Request& req, httplib::Response& res, const std::string& id) const;
  void delete_product(httplib::Response& res, const std::string& id) const;
  void post_import(const httplib::Request& req, httplib::Response& res) const;
  void get_import(httplib::Response& res, const std::string& task_id) const;
  void post_reindex(const httplib::Request& req, httplib::Response& res) const;
  void get_reindex(httplib::Response& res) const;
  void post_events(const httplib::Request& req, httplib::Response& res) const;
  void list_profiles(httplib::Response& res) const;
  void get_profile(httplib::Response& res, const std::string& name) const;
  void put_profile(const httplib::Request& req, httplib::Response& res, const std::string& name) const;
  void delete_profile(httplib::Response& res, const std::string& name) const;
  void get_user(httplib::Response& res, const std::string& id) const;
  void delete_user(httplib::Response& res, const std::string& id) const;

  const ApiOptions options_;
  const ApiKeys keys_;
  EngineSlot& engine_;
  Metrics& metrics_;
  ImportQueue& imports_;
  ReindexRunner& reindexer_;
  const std::string openapi_;
  mutable DecodeBudget decode_budget_;
};

}  // namespace lookalike::server

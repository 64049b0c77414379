// The HTTP API and the shopper page: `lookalike serve`. The contract is
// docs/API.md; GET /openapi.json is generated from the same route table that
// dispatches requests.
//
// Threads, all owned by the Server: one accept thread, one poller (waits for
// requests on idle connections and drains refused ones), a pool of `threads`
// workers that run requests, and one import thread that runs bulk imports in turn.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

namespace lookalike::search {
class Engine;
}

namespace lookalike::server {

struct ServerOptions {
  std::filesystem::path data_dir;  // the engine's data folder; keys.json, uploads/ and imports/ go here
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (see Server::port())
  // Empty: LOOKALIKE_ADMIN_KEY / LOOKALIKE_SEARCH_KEY, then data_dir/keys.json,
  // then generated (32 random bytes, hex) and stored there with mode 0600.
  std::string admin_key;
  std::string search_key;
  bool public_search = false;     // search and read routes without a key
  int threads = 8;                // workers running requests
  int queue = 64;                 // requests waiting for a worker; beyond: 503 overloaded
  std::filesystem::path web_dir;  // empty: LOOKALIKE_SOURCE_DIR/web
  std::size_t max_body_bytes = std::size_t(16) << 20;
  std::string cors_origin;        // empty: no CORS headers
  int read_timeout_seconds = 10;  // per read, and for the request line and headers as a whole
  int write_timeout_seconds = 10;
  int request_timeout_seconds = 60;  // a whole request, body included
  int keep_alive_seconds = 5;        // an idle connection is closed after this
  int max_connections = 512;         // open client connections; beyond: 503 overloaded
  // Pixels (width * height, from the file headers) of the uploaded images being decoded
  // at once, across requests; more wait, and get 503 overloaded after 10 s. Bounds the
  // memory of decoding (up to about 18 bytes a pixel) whatever the worker count.
  std::int64_t decode_budget_pixels = 50'000'000;
  // Where start-up messages (generated keys, the address) go; may be empty.
  std::function<void(const std::string&)> on_message;
};

class Server {
 public:
  // The engine may be set later (set_engine); until then /readyz and every route
  // that needs the catalog answer 503 not_ready.
  explicit Server(ServerOptions options, std::shared_ptr<search::Engine> engine = nullptr);
  ~Server();  // stops
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Resolves the keys, binds and starts serving in background threads. Throws
  // Error(kIO) when the address cannot be bound, Error(kInvalidInput) for bad options.
  void start();
  int port() const;  // the bound port, after start()
  void set_engine(std::shared_ptr<search::Engine> engine);

  // Stops accepting, answers the requests already received, interrupts a running
  // import (its committed batches stay) and joins every thread. Idempotent and
  // safe from any thread except the server's own.
  void stop();
  void wait();  // until stop() has finished

  const std::string& admin_key() const;
  const std::string& search_key() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// `lookalike serve`: binds, opens the engine (the catalog is searchable once
// /readyz says so), serves until SIGTERM or SIGINT, then stops as Server::stop()
// does and returns 0. Returns 1 after printing the reason when it cannot start.
int run_server(const ServerOptions& options);

}  // namespace lookalike::server

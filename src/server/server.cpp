#include "server/server.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <iostream>
#include <mutex>
#include <thread>

#include "common/error.h"
#include "common/files.h"
#include "search/engine.h"
#include "server/api.h"
#include "server/imports.h"
#include "server/keys.h"
#include "server/metrics.h"
#include "server/transport.h"

namespace lookalike::server {
namespace fs = std::filesystem;

namespace {

int g_signal_pipe[2] = {-1, -1};

void on_signal(int sig) {
  const unsigned char byte = static_cast<unsigned char>(sig);
  [[maybe_unused]] ssize_t n = ::write(g_signal_pipe[1], &byte, 1);
}

void make_private_dir(const fs::path& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw Error(ErrorKind::kIO, "cannot create " + dir.string() + ": " + std::strerror(errno));
  }
}

void check_options(const ServerOptions& o) {
  auto positive = [](int v, const char* name) {
    if (v <= 0) throw Error(ErrorKind::kInvalidInput, std::string(name) + " must be positive");
  };
  positive(o.threads, "--threads");
  positive(o.read_timeout_seconds, "read timeout");
  positive(o.write_timeout_seconds, "write timeout");
  positive(o.request_timeout_seconds, "request timeout");
  positive(o.keep_alive_seconds, "keep-alive timeout");
  positive(o.max_connections, "max connections");
  if (o.queue < 0) throw Error(ErrorKind::kInvalidInput, "--queue must not be negative");
  if (o.port < 0 || o.port > 65535) throw Error(ErrorKind::kInvalidInput, "--port must be from 0 to 65535");
  if (o.max_body_bytes == 0) throw Error(ErrorKind::kInvalidInput, "--max-body-bytes must be positive");
  if (o.decode_budget_pixels <= 0) throw Error(ErrorKind::kInvalidInput, "the decode budget must be positive");
  if (o.data_dir.empty()) throw Error(ErrorKind::kInvalidInput, "--data is required");
  for (char c : o.cors_origin) {
    if (c == '\r' || c == '\n') throw Error(ErrorKind::kInvalidInput, "--cors-origin holds a line break");
  }
}

}  // namespace

struct Server::Impl {
  ServerOptions options;
  ApiKeys keys;
  EngineSlot engine;
  Metrics metrics;
  std::unique_ptr<ImportQueue> imports;
  std::unique_ptr<ReindexRunner> reindexer;
  std::unique_ptr<Api> api;
  std::unique_ptr<Transport> transport;
  int port = 0;

  std::mutex mutex;
  std::condition_variable stopped_cv;
  bool started = false;
  bool stopped = false;
  std::once_flag stop_once;
};

Server::Server(ServerOptions options, std::shared_ptr<search::Engine> engine)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  if (impl_->options.web_dir.empty()) impl_->options.web_dir = fs::path(LOOKALIKE_SOURCE_DIR) / "web";
  impl_->engine.set(std::move(engine));
}

Server::~Server() { stop(); }

void Server::start() {
  auto& d = *impl_;
  const auto& o = d.options;
  check_options(o);
  create_private_directory(o.data_dir);
  make_private_dir(o.data_dir / "uploads");
  // A server killed while writing an upload or an import body leaves its temp file behind.
  remove_stale_temp_files(o.data_dir / "uploads");
  remove_stale_temp_files(o.data_dir / "imports");
  d.keys = resolve_keys(o.data_dir, o.admin_key, o.search_key, o.on_message);
  d.imports = std::make_unique<ImportQueue>(o.data_dir, d.metrics);
  d.reindexer = std::make_unique<ReindexRunner>();
  d.api = std::make_unique<Api>(
      ApiOptions{o.data_dir, o.web_dir, o.max_body_bytes, o.public_search, o.cors_origin, o.decode_budget_pixels},
      d.keys, d.engine, d.metrics, *d.imports, *d.reindexer);

  TransportOptions t;
  t.host = o.host;
  t.port = o.port;
  t.threads = o.threads;
  t.queue = o.queue;
  t.max_connections = o.max_connections;
  t.max_body_bytes = o.max_body_bytes;
  t.read_timeout_ms = o.read_timeout_seconds * 1000;
  t.write_timeout_ms = o.write_timeout_seconds * 1000;
  t.request_timeout_ms = o.request_timeout_seconds * 1000;
  t.keep_alive_ms = o.keep_alive_seconds * 1000;
  // X-Frame-Options for browsers that predate the page's CSP frame-ancestors.
  t.default_headers = {
      {"X-Content-Type-Options", "nosniff"}, {"Referrer-Policy", "no-referrer"}, {"X-Frame-Options", "DENY"}};
  if (!o.cors_origin.empty()) {
    t.default_headers.emplace("Access-Control-Allow-Origin", o.cors_origin);
    t.default_headers.emplace("Vary", "Origin");
    t.default_headers.emplace("Access-Control-Expose-Headers", "ETag, Retry-After, Location");
  }
  d.transport = std::make_unique<Transport>(t, *d.api);
  d.port = d.transport->bind();
  d.transport->start();
  std::lock_guard<std::mutex> lock(d.mutex);
  d.started = true;
}

int Server::port() const { return impl_->port; }

void Server::set_engine(std::shared_ptr<search::Engine> engine) { impl_->engine.set(std::move(engine)); }

void Server::stop() {
  auto& d = *impl_;
  std::call_once(d.stop_once, [&] {
    if (d.transport) d.transport->stop();
    if (d.imports) d.imports->stop();
    if (d.reindexer) d.reindexer->stop();
    std::lock_guard<std::mutex> lock(d.mutex);
    d.stopped = true;
    d.stopped_cv.notify_all();
  });
}

void Server::wait() {
  std::unique_lock<std::mutex> lock(impl_->mutex);
  impl_->stopped_cv.wait(lock, [&] { return impl_->stopped; });
}

const std::string& Server::admin_key() const { return impl_->keys.admin; }
const std::string& Server::search_key() const { return impl_->keys.search; }

int run_server(const ServerOptions& options) {
  // SIGTERM and SIGINT: a handler writes the signal to a pipe that one thread
  // watches. (Blocking them and using sigwait would not do: libtorch and OpenMP
  // start threads before this function runs, and any of them could take the signal.)
  if (::pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    std::cerr << "lookalike: cannot create a pipe: " << std::strerror(errno) << "\n";
    return 1;
  }
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  ::sigaction(SIGTERM, &action, nullptr);
  ::sigaction(SIGINT, &action, nullptr);

  auto say = [](const std::string& m) { std::cerr << "lookalike: " << m << "\n"; };
  ServerOptions o = options;
  if (!o.on_message) o.on_message = say;
  Server server(o);
  try {
    server.start();
  } catch (const Error& e) {
    say(std::string("cannot serve: ") + e.what());
    return 1;
  }
  say("listening on http://" + o.host + ":" + std::to_string(server.port()) + " (loading the catalog)");

  std::atomic<bool> done{false};
  std::thread signal_thread([&] {
    while (!done) {
      pollfd p{g_signal_pipe[0], POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      unsigned char sig = 0;
      if (::read(g_signal_pipe[0], &sig, 1) != 1) continue;
      say(std::string(sig == SIGTERM ? "SIGTERM" : "SIGINT") +
          ": finishing the requests in flight (a second signal ends the process at once)");
      ::signal(SIGTERM, SIG_DFL);
      ::signal(SIGINT, SIG_DFL);
      server.stop();
      return;
    }
  });

  int status = 0;
  try {
    search::OpenOptions open;
    open.on_message = say;
    auto engine = std::shared_ptr<search::Engine>(search::Engine::open(o.data_dir, open));
    const auto info = engine->info();
    server.set_engine(std::move(engine));
    say("ready: " + std::to_string(info.products) + " products, " + std::to_string(info.index_vectors) +
        " vectors");
  } catch (const Error& e) {
    say(std::string("cannot open the catalog: ") + e.what());
    status = 1;
    server.stop();
  }
  server.wait();
  done = true;
  signal_thread.join();
  return status;
}

}  // namespace lookalike::server

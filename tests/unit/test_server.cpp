// The HTTP API against the real server on a loopback port (docs/API.md).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "catalog/product.h"
#include "common/error.h"
#include "image/image.h"
#include "rank/rank.h"
#include "search/demo_catalog.h"
#include "search/engine.h"
#include "server/decode_budget.h"
#include "server/imports.h"
#include "server/metrics.h"
#include "server/routes.h"
#include "server/server.h"
#include "support/hostile_images.h"
#include "support/test_support.h"

namespace lookalike::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::TempDir;
using Bytes = std::vector<std::uint8_t>;
using Clock = std::chrono::steady_clock;

constexpr const char* kAdminKey = "test-admin-key";
constexpr const char* kSearchKey = "test-search-key";
constexpr std::size_t kMaxBody = 1u << 20;

std::string as_string(const Bytes& b) { return std::string(b.begin(), b.end()); }

Bytes read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

std::string base64(const Bytes& bytes) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    std::uint32_t v = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    for (int s : {18, 12, 6, 0}) out += table[(v >> s) & 63];
  }
  if (i + 1 == bytes.size()) {
    std::uint32_t v = bytes[i] << 16;
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    std::uint32_t v = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += table[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::uint32_t crc32(const std::uint8_t* data, std::size_t n) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) {
    c ^= data[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return c ^ 0xFFFFFFFFu;
}

// A PNG whose header claims width x height (the pixel data is a real 28x28 image's).
Bytes png_claiming(Bytes png, std::uint32_t width, std::uint32_t height) {
  auto put = [&](std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) png[at + i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
  };
  put(16, width);
  put(20, height);
  put(29, crc32(png.data() + 12, 17));
  return png;
}

image::Image inverted(const image::Image& img) {
  image::Image out = img;
  for (auto& p : out.pixels) p = static_cast<std::uint8_t>(255 - p);
  return out;
}

// Two images side by side (same height and channels).
image::Image side_by_side(const image::Image& a, const image::Image& b) {
  image::Image out;
  out.width = a.width + b.width;
  out.height = a.height;
  out.channels = a.channels;
  out.pixels.resize(static_cast<std::size_t>(out.width) * out.height * out.channels);
  for (int y = 0; y < a.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      for (int c = 0; c < a.channels; ++c) {
        const auto& src = x < a.width ? a : b;
        int sx = x < a.width ? x : x - a.width;
        out.pixels[(static_cast<std::size_t>(y) * out.width + x) * out.channels + c] =
            src.pixels[(static_cast<std::size_t>(y) * src.width + sx) * src.channels + c];
      }
    }
  }
  return out;
}

// One raw HTTP exchange: sends `request` (in pieces separated by pauses if
// asked), then reads until the server closes or `timeout_ms` passes.
class RawConnection {
 public:
  explicit RawConnection(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawConnection() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool connected() const { return connected_; }
  bool send(const std::string& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }
  // Reads until EOF, or until `until` appears, or timeout.
  std::string read(int timeout_ms, const std::string& until = "") {
    std::string out;
    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    char buf[65536];
    while (Clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      int left = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
      if (::poll(&p, 1, std::max(left, 0)) <= 0) break;
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
      if (!until.empty() && out.find(until) != std::string::npos) break;
    }
    return out;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

int status_of(const std::string& response) {
  if (response.compare(0, 9, "HTTP/1.1 ") != 0) return -1;
  return std::atoi(response.c_str() + 9);
}

// The demo catalog (500 products, 20 queries) is the same for every test process
// (ctest runs each test in its own): it is built once beside the test binary,
// published by renaming a complete folder, and only read.
fs::path shared_demo_catalog() {
  const fs::path dir = fs::read_symlink("/proc/self/exe").parent_path() / "server-test-demo-500";
  if (fs::exists(dir / "catalog.jsonl") && fs::exists(dir / "queries.jsonl")) return dir;
  const fs::path tmp = dir.string() + ".tmp-" + std::to_string(::getpid());
  demo::write_demo_catalog(tmp, {.dataset_dir = {}, .max_products = 500, .max_queries = 20});
  std::error_code ec;
  fs::rename(tmp, dir, ec);  // a concurrent process may have published it first
  if (ec) fs::remove_all(tmp, ec);
  return dir;
}

struct CatalogItem {
  std::string id;
  std::string category;
  fs::path image;
};

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ::unsetenv("LOOKALIKE_ADMIN_KEY");
    ::unsetenv("LOOKALIKE_SEARCH_KEY");
    root_ = new TempDir();
    const fs::path demo = shared_demo_catalog();
    catalog::read_catalog(
        demo / "catalog.jsonl", {},
        [&](std::size_t, catalog::CatalogEntry&& e) {
          items_->push_back({e.product.id, e.product.category, demo / e.product.images.at(0)});
        },
        [](std::size_t, const std::string& m) { FAIL() << m; });
    std::ifstream queries(demo / "queries.jsonl");
    for (std::string line; std::getline(queries, line);) {
      json q = json::parse(line);
      queries_->push_back({"", q["category"], demo / q["image"].get<std::string>()});
    }

    search::OpenOptions open;
    open.model = search::kPixelsModel;
    engine_ = std::shared_ptr<search::Engine>(search::Engine::open(root_->path() / "data", open));
    engine_->ingest(demo / "catalog.jsonl", {});

    const fs::path web = root_->path() / "web";
    testing::write_text(web / "index.html", "<!doctype html><title>lookalike</title>");
    testing::write_text(web / "app.js", "console.log('hi');");
    testing::write_text(web / "css" / "style.css", "body{}");
    testing::write_text(web / ".hidden", "secret");
    testing::write_text(root_->path() / "secret.txt", "secret");
    fs::create_symlink(root_->path() / "secret.txt", web / "link.txt");

    server_ = new Server(options(), engine_);
    server_->start();
  }

  static void TearDownTestSuite() {
    delete server_;
    engine_.reset();
    delete root_;
  }

  static ServerOptions options() {
    ServerOptions o;
    o.data_dir = root_->path() / "data";
    o.port = 0;
    o.admin_key = kAdminKey;
    o.search_key = kSearchKey;
    o.web_dir = root_->path() / "web";
    o.max_body_bytes = kMaxBody;
    o.threads = 4;
    o.queue = 32;
    return o;
  }

  static int port() { return server_->port(); }

  static httplib::Client client(int p = 0) {
    httplib::Client c("127.0.0.1", p ? p : port());
    c.set_read_timeout(20, 0);
    c.set_connection_timeout(5, 0);
    return c;
  }

  static httplib::Headers auth(const std::string& key = kSearchKey) {
    return {{"Authorization", "Bearer " + key}};
  }

  static json search_png(const Bytes& png, const std::string& query = "", int expect_status = 200) {
    auto c = client();
    auto r = c.Post(("/v1/search" + query).c_str(), auth(), as_string(png), "image/png");
    EXPECT_TRUE(r);
    if (!r) return {};
    EXPECT_EQ(r->status, expect_status) << r->body;
    return json::parse(r->body);
  }

  static std::vector<std::string> ids(const json& response) {
    std::vector<std::string> out;
    for (const auto& r : response["results"]) out.push_back(r["product_id"]);
    return out;
  }

  static void expect_error(const httplib::Result& r, int status, const std::string& code) {
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, status) << r->body;
    json body = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << r->body;
    EXPECT_EQ(body["error"]["code"], code) << r->body;
    EXPECT_TRUE(body["error"]["message"].is_string());
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  }

  static TempDir* root_;
  static std::shared_ptr<search::Engine> engine_;
  static Server* server_;
  static std::vector<CatalogItem>* items_;
  static std::vector<CatalogItem>* queries_;
};

TempDir* ServerTest::root_ = nullptr;
std::shared_ptr<search::Engine> ServerTest::engine_;
Server* ServerTest::server_ = nullptr;
std::vector<CatalogItem>* ServerTest::items_ = new std::vector<CatalogItem>();
std::vector<CatalogItem>* ServerTest::queries_ = new std::vector<CatalogItem>();

TEST(ImportQueueFiles, BodiesLeftByAKilledServerAreRemovedAtStart) {
  TempDir dir;
  const long dead = testing::pid_of_an_ended_process();
  ASSERT_GT(dead, 0);
  const fs::path imports = dir / "imports";
  fs::create_directories(imports / "photos");
  const fs::path abandoned = imports / (std::to_string(dead) + "-0123abcd.jsonl");
  const fs::path running = imports / (std::to_string(::getpid()) + "-4567abcd.jsonl");
  testing::write_text(abandoned, "{\"id\": \"a\"}\n");
  testing::write_text(running, "{\"id\": \"b\"}\n");
  testing::write_text(imports / "catalog.jsonl", "{\"id\": \"c\"}\n");
  testing::write_text(imports / "photos" / "1-x.jsonl", "");
  {
    Metrics metrics;
    ImportQueue queue(dir.path(), metrics);
  }
  EXPECT_FALSE(fs::exists(abandoned));
  EXPECT_TRUE(fs::exists(running)) << "a live server's body must stay";
  EXPECT_TRUE(fs::exists(imports / "catalog.jsonl")) << "not a task body";
  EXPECT_TRUE(fs::exists(imports / "photos" / "1-x.jsonl"));
}

// --- health, static files, security headers --------------------------------

TEST_F(ServerTest, LivezReadyzAndSecurityHeaders) {
  auto c = client();
  auto live = c.Get("/livez");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);
  EXPECT_EQ(json::parse(live->body)["status"], "ok");
  EXPECT_EQ(live->get_header_value("X-Content-Type-Options"), "nosniff");
  EXPECT_FALSE(live->has_header("Access-Control-Allow-Origin"));  // CORS is off unless configured
  auto ready = c.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  EXPECT_EQ(json::parse(ready->body)["status"], "ready");
  EXPECT_GE(json::parse(ready->body)["products"].get<int>(), 500);
}

TEST_F(ServerTest, ServesThePageWithItsHeadersAndNothingOutsideWebDir) {
  auto c = client();
  auto index = c.Get("/");
  ASSERT_TRUE(index);
  EXPECT_EQ(index->status, 200);
  EXPECT_EQ(index->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(index->get_header_value("Content-Security-Policy"),
            "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; "
            "script-src 'self'; frame-ancestors 'none'");
  EXPECT_EQ(index->get_header_value("Referrer-Policy"), "no-referrer");
  EXPECT_EQ(index->get_header_value("X-Content-Type-Options"), "nosniff");
  EXPECT_NE(index->body.find("<title>lookalike</title>"), std::string::npos);

  auto js = c.Get("/static/app.js");
  ASSERT_TRUE(js);
  EXPECT_EQ(js->status, 200);
  EXPECT_EQ(js->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  auto css = c.Get("/static/css/style.css");
  ASSERT_TRUE(css);
  EXPECT_EQ(css->status, 200);
  EXPECT_EQ(css->get_header_value("Content-Type"), "text/css; charset=utf-8");
  auto head = c.Head("/static/app.js");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_TRUE(head->body.empty());

  for (const char* path :
       {"/static/missing.js", "/static/.hidden", "/static/link.txt", "/static/%2e%2e/secret.txt",
        "/static/..%2fsecret.txt", "/static/css/../../secret.txt"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_TRUE(r->status == 404 || r->status == 400) << path << " " << r->status;
    EXPECT_NE(r->body, "secret") << path;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json") << path;
  }
  // The raw path, as a browser would never send it but an attacker would.
  RawConnection raw(port());
  raw.send("GET /static/../secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string response = raw.read(3000);
  EXPECT_TRUE(status_of(response) == 404 || status_of(response) == 400) << response;
  EXPECT_EQ(response.find("\r\n\r\nsecret"), std::string::npos);
}

// --- keys -------------------------------------------------------------------

TEST_F(ServerTest, KeysGateSearchAndWrites) {
  auto c = client();
  const Bytes png = read_bytes(items_->at(0).image);
  auto none = c.Post("/v1/search", as_string(png), "image/png");
  expect_error(none, 401, "unauthorized");
  EXPECT_EQ(none->get_header_value("WWW-Authenticate"), "Bearer");
  expect_error(c.Post("/v1/search", auth("wrong"), as_string(png), "image/png"), 403, "forbidden");
  auto search_key = c.Post("/v1/search", {{"X-API-Key", kSearchKey}}, as_string(png), "image/png");
  ASSERT_TRUE(search_key);
  EXPECT_EQ(search_key->status, 200);
  auto admin_key = c.Post("/v1/search", auth(kAdminKey), as_string(png), "image/png");
  ASSERT_TRUE(admin_key);
  EXPECT_EQ(admin_key->status, 200);  // the admin key works everywhere
  // Writes: the search key is refused, with or without a body.
  expect_error(c.Delete("/v1/products/fm-00001", auth()), 403, "forbidden");
  expect_error(c.Put("/v1/products/fm-00001", auth(), R"({"title":"x"})", "application/json"), 403,
               "forbidden");
  expect_error(c.Delete("/v1/products/fm-00001"), 401, "unauthorized");
  expect_error(c.Get("/v1/products/fm-00001"), 401, "unauthorized");
  expect_error(c.Get("/v1/imports/abc", auth()), 403, "forbidden");
  EXPECT_TRUE(engine_->product("fm-00001").has_value());
}

TEST_F(ServerTest, GeneratedKeysAreStoredPrivatelyAndPrintedOnce) {
  TempDir dir;
  std::vector<std::string> messages;
  ServerOptions o;
  o.data_dir = dir.path();
  o.port = 0;
  o.web_dir = root_->path() / "web";
  o.on_message = [&](const std::string& m) { messages.push_back(m); };
  std::string admin, search;
  {
    Server first(o);
    first.start();
    admin = first.admin_key();
    search = first.search_key();
  }
  EXPECT_EQ(admin.size(), 64u);
  EXPECT_EQ(search.size(), 64u);
  EXPECT_NE(admin, search);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].find(admin), std::string::npos) << "a key in the log: " << messages[0];
  EXPECT_EQ(messages[0].find(search), std::string::npos) << "a key in the log: " << messages[0];
  EXPECT_NE(messages[0].find("keys.json"), std::string::npos) << messages[0];
  struct stat st {};
  ASSERT_EQ(::stat((dir.path() / "keys.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  json stored = json::parse(testing::read_text(dir.path() / "keys.json"));
  EXPECT_EQ(stored["admin_key"], admin);
  EXPECT_EQ(stored["search_key"], search);

  Server second(o);  // the same keys, not printed again
  second.start();
  EXPECT_EQ(second.admin_key(), admin);
  EXPECT_EQ(second.search_key(), search);
  EXPECT_EQ(messages.size(), 1u);
  // Without an engine the catalog routes say so, and readiness too.
  auto c = client(second.port());
  expect_error(c.Get("/readyz"), 503, "not_ready");
  auto r = c.Post("/v1/search", auth(search), "x", "image/png");
  expect_error(r, 503, "not_ready");
  EXPECT_EQ(r->get_header_value("Retry-After"), "1");
  auto live = c.Get("/livez");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);
}

// Everything written to file descriptor 2 (std::cerr, libraries' stderr) while alive.
class StderrCapture {
 public:
  StderrCapture() {
    std::fflush(stderr);
    saved_ = ::dup(2);
    file_ = std::tmpfile();
    ::dup2(::fileno(file_), 2);
  }
  ~StderrCapture() { restore(); }
  std::string text() {
    restore();
    std::rewind(file_);
    std::string out;
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, file_)) > 0;) out.append(buf, n);
    return out;
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::cerr.flush();
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }
  int saved_ = -1;
  std::FILE* file_ = nullptr;
};

TEST_F(ServerTest, KeysAreNeverLogged) {
  TempDir dir;
  const std::string admin = "admin-key-from-env-0123456789";
  const std::string search = "search-key-from-env-0123456789";
  ::setenv("LOOKALIKE_ADMIN_KEY", admin.c_str(), 1);
  ::setenv("LOOKALIKE_SEARCH_KEY", search.c_str(), 1);
  std::vector<std::string> messages;
  ServerOptions o = options();
  o.data_dir = dir.path() / "data";
  o.admin_key.clear();
  o.search_key.clear();
  o.on_message = [&](const std::string& m) { messages.push_back(m); };
  std::string log;
  {
    StderrCapture capture;
    {
      Server server(o, engine_);
      server.start();
      EXPECT_EQ(server.admin_key(), admin);
      auto c = client(server.port());
      const std::string png = as_string(read_bytes(items_->at(1).image));
      // Right and wrong keys, in both headers, in the query and the path; requests that
      // fail on the server (a catalog image gone missing is logged) and requests that fail
      // on the client's side.
      for (const std::string& key : {admin, search, admin + "x", search.substr(1)}) {
        for (const char* header : {"Authorization", "X-API-Key"}) {
          httplib::Headers h = {{header, std::string(header) == "X-API-Key" ? key : "Bearer " + key}};
          c.Post(("/v1/search?k=1&key=" + key).c_str(), h, png, "image/png");
          c.Post("/v1/search", h, "not an image", "image/png");
          c.Get(("/v1/products/" + key).c_str(), h);
          c.Put(("/v1/products/" + key).c_str(), h, "{", "application/json");
          c.Delete("/v1/products/no-such-product", h);
        }
      }
      const fs::path gone = dir.path() / "gone.png";
      testing::write_bytes(gone, read_bytes(items_->at(1).image));
      const std::string line = R"({"id": "gone", "images": ["gone.png"]})";
      testing::write_text(dir.path() / "gone.jsonl", line + "\n");
      engine_->ingest(dir.path() / "gone.jsonl", {});
      fs::remove(gone);
      auto missing = c.Get("/v1/products/gone/images/0", {{"Authorization", "Bearer " + admin}});
      ASSERT_TRUE(missing);
      EXPECT_EQ(missing->status, 404);
      engine_->delete_products({"gone"});
    }
    log = capture.text();
  }
  ::unsetenv("LOOKALIKE_ADMIN_KEY");
  ::unsetenv("LOOKALIKE_SEARCH_KEY");
  EXPECT_NE(log.find("cannot serve image 0 of gone"), std::string::npos) << log;  // the log was captured
  EXPECT_EQ(log.find(admin), std::string::npos) << log;
  EXPECT_EQ(log.find(search), std::string::npos) << log;
  EXPECT_EQ(log.find("key-from-env"), std::string::npos) << log;
  for (const auto& m : messages) EXPECT_EQ(m.find("key-from-env"), std::string::npos) << m;
  EXPECT_FALSE(fs::exists(o.data_dir / "keys.json"));  // keys from the environment stay off the disk
}

search::OpenOptions pixels_model() {
  search::OpenOptions open;
  open.model = search::kPixelsModel;
  return open;
}

TEST_F(ServerTest, DataFolderIsPrivate) {
  TempDir dir;
  const mode_t old_umask = ::umask(0);  // the most permissive: the modes must not come from it
  ServerOptions o = options();
  o.data_dir = dir.path() / "new" / "data";
  o.admin_key.clear();
  o.search_key.clear();
  {
    Server server(o, nullptr);
    server.start();
  }
  testing::write_bytes(dir.path() / "catalog" / "a.png", read_bytes(items_->at(0).image));
  testing::write_text(dir.path() / "catalog" / "catalog.jsonl", R"({"id": "a", "images": ["a.png"]})"
                                                                "\n");
  auto engine = search::Engine::open(o.data_dir, pixels_model());
  engine->ingest(dir.path() / "catalog" / "catalog.jsonl", {});
  engine.reset();
  ::umask(old_umask);
  auto mode = [](const fs::path& p) {
    struct stat st {};
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st.st_mode & 0777;
  };
  // The folder shuts out other users, whatever the umask made of the files inside
  // (here catalog.db and index.lkx are 0644 or wider); the keys are private by themselves.
  EXPECT_EQ(mode(o.data_dir), 0700u);
  EXPECT_EQ(mode(o.data_dir / "uploads"), 0700u);
  EXPECT_EQ(mode(o.data_dir / "keys.json"), 0600u);
  EXPECT_TRUE(fs::exists(o.data_dir / "catalog.db"));
  // A folder the engine creates on its own (lookalike ingest) is private too.
  const fs::path cli_made = dir.path() / "cli" / "data";
  ::umask(0);
  search::Engine::open(cli_made, pixels_model()).reset();
  ::umask(old_umask);
  EXPECT_EQ(mode(cli_made), 0700u);
  // A folder that already exists keeps the mode its owner gave it.
  const fs::path shared = dir.path() / "shared";
  fs::create_directory(shared);
  fs::permissions(shared, fs::perms(0750));
  search::Engine::open(shared, pixels_model()).reset();
  EXPECT_EQ(mode(shared), 0750u);
}

TEST_F(ServerTest, ThePageHasNoInlineScriptAndCannotBeFramed) {
  auto c = client();
  auto index = c.Get("/");
  ASSERT_TRUE(index);
  EXPECT_EQ(index->get_header_value("X-Frame-Options"), "DENY");
  EXPECT_NE(index->get_header_value("Content-Security-Policy").find("frame-ancestors 'none'"),
            std::string::npos);
  EXPECT_EQ(index->get_header_value("Content-Security-Policy").find("unsafe-inline"), std::string::npos);
  EXPECT_EQ(c.Get("/livez")->get_header_value("X-Frame-Options"), "DENY");
  // The shipped page keeps to that policy: every script comes from a file, and no
  // element carries an event handler or a style attribute (both count as inline).
  const std::string html = testing::read_text(fs::path(LOOKALIKE_SOURCE_DIR) / "web" / "index.html");
  const std::regex script_tag("<script\\b[^>]*>", std::regex::icase);
  int scripts = 0;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), script_tag); it != std::sregex_iterator();
       ++it) {
    EXPECT_NE(it->str().find("src="), std::string::npos) << it->str();
    ++scripts;
  }
  EXPECT_GT(scripts, 0);
  EXPECT_FALSE(std::regex_search(html, std::regex("\\son[a-z]+\\s*=", std::regex::icase)));
  EXPECT_FALSE(std::regex_search(html, std::regex("\\sstyle\\s*=", std::regex::icase)));
  EXPECT_FALSE(std::regex_search(html, std::regex("javascript:", std::regex::icase)));
}

// --- search -----------------------------------------------------------------

TEST_F(ServerTest, SearchFindsTheCatalogImageFirstInEveryBodyForm) {
  const auto& item = items_->at(7);
  const Bytes png = read_bytes(item.image);
  json raw = search_png(png, "?k=5");
  ASSERT_EQ(raw["results"].size(), 5u);
  const json& top = raw["results"][0];
  EXPECT_EQ(top["product_id"], item.id);
  EXPECT_NEAR(top["similarity"].get<double>(), 1.0, 1e-4);
  EXPECT_EQ(top["category"], item.category);
  EXPECT_EQ(top["image_url"], "/v1/products/" + item.id + "/images/0");
  for (const char* field : {"title", "brand", "price", "currency", "rating", "rating_count", "stock"}) {
    EXPECT_TRUE(top.contains(field)) << field;
  }
  EXPECT_EQ(raw["k"], 5);
  EXPECT_EQ(raw["offset"], 0);
  EXPECT_TRUE(raw["took_ms"].is_number());

  auto c = client();
  httplib::MultipartFormDataItems parts = {{"image", as_string(png), "q.png", "image/png"}};
  auto multipart = c.Post("/v1/search?k=5", auth(), parts);
  ASSERT_TRUE(multipart);
  ASSERT_EQ(multipart->status, 200) << multipart->body;
  EXPECT_EQ(ids(json::parse(multipart->body)), ids(raw));

  json body{{"image_base64", "data:image/png;base64," + base64(png)}, {"k", 5}};
  auto json_form = c.Post("/v1/search", auth(), body.dump(), "application/json");
  ASSERT_TRUE(json_form);
  ASSERT_EQ(json_form->status, 200) << json_form->body;
  EXPECT_EQ(ids(json::parse(json_form->body)), ids(raw));
}

TEST_F(ServerTest, FiltersNarrowTheSearchAndBadFiltersGet400WithThePosition) {
  const auto& item = items_->at(7);
  const Bytes png = read_bytes(item.image);
  // Another category than the photo's: every result must still pass the filter.
  std::string other;
  for (const auto& i : *items_) {
    if (i.category != item.category) other = i.category;
  }
  const std::string filter = "category = \"" + other + "\" AND price < 100000";
  json r = search_png(png, "?k=7&filter=" + httplib::detail::encode_query_param(filter));
  ASSERT_EQ(r["results"].size(), 7u);
  for (const auto& result : r["results"]) EXPECT_EQ(result["category"], other);
  EXPECT_GT(r["matched"].get<int>(), 7);
  EXPECT_EQ(r["sort"], "best");

  // The same in a JSON body; an empty filter means none.
  auto c = client();
  json body{{"image_base64", base64(png)}, {"k", 3}, {"filter", filter}};
  auto in_body = c.Post("/v1/search", auth(), body.dump(), "application/json");
  ASSERT_TRUE(in_body);
  ASSERT_EQ(in_body->status, 200) << in_body->body;
  const json in_body_results =
      json::parse(in_body->body)["results"];  // a range-for over a temporary's member dangles
  for (const auto& result : in_body_results) EXPECT_EQ(result["category"], other);
  json unfiltered = search_png(png, "?k=1&filter=");
  EXPECT_EQ(unfiltered["results"][0]["product_id"], item.id);

  auto bad = c.Post(("/v1/search?filter=" + httplib::detail::encode_query_param("price < cheap")).c_str(),
                    auth(), as_string(png), "image/png");
  expect_error(bad, 400, "invalid_filter");
  EXPECT_TRUE(
      testing::contains(json::parse(bad->body)["error"]["message"], "at position 9: expected a number"))
      << bad->body;
  body["filter"] = "colour = 'red'";
  expect_error(c.Post("/v1/search", auth(), body.dump(), "application/json"), 400, "invalid_filter");
  body["filter"] = 5;
  expect_error(c.Post("/v1/search", auth(), body.dump(), "application/json"), 400, "bad_request");
  expect_error(
      c.Post(("/v1/search?filter=" + std::string(5000, '(')).c_str(), auth(), as_string(png), "image/png"),
      400, "invalid_filter");
  expect_error(c.Post("/v1/search?sort=cheapest", auth(), as_string(png), "image/png"), 400, "bad_request");
  expect_error(c.Post("/v1/search?facets=maybe", auth(), as_string(png), "image/png"), 400, "bad_request");
  expect_error(c.Post("/v1/search?depth=1001", auth(), as_string(png), "image/png"), 400, "bad_request");

  // More like this takes the same filter.
  auto similar = c.Get(("/v1/products/" + item.id + "/similar?k=5&filter=" +
                        httplib::detail::encode_query_param("category = \"" + other + "\""))
                           .c_str(),
                       auth());
  ASSERT_TRUE(similar);
  ASSERT_EQ(similar->status, 200) << similar->body;
  const json similar_results = json::parse(similar->body)["results"];
  for (const auto& result : similar_results) EXPECT_EQ(result["category"], other);
}

TEST_F(ServerTest, FacetsCountTheBestMatchesAndSortOrdersThem) {
  const Bytes png = read_bytes(items_->at(3).image);
  json r = search_png(png, "?k=10&depth=40&facets=true&sort=price_asc");
  ASSERT_EQ(r["results"].size(), 10u);
  ASSERT_TRUE(r.contains("facets")) << r.dump();
  std::size_t total = 0;
  for (const auto& v : r["facets"]["category"]) total += v["count"].get<std::size_t>();
  EXPECT_EQ(total, 40u);
  std::size_t in_buckets = 0;
  for (const auto& b : r["facets"]["price"]) in_buckets += b["count"].get<std::size_t>();
  EXPECT_EQ(in_buckets, 40u);
  EXPECT_TRUE(r["facets"]["brand"].is_array());
  EXPECT_TRUE(r["facets"]["color"].is_array());
  for (std::size_t i = 1; i < r["results"].size(); ++i) {
    EXPECT_LE(r["results"][i - 1]["price"].get<double>(), r["results"][i]["price"].get<double>());
  }
  EXPECT_EQ(r["sort"], "price_asc");
  // Choosing a facet value narrows the results to it.
  const std::string chosen = r["facets"]["category"][0]["value"];
  json narrowed =
      search_png(png, "?k=10&filter=" + httplib::detail::encode_query_param("category = \"" + chosen + "\""));
  ASSERT_FALSE(narrowed["results"].empty());
  for (const auto& result : narrowed["results"]) EXPECT_EQ(result["category"], chosen);
  // Without facets=true there are none.
  EXPECT_FALSE(search_png(png, "?k=2").contains("facets"));
}

TEST_F(ServerTest, TextSearchesAloneAndWithAPhotoAndBadTextGets400) {
  auto c = client();
  auto brand_of = [&](const std::string& id) {
    auto r = c.Get(("/v1/products/" + id).c_str(), auth());
    return json::parse(r->body)["brand"].get<std::string>();
  };
  const auto& item = items_->at(7);
  const std::string brand = brand_of(item.id);
  // Text alone, in the query string with no body, and in a JSON body.
  auto alone = c.Post(
      ("/v1/search?k=5&facets=true&text=" + httplib::detail::encode_query_param(brand)).c_str(), auth());
  ASSERT_TRUE(alone);
  ASSERT_EQ(alone->status, 200) << alone->body;
  json r = json::parse(alone->body);
  ASSERT_EQ(r["results"].size(), 5u);
  EXPECT_GT(r["matched"].get<int>(), 5);
  for (const auto& hit : r["results"]) {
    EXPECT_EQ(hit["brand"], brand);
    EXPECT_GT(hit["text_relevance"].get<double>(), 0);
    EXPECT_EQ(hit["similarity"].get<double>(), 0);
  }
  EXPECT_TRUE(r.contains("facets"));
  json body{{"text", brand}, {"k", 5}, {"explain", true}};
  auto in_json = c.Post("/v1/search", auth(), body.dump(), "application/json");
  ASSERT_TRUE(in_json);
  ASSERT_EQ(in_json->status, 200) << in_json->body;
  json j = json::parse(in_json->body);
  EXPECT_EQ(ids(j), ids(r));
  std::string folded = brand;
  std::transform(folded.begin(), folded.end(), folded.begin(), ::tolower);
  EXPECT_EQ(j["text"], folded + "*");
  EXPECT_EQ(j["results"][0]["explain"]["components"]["visual"]["weight"], 0);
  // Pages follow k.
  body["offset"] = 2;
  body["k"] = 3;
  auto page2 = c.Post("/v1/search", auth(), body.dump(), "application/json");
  ASSERT_EQ(page2->status, 200) << page2->body;
  auto second = ids(json::parse(page2->body));
  const auto first_page = ids(r);
  EXPECT_EQ(second, std::vector<std::string>(first_page.begin() + 2, first_page.end()));

  // A photo with text: only that brand, the photo's own product first.
  const Bytes png = read_bytes(item.image);
  json both = search_png(png, "?k=5&profile=visual&text=" + httplib::detail::encode_query_param(brand));
  ASSERT_EQ(both["results"].size(), 5u);
  EXPECT_EQ(both["results"][0]["product_id"], item.id);
  for (const auto& hit : both["results"]) EXPECT_EQ(hit["brand"], brand);
  json with_json{{"image_base64", base64(png)}, {"k", 5}, {"text", brand}, {"profile", "visual"}};
  auto both_json = c.Post("/v1/search", auth(), with_json.dump(), "application/json");
  ASSERT_EQ(both_json->status, 200) << both_json->body;
  EXPECT_EQ(ids(json::parse(both_json->body)), ids(both));
  httplib::MultipartFormDataItems parts = {{"image", as_string(png), "q.png", "image/png"}};
  auto multipart = c.Post(("/v1/search?k=5&profile=visual&text=" + brand).c_str(), auth(), parts);
  ASSERT_EQ(multipart->status, 200) << multipart->body;
  EXPECT_EQ(ids(json::parse(multipart->body)), ids(both));
  // More like this with text.
  auto similar = c.Get(("/v1/products/" + item.id + "/similar?k=3&text=" + brand).c_str(), auth());
  ASSERT_EQ(similar->status, 200) << similar->body;
  const json similar_results = json::parse(similar->body)["results"];
  for (const auto& hit : similar_results) EXPECT_EQ(hit["brand"], brand);

  // Bad text: 400 invalid_text naming the problem; hostile syntax is only words.
  auto text_error = [&](const std::string& text, const std::string& fragment) {
    auto bad = c.Post(("/v1/search?text=" + httplib::detail::encode_query_param(text)).c_str(), auth());
    expect_error(bad, 400, "invalid_text");
    EXPECT_TRUE(testing::contains(json::parse(bad->body)["error"]["message"], fragment)) << bad->body;
  };
  text_error(std::string(300, 'a'), "more than the limit of 256");
  text_error("a b c d e f g h i j k l m n o p q", "more than the limit of 16");
  text_error("\"*^:()", "no letters or digits");
  text_error("boot \xff", "not valid UTF-8");
  json invalid{{"text", 5}};
  expect_error(c.Post("/v1/search", auth(), invalid.dump(), "application/json"), 400, "bad_request");
  expect_error(c.Post("/v1/search?text=%20", auth()), 400, "bad_request");
  expect_error(c.Post("/v1/search", auth(), "{}", "application/json"), 400, "bad_request");
  expect_error(c.Post("/v1/search?text=boot&text_prefix=maybe", auth()), 400, "bad_request");
  expect_error(c.Post("/v1/search?text=boot&crop=0,0,5,5", auth()), 400, "bad_request");
  for (const std::string hostile : {"NEAR(a b)", "title:boot", "AND OR NOT", "\"boot", "boot*", "^x"}) {
    auto ok = c.Post(("/v1/search?text=" + httplib::detail::encode_query_param(hostile)).c_str(), auth());
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->status, 200) << hostile << ": " << ok->body;
  }
  // A search key is needed as for photos.
  auto anonymous = c.Post("/v1/search?text=boot");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
}

TEST_F(ServerTest, QueryPhotosFindTheirCategory) {
  int top_right = 0;
  for (const auto& q : *queries_) {
    json r = search_png(read_bytes(q.image), "?k=1");
    ASSERT_EQ(r["results"].size(), 1u);
    top_right += r["results"][0]["category"] == q.category ? 1 : 0;
  }
  // Raw pixels find the right category first about 4 times in 5 on Fashion-MNIST.
  EXPECT_GE(top_right, static_cast<int>(queries_->size()) * 6 / 10);
}

TEST_F(ServerTest, PaginationIsConsistentWithK) {
  const Bytes png = read_bytes(items_->at(11).image);
  json all = search_png(png, "?k=20");
  json first = search_png(png, "?k=10&offset=0");
  json second = search_png(png, "?k=10&offset=10");
  auto all_ids = ids(all);
  auto joined = ids(first);
  auto rest = ids(second);
  joined.insert(joined.end(), rest.begin(), rest.end());
  EXPECT_EQ(joined, all_ids);
  EXPECT_EQ(second["offset"], 10);
  EXPECT_EQ(std::set<std::string>(all_ids.begin(), all_ids.end()).size(),
            all_ids.size());  // each product once
  for (std::size_t i = 1; i < all["results"].size(); ++i) {
    EXPECT_GE(all["results"][i - 1]["score"].get<double>(), all["results"][i]["score"].get<double>());
  }
  json deep = search_png(png, "?k=100&offset=900");
  EXPECT_TRUE(deep["results"].empty());  // fewer than 1000 products
}

TEST_F(ServerTest, FieldsRestrictTheResult) {
  json r = search_png(read_bytes(items_->at(3).image), "?k=2&fields=title,price,attributes");
  for (const auto& hit : r["results"]) {
    std::set<std::string> keys;
    for (const auto& [k, v] : hit.items()) keys.insert(k);
    EXPECT_EQ(keys, (std::set<std::string>{"product_id", "score", "title", "price", "attributes"}));
  }
  auto c = client();
  expect_error(c.Post("/v1/search?fields=title,password", auth(), as_string(read_bytes(items_->at(3).image)),
                      "image/png"),
               400, "bad_request");
}

TEST_F(ServerTest, CropSearchesOnlyTheBox) {
  const auto& a = items_->at(20);
  const auto& b = items_->at(21);
  const image::DecodeLimits limits;
  image::Image left = image::load_file(a.image, limits);
  image::Image right = image::load_file(b.image, limits);
  ASSERT_EQ(left.height, right.height);
  const Bytes both = image::encode_png(side_by_side(left, right));
  // By look alone (profile=visual): the default profile may rank a popular neighbour first.
  json r_left = search_png(
      both, "?k=1&profile=visual&crop=0,0," + std::to_string(left.width) + "," + std::to_string(left.height));
  EXPECT_EQ(r_left["results"][0]["product_id"], a.id);
  json r_right = search_png(both, "?k=1&profile=visual&crop=" + std::to_string(left.width) + ",0," +
                                      std::to_string(right.width) + "," + std::to_string(right.height));
  EXPECT_EQ(r_right["results"][0]["product_id"], b.id);

  auto c = client();
  json body{{"image_base64", base64(both)},
            {"k", 1},
            {"profile", "visual"},
            {"crop", {{"x", left.width}, {"y", 0}, {"width", right.width}, {"height", right.height}}}};
  auto json_crop = c.Post("/v1/search", auth(), body.dump(), "application/json");
  ASSERT_TRUE(json_crop);
  ASSERT_EQ(json_crop->status, 200) << json_crop->body;
  EXPECT_EQ(json::parse(json_crop->body)["results"][0]["product_id"], b.id);

  for (const char* crop :
       {"?crop=0,0,57,28", "?crop=50,0,10,10", "?crop=0,0,0,5", "?crop=1,2,3", "?crop=a,b,c,d"}) {
    expect_error(c.Post(std::string("/v1/search") + crop, auth(), as_string(both), "image/png"), 400,
                 "bad_request");
  }
}

TEST_F(ServerTest, CropFunctions) {
  image::Image img{4, 3, 1, {0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23}};
  image::Image part = image::crop(img, {1, 1, 2, 2});
  EXPECT_EQ(part.width, 2);
  EXPECT_EQ(part.pixels, (Bytes{11, 12, 21, 22}));
  EXPECT_THROW(image::crop(img, {3, 0, 2, 1}), Error);
  EXPECT_THROW(image::crop(img, {0, 0, 0, 1}), Error);
  const Bytes png = image::encode_png(img);
  image::Image decoded = image::decode_crop(png.data(), png.size(), {}, {2, 0, 2, 3}, 28);
  EXPECT_EQ(decoded.pixels, (Bytes{2, 3, 12, 13, 22, 23}));
  try {
    image::decode_crop(png.data(), png.size(), {}, {0, 0, 5, 1});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput);
    EXPECT_NE(std::string(e.what()).find("4 x 3"), std::string::npos) << e.what();
  }
}

// --- products, similar, images ---------------------------------------------

TEST_F(ServerTest, ProductAndMoreLikeThis) {
  const auto& item = items_->at(42);
  auto c = client();
  auto p = c.Get(("/v1/products/" + item.id).c_str(), auth());
  ASSERT_TRUE(p);
  ASSERT_EQ(p->status, 200) << p->body;
  json product = json::parse(p->body);
  EXPECT_EQ(product["product_id"], item.id);
  EXPECT_EQ(product["category"], item.category);
  EXPECT_EQ(product["image_urls"], json::array({"/v1/products/" + item.id + "/images/0"}));
  EXPECT_TRUE(product["attributes"].is_object());
  expect_error(c.Get("/v1/products/no-such-product", auth()), 404, "not_found");

  auto s = c.Get(("/v1/products/" + item.id + "/similar?k=8").c_str(), auth());
  ASSERT_TRUE(s);
  ASSERT_EQ(s->status, 200) << s->body;
  auto similar = ids(json::parse(s->body));
  EXPECT_EQ(similar.size(), 8u);
  EXPECT_EQ(std::count(similar.begin(), similar.end(), item.id), 0);  // never itself
  auto page2 = c.Get(("/v1/products/" + item.id + "/similar?k=4&offset=4").c_str(), auth());
  ASSERT_TRUE(page2);
  EXPECT_EQ(ids(json::parse(page2->body)), std::vector<std::string>(similar.begin() + 4, similar.end()));
  expect_error(c.Get("/v1/products/no-such-product/similar", auth()), 404, "not_found");
  expect_error(c.Get(("/v1/products/" + item.id + "/similar?k=0").c_str(), auth()), 400, "bad_request");
}

// --- variants: grouping, swatches, comparison --------------------------------

TEST_F(ServerTest, VariantsAreGroupedWithSwatchesAndCompared) {
  // Three variants of one family with one photo (unlike any catalog image), added over the API.
  const Bytes photo = image::encode_png(inverted(image::load_file(items_->at(470).image, {})));
  const std::vector<std::string> colors{"red", "blue", "green"};
  auto c = client();
  auto put_variant = [&](std::size_t i, double price) {
    json product{
        {"title", "Runner " + colors[i]},
        {"category", "Sneaker"},
        {"price", price},
        {"currency", "EUR"},
        {"stock", static_cast<int>(i)},
        {"rating", 4.0 + 0.1 * static_cast<double>(i)},
        {"group_id", "runner-family"},
        {"attributes", {{"color", colors[i]}, {"size", std::to_string(40 + i)}, {"material", "mesh"}}},
        {"images_base64", {base64(photo)}}};
    auto put = c.Put(("/v1/products/runner-" + colors[i]).c_str(), auth(kAdminKey), product.dump(),
                     "application/json");
    ASSERT_TRUE(put);
    ASSERT_EQ(put->status, 200) << put->body;
  };
  for (std::size_t i = 0; i < colors.size(); ++i) put_variant(i, 50.0 + static_cast<double>(i));

  // Grouped (the default): the family once, the other two as complete swatches.
  json grouped = search_png(photo, "?k=5&explain=true");
  ASSERT_EQ(grouped["results"].size(), 5u);
  const json& top = grouped["results"][0];
  const std::string chosen = top["product_id"];
  EXPECT_EQ(chosen.rfind("runner-", 0), 0u) << grouped.dump();
  for (std::size_t i = 1; i < 5; ++i) {
    EXPECT_NE(grouped["results"][i]["product_id"].get<std::string>().rfind("runner-", 0), 0u)
        << grouped.dump();
    EXPECT_EQ(grouped["results"][i]["family_size"], 1);
    EXPECT_EQ(grouped["results"][i]["variants"], json::array());
  }
  EXPECT_EQ(top["family_size"], 3);
  ASSERT_EQ(top["variants"].size(), 2u);
  std::set<std::string> swatch_ids;
  for (const auto& v : top["variants"]) {
    const std::string id = v["product_id"];
    swatch_ids.insert(id);
    const std::size_t i =
        static_cast<std::size_t>(std::find(colors.begin(), colors.end(), id.substr(7)) - colors.begin());
    ASSERT_LT(i, colors.size()) << id;
    EXPECT_EQ(v["color"], colors[i]);
    EXPECT_EQ(v["size"], std::to_string(40 + i));
    EXPECT_EQ(v["price"], 50.0 + static_cast<double>(i));
    EXPECT_EQ(v["currency"], "EUR");
    EXPECT_EQ(v["stock"], static_cast<int>(i));
    EXPECT_EQ(v["image_url"], "/v1/products/" + id + "/images/0");
    ASSERT_TRUE(v.contains("score")) << "a variant with the same photo was a candidate";
    EXPECT_LE(v["score"].get<double>(), top["score"].get<double>());
  }
  EXPECT_EQ(swatch_ids.size(), 2u);
  EXPECT_EQ(swatch_ids.count(chosen), 0u);
  ASSERT_TRUE(top.contains("variant_choice")) << top.dump();
  EXPECT_EQ(top["variant_choice"]["candidates"], 3);
  EXPECT_TRUE(testing::contains(top["variant_choice"]["reason"], "highest final score")) << top.dump();

  // fields restricts results to what is asked for, the family's fields too.
  json narrow = search_png(photo, "?k=1&fields=title");
  EXPECT_FALSE(narrow["results"][0].contains("variants")) << narrow.dump();
  narrow = search_png(photo, "?k=1&fields=title,variants");
  EXPECT_EQ(narrow["results"][0]["variants"].size(), 2u) << narrow.dump();
  EXPECT_FALSE(narrow["results"][0].contains("family_size")) << narrow.dump();

  // group=false: every product on its own, no swatches; the JSON body takes it too.
  json plain = search_png(photo, "?k=5&group=false");
  std::set<std::string> first3;
  for (std::size_t i = 0; i < 3; ++i) first3.insert(plain["results"][i]["product_id"].get<std::string>());
  EXPECT_EQ(first3, (std::set<std::string>{"runner-red", "runner-blue", "runner-green"}));
  EXPECT_FALSE(plain["results"][0].contains("variants"));
  auto body =
      c.Post("/v1/search", auth(), json{{"image_base64", base64(photo)}, {"k", 3}, {"group", false}}.dump(),
             "application/json");
  ASSERT_TRUE(body);
  ASSERT_EQ(body->status, 200) << body->body;
  EXPECT_EQ(ids(json::parse(body->body)).size(), 3u);
  EXPECT_EQ(ids(json::parse(body->body))[2].rfind("runner-", 0), 0u);
  expect_error(c.Post("/v1/search?group=maybe", auth(), as_string(photo), "image/png"), 400, "bad_request");

  // match: an exact search is the same search for a model without exact weights (raw
  // pixels here); anything but "similar" or "exact" is refused, naming it.
  EXPECT_EQ(ids(search_png(photo, "?k=5&group=false&match=exact")), ids(plain));
  auto exact_body =
      c.Post("/v1/search", auth(),
             json{{"image_base64", base64(photo)}, {"k", 5}, {"group", false}, {"match", "exact"}}.dump(),
             "application/json");
  ASSERT_TRUE(exact_body);
  ASSERT_EQ(exact_body->status, 200) << exact_body->body;
  EXPECT_EQ(ids(json::parse(exact_body->body)), ids(plain));
  auto bad_match = c.Post("/v1/search?match=nearest", auth(), as_string(photo), "image/png");
  expect_error(bad_match, 400, "bad_request");
  EXPECT_TRUE(testing::contains(bad_match->body, "nearest")) << bad_match->body;
  expect_error(c.Get("/v1/products/runner-red/similar?match=same", auth()), 400, "bad_request");

  // More like this leaves out the product's own family unless grouping is off.
  auto similar = json::parse(c.Get("/v1/products/runner-red/similar?k=5", auth())->body);
  for (const auto& id : ids(similar)) EXPECT_NE(id.rfind("runner-", 0), 0u) << id;
  auto similar_plain =
      ids(json::parse(c.Get("/v1/products/runner-red/similar?k=2&group=false", auth())->body));
  EXPECT_EQ(std::set<std::string>(similar_plain.begin(), similar_plain.end()),
            (std::set<std::string>{"runner-blue", "runner-green"}));

  // The comparison: every variant, by product id, with what a shopper compares.
  auto compare = c.Get("/v1/products/runner-green/variants", auth());
  ASSERT_TRUE(compare);
  ASSERT_EQ(compare->status, 200) << compare->body;
  json list = json::parse(compare->body);
  EXPECT_EQ(list["product_id"], "runner-green");
  EXPECT_EQ(list["group_id"], "runner-family");
  ASSERT_EQ(list["variants"].size(), 3u);
  EXPECT_EQ(list["variants"][0]["product_id"], "runner-blue");
  EXPECT_EQ(list["variants"][1]["product_id"], "runner-green");
  EXPECT_EQ(list["variants"][2]["product_id"], "runner-red");
  EXPECT_EQ(list["variants"][0]["price"], 51.0);
  EXPECT_EQ(list["variants"][0]["stock"], 1);
  EXPECT_EQ(list["variants"][0]["rating"], 4.1);
  EXPECT_EQ(list["variants"][0]["attributes"],
            (json{{"color", "blue"}, {"size", "41"}, {"material", "mesh"}}));
  EXPECT_EQ(list["variants"][0]["image_url"], "/v1/products/runner-blue/images/0");
  auto single = json::parse(c.Get(("/v1/products/" + items_->at(3).id + "/variants").c_str(), auth())->body);
  ASSERT_EQ(single["variants"].size(), 1u);
  EXPECT_EQ(single["variants"][0]["product_id"], items_->at(3).id);
  expect_error(c.Get("/v1/products/no-such-product/variants", auth()), 404, "not_found");
  expect_error(c.Get("/v1/products/runner-red/variants"), 401, "unauthorized");

  // A new price for one variant shows in the next comparison and in the swatches.
  put_variant(1, 44.5);
  list = json::parse(c.Get("/v1/products/runner-red/variants", auth())->body);
  EXPECT_EQ(list["variants"][0]["price"], 44.5);
  json again = search_png(photo, "?k=1");
  bool seen = again["results"][0]["product_id"] == "runner-blue" && again["results"][0]["price"] == 44.5;
  for (const auto& v : again["results"][0]["variants"]) {
    if (v["product_id"] == "runner-blue") seen = v["price"] == 44.5;
  }
  EXPECT_TRUE(seen) << again.dump();

  for (const auto& color : colors) c.Delete(("/v1/products/runner-" + color).c_str(), auth(kAdminKey));
  expect_error(c.Get("/v1/products/runner-red/variants", auth()), 404, "not_found");
}

TEST_F(ServerTest, ImageBytesWithTypeAndCaching) {
  const auto& item = items_->at(5);
  auto c = client();
  auto r = c.Get(("/v1/products/" + item.id + "/images/0").c_str(), auth());
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "image/png");
  EXPECT_EQ(r->body, as_string(read_bytes(item.image)));
  EXPECT_EQ(r->get_header_value("Cache-Control"), "public, max-age=86400");
  const std::string etag = r->get_header_value("ETag");
  EXPECT_EQ(etag.size(), 66u);  // "sha256"
  auto headers = auth();
  headers.emplace("If-None-Match", "\"abc\", " + etag);
  auto again = c.Get(("/v1/products/" + item.id + "/images/0").c_str(), headers);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 304);
  EXPECT_TRUE(again->body.empty());
  expect_error(c.Get(("/v1/products/" + item.id + "/images/1").c_str(), auth()), 404, "not_found");
  expect_error(c.Get(("/v1/products/" + item.id + "/images/x").c_str(), auth()), 400, "bad_request");
  expect_error(c.Get("/v1/products/nope/images/0", auth()), 404, "not_found");
}

// --- writes -----------------------------------------------------------------

TEST_F(ServerTest, PutMakesAProductSearchableAndDeleteRemovesIt) {
  const std::string id = "new/sku 1";  // needs percent-encoding in the path
  const std::string path = "/v1/products/new%2Fsku%201";
  const Bytes photo = image::encode_png(inverted(image::load_file(items_->at(400).image, {})));
  json product{{"title", "Inverted boot"},
               {"brand", "Test"},
               {"category", "Ankle boot"},
               {"price", 10.5},
               {"currency", "EUR"},
               {"stock", 3},
               {"attributes", {{"color", "negative"}}},
               {"images_base64", {base64(photo)}}};
  auto c = client();
  auto put = c.Put(path.c_str(), auth(kAdminKey), product.dump(), "application/json");
  ASSERT_TRUE(put);
  ASSERT_EQ(put->status, 200) << put->body;
  EXPECT_EQ(json::parse(put->body), (json{{"product_id", id}, {"created", true}}));
  // Acknowledged means searchable.
  json found = search_png(photo, "?k=1");
  EXPECT_EQ(found["results"][0]["product_id"], id);
  EXPECT_EQ(found["results"][0]["image_url"], path + "/images/0");
  auto img = c.Get((path + "/images/0").c_str(), auth());
  ASSERT_TRUE(img);
  EXPECT_EQ(img->body, as_string(photo));

  product["price"] = 12.0;
  auto update = c.Put(path.c_str(), auth(kAdminKey), product.dump(), "application/json");
  ASSERT_TRUE(update);
  ASSERT_EQ(update->status, 200) << update->body;
  EXPECT_EQ(json::parse(update->body)["created"], false);
  EXPECT_EQ(json::parse(c.Get(path.c_str(), auth())->body)["price"], 12.0);

  auto del = c.Delete(path.c_str(), auth(kAdminKey));
  ASSERT_TRUE(del);
  ASSERT_EQ(del->status, 200) << del->body;
  expect_error(c.Get(path.c_str(), auth()), 404, "not_found");
  EXPECT_NE(search_png(photo, "?k=1")["results"][0]["product_id"], id);
  expect_error(c.Delete(path.c_str(), auth(kAdminKey)), 404, "not_found");
}

TEST_F(ServerTest, PutWithMultipartImages) {
  const Bytes photo = image::encode_png(inverted(image::load_file(items_->at(430).image, {})));
  httplib::MultipartFormDataItems parts = {
      {"product", R"({"title": "Multipart", "category": "Bag", "price": 1})", "", "application/json"},
      {"image", as_string(photo), "a.png", "image/png"}};
  auto c = client();
  auto put = c.Put("/v1/products/mp-1", auth(kAdminKey), parts);
  ASSERT_TRUE(put);
  ASSERT_EQ(put->status, 200) << put->body;
  EXPECT_EQ(search_png(photo, "?k=1")["results"][0]["product_id"], "mp-1");
  bool stored = false;
  for (const auto& e : fs::directory_iterator(root_->path() / "data" / "uploads")) {
    stored = stored || read_bytes(e.path()) == photo;
  }
  EXPECT_TRUE(stored);
}

TEST_F(ServerTest, PutRefusesBadProductsBeforeStoringAnything) {
  auto c = client();
  auto uploads = [&] {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(root_->path() / "data" / "uploads")) ++n;
    return n;
  };
  const std::size_t before = uploads();
  Bytes tiff = {'I', 'I', 42, 0, 8, 0, 0, 0};
  tiff.resize(256, 0);
  Bytes png = read_bytes(items_->at(1).image);
  Bytes truncated(png.begin(), png.begin() + static_cast<long>(png.size() * 6 / 10));
  auto put = [&](const json& body) {
    return c.Put("/v1/products/bad-1", auth(kAdminKey), body.dump(), "application/json");
  };
  expect_error(put({{"title", "t"}, {"images_base64", {base64(tiff)}}}), 415, "unsupported_media_type");
  expect_error(put({{"title", "t"}, {"images_base64", {base64(truncated)}}}), 422, "undecodable_image");
  // A good image before a bad one is not stored either.
  expect_error(put({{"title", "t"}, {"images_base64", {base64(png), base64(tiff)}}}), 415,
               "unsupported_media_type");
  expect_error(put({{"title", "t"}, {"images_base64", {"%%%"}}}), 400, "bad_request");
  expect_error(put({{"title", "t"}, {"colour", "red"}}), 400, "bad_request");  // unknown key: a typo
  expect_error(put({{"title", "t"}, {"images", {"../../etc/passwd"}}}), 400, "bad_request");
  expect_error(put({{"id", "other"}, {"title", "t"}}), 400, "bad_request");
  expect_error(put({{"title", 5}}), 400, "bad_request");
  expect_error(c.Put("/v1/products/bad-1", auth(kAdminKey), "{not json", "application/json"), 400,
               "bad_request");
  expect_error(c.Put("/v1/products/bad-1", auth(kAdminKey), std::string(100, '[') + std::string(100, ']'),
                     "application/json"),
               400, "bad_request");
  EXPECT_EQ(uploads(), before);
  EXPECT_FALSE(engine_->product("bad-1").has_value());
}

// --- the error table --------------------------------------------------------

TEST_F(ServerTest, ErrorStatusesOfTheTable) {
  auto c = client();
  const std::string png = as_string(read_bytes(items_->at(2).image));
  // 400
  expect_error(c.Post("/v1/search", auth(), "{", "application/json"), 400, "bad_request");
  expect_error(c.Post("/v1/search", auth(), R"({"k": 5})", "application/json"), 400, "bad_request");
  expect_error(c.Post("/v1/search?k=0", auth(), png, "image/png"), 400, "bad_request");
  expect_error(c.Post("/v1/search?k=101", auth(), png, "image/png"), 400, "bad_request");
  expect_error(c.Post("/v1/search?k=100&offset=901", auth(), png, "image/png"), 400, "bad_request");
  expect_error(c.Post("/v1/search?offset=-1", auth(), png, "image/png"), 400, "bad_request");
  expect_error(c.Post("/v1/search", auth(), "", "image/png"), 400, "bad_request");
  // 404 and 405
  expect_error(c.Get("/v2/search"), 404, "not_found");
  expect_error(c.Get("/v1/products/"), 404, "not_found");
  auto wrong_method = c.Delete("/v1/search", auth(kAdminKey));
  expect_error(wrong_method, 405, "method_not_allowed");
  EXPECT_EQ(wrong_method->get_header_value("Allow"), "POST");
  expect_error(c.Post("/livez", "", "text/plain"), 405, "method_not_allowed");
  // 413: over --max-body-bytes with Content-Length; an image over the pixel limits
  expect_error(c.Post("/v1/search", auth(), std::string(kMaxBody + 1, 'x'), "image/png"), 413,
               "payload_too_large");
  expect_error(c.Post("/v1/search", auth(),
                      as_string(png_claiming(read_bytes(items_->at(2).image), 20000, 20000)), "image/png"),
               413, "payload_too_large");
  // 415: a TIFF, an unexpected Content-Type, a compressed body
  Bytes tiff = {'I', 'I', 42, 0, 8, 0, 0, 0};
  tiff.resize(256, 0);
  auto t = c.Post("/v1/search", auth(), as_string(tiff), "image/png");
  expect_error(t, 415, "unsupported_media_type");
  EXPECT_NE(t->body.find("TIFF"), std::string::npos) << t->body;
  expect_error(c.Post("/v1/search", auth(), png, "text/plain"), 415, "unsupported_media_type");
  expect_error(c.Post("/v1/search", auth(), png, "application/x-www-form-urlencoded"), 415,
               "unsupported_media_type");
  httplib::Headers gzip = auth();
  gzip.emplace("Content-Encoding", "gzip");
  expect_error(c.Post("/v1/search", gzip, png, "image/png"), 415, "unsupported_media_type");
  // 422: an allowed format that does not decode
  expect_error(c.Post("/v1/search", auth(), png.substr(0, png.size() * 6 / 10), "image/png"), 422,
               "undecodable_image");
  // The connection stays usable after errors whose body was read.
  auto ok = c.Post("/v1/search?k=1", auth(), png, "image/png");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

// Peak resident memory of this process so far (VmHWM), in bytes.
std::size_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

TEST_F(ServerTest, HostileImagesAreRefusedWithTheirStatusAndTheServerKeepsServing) {
  ServerOptions o = options();
  o.max_body_bytes = ServerOptions{}.max_body_bytes;  // the default 16 MiB: the million-chunk PNG fits
  Server server(o, engine_);
  server.start();
  auto c = client(server.port());
  const auto& hostile = testing::hostile_images();
  const std::size_t peak_before = peak_rss_bytes();
  for (const auto& image : hostile) {
    SCOPED_TRACE(image.name);
    const auto start = Clock::now();
    auto r = c.Post("/v1/search", auth(), as_string(image.bytes), "image/jpeg");
    const auto took = Clock::now() - start;
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, image.http_status) << r->body;
    EXPECT_NE(json::parse(r->body)["error"]["message"].get<std::string>().find(image.message_part),
              std::string::npos)
        << r->body;
    EXPECT_LT(took, std::chrono::seconds(3));  // refused, not decoded (figures: bench/RESULTS.md)

    // Uploaded as a product photo: the same answer, and nothing stored.
    httplib::MultipartFormDataItems parts = {{"product", R"({"title": "Hostile"})", "", "application/json"},
                                             {"image", as_string(image.bytes), image.name, "image/jpeg"}};
    auto put = c.Put("/v1/products/hostile-1", auth(kAdminKey), parts);
    ASSERT_TRUE(put);
    EXPECT_EQ(put->status, image.http_status) << put->body;
  }
  // None of them was decoded: the 30000 x 30000 one alone would take 900 MB.
  EXPECT_LT(peak_rss_bytes(), peak_before + (256u << 20));
  EXPECT_EQ(c.Get("/v1/products/hostile-1", auth())->status, 404);
  const Bytes photo = read_bytes(items_->at(3).image);
  auto ok = c.Post("/v1/search?k=1", auth(), as_string(photo), "image/png");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(json::parse(ok->body)["results"][0]["product_id"], items_->at(3).id);
}

TEST_F(ServerTest, ChunkedAndLengthlessBodiesGet411BeforeTheBodyIsRead) {
  // Chunked: refused on the headers alone; the body never needs to arrive.
  RawConnection chunked(port());
  ASSERT_TRUE(chunked.connected());
  chunked.send("POST /v1/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kSearchKey) +
               "\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n");
  auto start = Clock::now();
  std::string response = chunked.read(3000, "}");
  EXPECT_EQ(status_of(response), 411) << response;
  EXPECT_NE(response.find("\"length_required\""), std::string::npos);
  EXPECT_NE(response.find("Connection: close"), std::string::npos);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(2));
  // An oversized chunked body streaming in is refused the same way and drained.
  RawConnection big(port());
  big.send(
      "PUT /v1/products/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: "
      "application/json\r\n\r\n");
  for (int i = 0; i < 32; ++i) big.send("10000\r\n" + std::string(0x10000, 'a') + "\r\n");
  EXPECT_EQ(status_of(big.read(3000, "}")), 411);

  RawConnection lengthless(port());
  lengthless.send("POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n\r\n");
  EXPECT_EQ(status_of(lengthless.read(3000, "}")), 411);
}

TEST_F(ServerTest, OversizedBodiesGet413BeforeTheBodyIsRead) {
  RawConnection raw(port());
  raw.send(
      "POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: "
      "100000000000\r\n\r\n");
  auto start = Clock::now();
  std::string response = raw.read(3000, "}");
  EXPECT_EQ(status_of(response), 413) << response;
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(2));
  // With Expect: 100-continue the client is told before it sends anything.
  RawConnection expect(port());
  expect.send(
      "POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nExpect: 100-continue\r\n"
      "Content-Length: 50000000\r\n\r\n");
  std::string answer = expect.read(3000, "}");
  EXPECT_EQ(status_of(answer), 413) << answer;
  EXPECT_EQ(answer.find("100 Continue"), std::string::npos);
}

TEST_F(ServerTest, OversizedHeadersAndSmugglingAttemptsAreRefused) {
  RawConnection huge(port());
  huge.send("GET /livez HTTP/1.1\r\nHost: x\r\n");
  for (int i = 0; i < 100; ++i)
    huge.send("X-Filler-" + std::to_string(i) + ": " + std::string(1000, 'a') + "\r\n");
  huge.send("\r\n");
  auto start = Clock::now();
  std::string r = huge.read(3000);
  EXPECT_EQ(status_of(r), 400) << r.substr(0, 200);
  EXPECT_EQ(r.find("HTTP/1.1", 5), std::string::npos) << r;  // one answer, then the connection closes
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(2));

  RawConnection two_lengths(port());
  two_lengths.send(
      "POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 3\r\n"
      "Content-Length: 4\r\n\r\nabcd");
  EXPECT_EQ(status_of(two_lengths.read(3000, "}")), 400);

  // A refused body is not parsed as a next request on the same connection.
  RawConnection smuggle(port());
  const std::string inner = "GET /v1/products/fm-00001 HTTP/1.1\r\nHost: x\r\n\r\n";
  smuggle.send(
      "PUT /v1/products/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
      std::to_string(inner.size()) + "\r\n\r\n" + inner);
  std::string answers = smuggle.read(2000);
  EXPECT_EQ(status_of(answers), 401);
  EXPECT_EQ(answers.find("HTTP/1.1", 5), std::string::npos) << answers;  // one answer only
}

TEST_F(ServerTest, KeepAliveAndPipelining) {
  RawConnection raw(port());
  raw.send(
      "GET /livez HTTP/1.1\r\nHost: x\r\n\r\nGET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string both = raw.read(3000);
  EXPECT_EQ(status_of(both), 200);
  auto second = both.find("HTTP/1.1 200", 5);
  EXPECT_NE(second, std::string::npos) << both;

  // Several searches on one connection: a body that was read keeps it open.
  const std::string png = as_string(read_bytes(items_->at(6).image));
  RawConnection keep(port());
  std::string request =
      "POST /v1/search?k=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kSearchKey) +
      "\r\nContent-Type: image/png\r\nContent-Length: " + std::to_string(png.size()) + "\r\n\r\n" + png;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(keep.send(request)) << i;
    std::string answer = keep.read(3000, "took_ms");
    EXPECT_EQ(status_of(answer), 200) << answer;
    EXPECT_EQ(answer.find("Connection: close"), std::string::npos) << answer;
  }

  auto c = client();
  for (int i = 0; i < 20; ++i) {
    auto r = c.Get("/livez");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
}

// --- overload and shutdown --------------------------------------------------

TEST_F(ServerTest, OverloadGets503WithRetryAfterQuickly) {
  ServerOptions o = options();
  o.threads = 1;
  o.queue = 1;
  Server small(o, engine_);
  small.start();
  // The one worker is held by a request whose body never finishes (slow headers
  // hold none: the poller collects them); the next request waits in the queue;
  // the one after that finds the queue full.
  RawConnection slow(small.port());
  slow.send("POST /v1/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kSearchKey) +
            "\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n" + std::string(10, 'x'));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  RawConnection queued(small.port());
  queued.send("GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  RawConnection refused(small.port());
  auto start = Clock::now();
  refused.send("GET /livez HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string response = refused.read(3000, "}");
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(1000));
  EXPECT_EQ(status_of(response), 503) << response;
  EXPECT_NE(response.find("Retry-After: 1\r\n"), std::string::npos) << response;
  EXPECT_NE(response.find("\"overloaded\""), std::string::npos) << response;

  slow.close();  // frees the worker: the queued request is answered
  EXPECT_EQ(status_of(queued.read(5000, "}")), 200);
  auto c = client(small.port());
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("lookalike_http_overload_refusals_total 1"), std::string::npos);
}

TEST_F(ServerTest, SlowClientsAndTooManyConnectionsAreCutOff) {
  ServerOptions o = options();
  o.read_timeout_seconds = 1;
  o.max_connections = 3;
  Server small(o, engine_);
  small.start();
  // Headers dribbling in: the request line and headers must arrive within the read timeout.
  RawConnection slowloris(small.port());
  slowloris.send("GET /livez HTTP/1.1\r\nHost: x\r\n");
  auto start = Clock::now();
  bool closed = false;
  for (int i = 0; i < 20 && !closed; ++i) {
    closed = !slowloris.send("X-Slow-" + std::to_string(i) + ": 1\r\n");
    std::string got = slowloris.read(200);
    closed = closed || !got.empty();
  }
  EXPECT_TRUE(closed);
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(2500));
  // A malformed multipart body: 400, and the connection is not reused for its rest.
  RawConnection multipart(small.port());
  const std::string body =
      "--b\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nxx\r\nGET /livez HTTP/1.1\r\n\r\n";
  multipart.send("POST /v1/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kSearchKey) +
                 "\r\nContent-Type: multipart/form-data; boundary=zz\r\nContent-Length: " +
                 std::to_string(body.size()) + "\r\n\r\n" + body);
  std::string answer = multipart.read(3000);
  EXPECT_EQ(status_of(answer), 400) << answer;
  EXPECT_EQ(answer.find("HTTP/1.1", 5), std::string::npos) << answer;
  // Open connections beyond the limit are refused with 503 at once.
  std::vector<std::unique_ptr<RawConnection>> idle;
  for (int i = 0; i < 3; ++i) idle.push_back(std::make_unique<RawConnection>(small.port()));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  RawConnection extra(small.port());
  extra.send("GET /livez HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(status_of(extra.read(2000, "}")), 503);
}

TEST_F(ServerTest, SlowlorisClientsDoNotStarveOthersAndGet408) {
  ServerOptions o = options();
  o.threads = 2;
  o.read_timeout_seconds = 3;
  Server small(o, engine_);
  small.start();
  // Five times as many clients dribbling headers as there are workers.
  std::vector<std::unique_ptr<RawConnection>> slow;
  for (int i = 0; i < 10; ++i) {
    slow.push_back(std::make_unique<RawConnection>(small.port()));
    ASSERT_TRUE(slow.back()->connected());
    slow.back()->send("GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ");
  }
  for (int round = 0; round < 3; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    for (auto& c : slow) c->send("a");
    // A normal client is answered at once meanwhile, search included.
    auto c = client(small.port());
    const auto start = Clock::now();
    auto live = c.Get("/livez");
    ASSERT_TRUE(live);
    EXPECT_EQ(live->status, 200);
    auto found = c.Post("/v1/search?k=1", auth(), as_string(read_bytes(items_->at(4).image)), "image/png");
    ASSERT_TRUE(found);
    EXPECT_EQ(found->status, 200);
    // Starved, it would wait for the slow clients' read timeout (3 s).
    EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(1500));
  }
  // The read timeout counts from the first byte of the request: 408, then closed.
  for (auto& c : slow) {
    std::string answer = c->read(5000);
    EXPECT_EQ(status_of(answer), 408) << answer;
    EXPECT_NE(answer.find("\"request_timeout\""), std::string::npos) << answer;
    EXPECT_NE(answer.find("Connection: close"), std::string::npos) << answer;
  }
  // A pipelined request whose headers are incomplete does not hold the worker either.
  RawConnection pipelined(small.port());
  pipelined.send("GET /livez HTTP/1.1\r\nHost: x\r\n\r\nGET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ");
  RawConnection pipelined2(small.port());
  pipelined2.send("GET /livez HTTP/1.1\r\nHost: x\r\n\r\nGET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto c = client(small.port());
  auto live = c.Get("/livez");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);
  std::string first = pipelined.read(5000, "HTTP/1.1 408");
  EXPECT_EQ(status_of(first), 200) << first;
  EXPECT_NE(first.find("HTTP/1.1 408"), std::string::npos) << first;
}

TEST_F(ServerTest, TooManyOrTooLongHeadersAreRefused) {
  // More header fields than the limit: 431, whatever their size.
  RawConnection many(port());
  std::string request = "GET /livez HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 101; ++i) request += "X-" + std::to_string(i) + ": 1\r\n";
  many.send(request + "\r\n");
  std::string answer = many.read(3000, "}");
  EXPECT_EQ(status_of(answer), 431) << answer;
  EXPECT_NE(answer.find("\"headers_too_large\""), std::string::npos) << answer;
  RawConnection hundred(port());
  request = "GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
  for (int i = 0; i < 98; ++i) request += "X-" + std::to_string(i) + ": 1\r\n";
  hundred.send(request + "\r\n");
  EXPECT_EQ(status_of(hundred.read(3000, "}")), 200);
  // One header line longer than the whole head limit (64 KiB), never finished: 400, closed.
  RawConnection longer(port());
  longer.send("GET /livez HTTP/1.1\r\nHost: x\r\nX-Long: " + std::string(70000, 'a'));
  std::string cut = longer.read(3000, "}");
  EXPECT_EQ(status_of(cut), 400) << cut.substr(0, 200);
  // A request line over 8 KiB: 414.
  RawConnection uri(port());
  uri.send("GET /livez?" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(status_of(uri.read(3000, "}")), 414);
}

TEST_F(ServerTest, HostileJsonBodiesGet400) {
  auto c = client();
  const std::string png_b64 = base64(read_bytes(items_->at(5).image));
  auto expect_400 = [&](const std::string& body, const std::string& message_part) {
    auto r = c.Post("/v1/search", auth(), body, "application/json");
    expect_error(r, 400, "bad_request");
    if (r) EXPECT_NE(r->body.find(message_part), std::string::npos) << r->body;
  };
  // Deeply nested: refused before parsing, at once, whatever the depth.
  const auto start = Clock::now();
  expect_400(std::string(100000, '['), "nested too deeply");
  expect_400("{\"image_base64\": \"" + png_b64 + "\", \"x\": " + std::string(500000, '[') + "}",
             "nested too deeply");
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(2));
  // Invalid UTF-8, in a key and in a value; an unpaired surrogate escape.
  expect_400("{\"image_base64\": \"" + png_b64 + "\", \"k\xff\": 1}", "not valid JSON (UTF-8)");
  expect_400("{\"image_base64\": \"\xc3\x28" + png_b64 + "\"}", "not valid JSON (UTF-8)");
  expect_400("{\"image_base64\": \"\\ud800" + png_b64 + "\"}", "not valid JSON (UTF-8)");
  // k and offset beyond their maxima, in the body and in the query.
  expect_400("{\"image_base64\": \"" + png_b64 + "\", \"k\": 101}", "k must be from 1 to 100");
  expect_400("{\"image_base64\": \"" + png_b64 + "\", \"k\": 1e300}", "k must be an integer");
  expect_400("{\"image_base64\": \"" + png_b64 + "\", \"k\": 18446744073709551616}", "k must be");
  expect_400("{\"image_base64\": \"" + png_b64 + "\", \"offset\": 1001}", "offset must be from 0 to 1000");
  expect_400("{\"image_base64\": \"" + png_b64 + "\", \"k\": 100, \"offset\": 901}",
             "k + offset must be at most 1000");
  auto r = c.Post("/v1/search?k=99999999999999999999", auth(), "{\"image_base64\": \"" + png_b64 + "\"}",
                  "application/json");
  expect_error(r, 400, "bad_request");
  // A product body: the same checks, and nothing is stored.
  auto put = c.Put("/v1/products/nested", auth(kAdminKey), "{\"title\": " + std::string(100000, '[') + "}",
                   "application/json");
  expect_error(put, 400, "bad_request");
  put = c.Put("/v1/products/utf8", auth(kAdminKey), "{\"title\": \"\xff\xfe\"}", "application/json");
  expect_error(put, 400, "bad_request");
  EXPECT_EQ(c.Get("/v1/products/nested", auth())->status, 404);
  EXPECT_EQ(c.Get("/v1/products/utf8", auth())->status, 404);
  EXPECT_EQ(c.Get("/livez")->status, 200);
}

TEST(DecodeBudget, BoundsThePixelsDecodingAtOnce) {
  DecodeBudget budget(100);
  const auto soon = [] { return Clock::now() + std::chrono::milliseconds(50); };
  auto a = budget.acquire(60, soon());
  ASSERT_TRUE(a);
  auto b = budget.acquire(40, soon());
  ASSERT_TRUE(b);
  EXPECT_EQ(budget.in_use(), 100);
  EXPECT_FALSE(budget.acquire(1, soon()));  // spent: waits, then gives up
  // A waiting request gets its share as soon as another decode ends.
  std::atomic<bool> got{false};
  std::thread waiter([&] { got = budget.acquire(50, Clock::now() + std::chrono::seconds(10)).has_value(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(got);
  a.reset();
  waiter.join();
  EXPECT_TRUE(got);
  EXPECT_EQ(budget.in_use(), 40);  // the waiter's ticket ended with its thread
  // An image over the whole budget waits until nothing else decodes, then takes it all.
  EXPECT_FALSE(budget.acquire(1000, soon()));
  b.reset();
  auto huge = budget.acquire(1000, soon());
  ASSERT_TRUE(huge);
  EXPECT_EQ(budget.in_use(), 100);
  huge.reset();
  EXPECT_EQ(budget.in_use(), 0);
}

TEST_F(ServerTest, ATinyDecodeBudgetStillServesOneImageAtATime) {
  ServerOptions o = options();
  o.decode_budget_pixels = 500;
  Server server(o, engine_);
  server.start();
  auto c = client(server.port());
  const Bytes photo = read_bytes(items_->at(7).image);  // 28 x 28 = 784 pixels: over the budget
  std::vector<std::thread> clients;
  std::atomic<int> answered{0};
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&] {
      auto own = client(server.port());
      auto ok = own.Post("/v1/search?k=1", auth(), as_string(photo), "image/png");
      if (ok && ok->status == 200) ++answered;
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(answered, 4);
  // Over the limits: refused from the header, without waiting for the budget.
  const auto start = Clock::now();
  auto big = c.Post("/v1/search", auth(), as_string(png_claiming(photo, 20000, 20000)), "image/png");
  expect_error(big, 413, "payload_too_large");
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
}

TEST_F(ServerTest, StopFinishesTheRequestInFlight) {
  auto small = std::make_unique<Server>(options(), engine_);
  small->start();
  const std::string png = as_string(read_bytes(items_->at(9).image));
  RawConnection raw(small->port());
  raw.send("POST /v1/search?k=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kSearchKey) +
           "\r\nContent-Type: image/png\r\nContent-Length: " + std::to_string(png.size()) + "\r\n\r\n" +
           png.substr(0, 10));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::thread stopper([&] { small->stop(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  raw.send(png.substr(10));
  std::string response = raw.read(5000, "took_ms");
  stopper.join();
  EXPECT_EQ(status_of(response), 200) << response;
  EXPECT_NE(response.find(items_->at(9).id), std::string::npos);
  RawConnection after(small->port());
  EXPECT_FALSE(after.connected() && after.send("GET /livez HTTP/1.1\r\n\r\n") && !after.read(500).empty());
}

// --- imports ----------------------------------------------------------------

TEST_F(ServerTest, ImportRunsInBackgroundWhileSearchesStayConsistent) {
  // 1000 new products whose photos are inverted catalog photos (200 of them),
  // under DIR/imports/ where imported image paths are resolved.
  constexpr int kProducts = 1000;
  std::string jsonl;
  for (int i = 0; i < kProducts; ++i) {
    const std::string file = "img/inv-" + std::to_string(i % 200) + ".png";
    if (i < 200) {
      testing::write_bytes(root_->path() / "data" / "imports" / file,
                           image::encode_png(inverted(image::load_file(items_->at(100 + i).image, {}))));
    }
    jsonl += json{{"id", "imp-" + std::to_string(i)},
                  {"title", "Imported"},
                  {"category", "Shirt"},
                  {"images", {file}}}
                 .dump() +
             "\n";
  }
  std::atomic<bool> importing{true};
  std::atomic<int> searches{0}, failures{0}, during{0};
  std::vector<std::thread> searchers;
  for (int t = 0; t < 3; ++t) {
    searchers.emplace_back([&, t] {
      auto c = client();
      for (int n = 0; importing || n < 3; ++n) {
        const auto& item = items_->at(static_cast<std::size_t>((t * 7 + n) % 20));
        auto r =
            c.Post("/v1/search?k=10&profile=visual", auth(), as_string(read_bytes(item.image)), "image/png");
        ++searches;
        if (importing) ++during;
        if (!r || r->status != 200) {
          ++failures;
          continue;
        }
        json body = json::parse(r->body);
        auto found = ids(body);
        bool consistent = found.size() == 10 && found[0] == item.id &&
                          std::set<std::string>(found.begin(), found.end()).size() == found.size();
        for (std::size_t i = 1; consistent && i < found.size(); ++i) {
          consistent = body["results"][i - 1]["score"] >= body["results"][i]["score"] &&
                       !body["results"][i]["title"].get<std::string>().empty();
        }
        if (!consistent) ++failures;
      }
    });
  }
  auto c = client();
  auto post = c.Post("/v1/imports", auth(kAdminKey), jsonl, "application/x-ndjson");
  ASSERT_TRUE(post);
  ASSERT_EQ(post->status, 202) << post->body;
  const std::string task = json::parse(post->body)["task_id"];
  EXPECT_EQ(post->get_header_value("Location"), "/v1/imports/" + task);
  json status;
  for (int i = 0; i < 600; ++i) {
    auto r = c.Get(("/v1/imports/" + task).c_str(), auth(kAdminKey));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    status = json::parse(r->body);
    if (status["state"] == "done" || status["state"] == "failed") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  importing = false;
  for (auto& t : searchers) t.join();
  EXPECT_EQ(status["state"], "done") << status.dump();
  EXPECT_EQ(status["added"], kProducts);
  EXPECT_EQ(status["lines_done"], kProducts);
  EXPECT_EQ(status["skipped"], 0);
  EXPECT_TRUE(status["errors"].empty());
  EXPECT_GE(during.load(), 3);
  EXPECT_EQ(failures.load(), 0) << "of " << searches.load() << " searches";
  // Imported products are searchable (five share each photo).
  const std::string top = search_png(image::encode_png(inverted(image::load_file(items_->at(150).image, {}))),
                                     "?k=1")["results"][0]["product_id"];
  EXPECT_TRUE(top == "imp-50" || top == "imp-250" || top == "imp-450" || top == "imp-650" || top == "imp-850")
      << top;
  EXPECT_FALSE(fs::exists(root_->path() / "data" / "imports" / (task + ".jsonl")));  // removed once done
}

TEST_F(ServerTest, ImportReportsPerLineErrors) {
  testing::write_bytes(root_->path() / "data" / "imports" / "img" / "ok.png",
                       read_bytes(items_->at(0).image));
  const std::string jsonl = std::string(R"({"id": "e-1", "title": "ok", "images": ["img/ok.png"]})") + "\n" +
                            "{broken\n" + R"({"id": "e-2", "images": ["missing.png"]})" + "\n" +
                            R"({"id": "e-3", "images": ["../../secret.txt"]})" + "\n";
  auto c = client();
  auto post = c.Post("/v1/imports", auth(kAdminKey), jsonl, "application/x-ndjson");
  ASSERT_TRUE(post);
  ASSERT_EQ(post->status, 202) << post->body;
  const std::string task = json::parse(post->body)["task_id"];
  json status;
  for (int i = 0; i < 400; ++i) {
    status = json::parse(c.Get(("/v1/imports/" + task).c_str(), auth(kAdminKey))->body);
    if (status["state"] != "queued" && status["state"] != "running") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(status["state"], "done") << status.dump();
  ASSERT_EQ(status["errors"].size(), 3u) << status.dump();
  std::set<int> lines;
  for (const auto& e : status["errors"]) lines.insert(e["line"].get<int>());
  EXPECT_EQ(lines, (std::set<int>{2, 3, 4}));
  EXPECT_EQ(status["errors"][1]["image"], "missing.png");
  expect_error(c.Get("/v1/imports/no-such-task", auth(kAdminKey)), 404, "not_found");
  expect_error(c.Post("/v1/imports", auth(kAdminKey), "  \n", "application/x-ndjson"), 400, "bad_request");
  expect_error(c.Post("/v1/imports", auth(kAdminKey), jsonl, "application/x-www-form-urlencoded"), 415,
               "unsupported_media_type");
}

// --- openapi and metrics ----------------------------------------------------

TEST_F(ServerTest, OpenApiDescribesEveryRouteAndEveryDescribedRouteAnswers) {
  auto c = client();
  auto r = c.Get("/openapi.json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  json spec = json::parse(r->body);
  EXPECT_EQ(spec["openapi"], "3.0.3");
  std::size_t operations = 0;
  for (const auto& [path, methods] : spec["paths"].items()) operations += methods.size();
  EXPECT_EQ(operations, routes().size());
  for (const auto& route : routes()) {
    std::string method = route.method;
    std::transform(method.begin(), method.end(), method.begin(), ::tolower);
    EXPECT_TRUE(spec["paths"].contains(route.pattern) && spec["paths"][route.pattern].contains(method))
        << route.method << " " << route.pattern;
  }
  // Every described operation exists: without a key it answers 200 or 401, never
  // 404 (no route) or 405.
  const std::map<std::string, std::string> samples = {
      {"{id}", "fm-00000"}, {"{n}", "0"}, {"{task_id}", "t"}, {"{file}", "app.js"}};
  for (const auto& [path, methods] : spec["paths"].items()) {
    std::string concrete = path;
    for (const auto& [param, value] : samples) {
      auto at = concrete.find(param);
      if (at != std::string::npos) concrete.replace(at, param.size(), value);
    }
    for (const auto& [method, op] : methods.items()) {
      httplib::Result answer{nullptr, httplib::Error::Unknown};
      if (method == "get") {
        answer = c.Get(concrete.c_str());
      } else if (method == "delete") {
        answer = c.Delete(concrete.c_str());
      } else {
        std::string type = op["requestBody"]["content"].begin().key();
        answer = method == "post" ? c.Post(concrete.c_str(), "x", type.c_str())
                                  : c.Put(concrete.c_str(), "x", type.c_str());
      }
      ASSERT_TRUE(answer) << method << " " << concrete;
      EXPECT_TRUE(answer->status == 200 || answer->status == 401)
          << method << " " << concrete << " " << answer->status << " " << answer->body;
    }
  }
}

TEST_F(ServerTest, MetricsFollowPrometheusConventions) {
  auto c = client();
  // One connection: a response is counted right after it is written, so on a new
  // connection the next request could overtake the count of the previous one.
  c.set_keep_alive(true);
  c.Get("/livez");
  c.Get("/v1/products/fm-00003", auth());
  c.Get("/v1/products/no-such-thing", auth());
  c.Get("/nowhere/at/all");
  auto r = c.Get("/metrics");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string& text = r->body;
  const std::regex sample(R"(^([a-z_:][a-z0-9_:]*)(\{([a-z_]+="[^"\\]*",?)*\})? [-+0-9.eInf]+$)");
  const std::regex comment(R"(^# (HELP|TYPE) ([a-z_:][a-z0-9_:]*) .+$)");
  std::map<std::string, std::string> types;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (line.rfind("#", 0) == 0) {
      ASSERT_TRUE(std::regex_match(line, m, comment)) << line;
      if (m[1] == "TYPE") types[m[2]] = line.substr(line.rfind(' ') + 1);
      continue;
    }
    ASSERT_TRUE(std::regex_match(line, m, sample)) << line;
    std::string family = m[1];
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (!types.count(family) && family.size() > std::strlen(suffix) &&
          family.compare(family.size() - std::strlen(suffix), std::string::npos, suffix) == 0) {
        family = family.substr(0, family.size() - std::strlen(suffix));
      }
    }
    ASSERT_TRUE(types.count(family)) << "no TYPE before " << line;
    if (types[family] == "counter") {
      EXPECT_TRUE(family.size() > 6 && family.substr(family.size() - 6) == "_total") << family;
    }
    EXPECT_EQ(line.find("fm-00003"), std::string::npos) << "raw path in a label: " << line;
    EXPECT_EQ(line.find("nowhere"), std::string::npos) << "raw path in a label: " << line;
  }
  for (const char* family :
       {"lookalike_http_requests_total", "lookalike_http_request_duration_seconds",
        "lookalike_catalog_products", "lookalike_index_vectors", "lookalike_index_size_bytes",
        "lookalike_ingest_images_total", "lookalike_ingest_skipped_total"}) {
    EXPECT_TRUE(types.count(family)) << family;
  }
  EXPECT_EQ(types["lookalike_http_request_duration_seconds"], "histogram");
  EXPECT_EQ(types["lookalike_catalog_products"], "gauge");
  EXPECT_NE(
      text.find(R"(lookalike_http_requests_total{route="/v1/products/{id}",method="GET",status="200"})"),
      std::string::npos);
  EXPECT_NE(
      text.find(R"(lookalike_http_requests_total{route="/v1/products/{id}",method="GET",status="404"})"),
      std::string::npos);
  EXPECT_NE(text.find(R"(lookalike_http_requests_total{route="none",method="GET",status="404"})"),
            std::string::npos);
  EXPECT_NE(text.find(R"(lookalike_http_request_duration_seconds_bucket{route="/livez",le="+Inf"})"),
            std::string::npos);
  EXPECT_NE(text.find(R"(lookalike_http_request_duration_seconds_bucket{route="/livez",le="0.0025"})"),
            std::string::npos);
}

TEST_F(ServerTest, CorsOnlyWhenConfigured) {
  ServerOptions o = options();
  o.cors_origin = "https://shop.example";
  Server cors(o, engine_);
  cors.start();
  auto c = client(cors.port());
  auto pre = c.Options("/v1/search",
                       {{"Origin", "https://shop.example"}, {"Access-Control-Request-Method", "POST"}});
  ASSERT_TRUE(pre);
  EXPECT_EQ(pre->status, 204);
  EXPECT_EQ(pre->get_header_value("Access-Control-Allow-Origin"), "https://shop.example");
  EXPECT_NE(pre->get_header_value("Access-Control-Allow-Headers").find("Authorization"), std::string::npos);
  EXPECT_NE(pre->get_header_value("Access-Control-Allow-Methods").find("POST"), std::string::npos);
  auto live = c.Get("/livez");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->get_header_value("Access-Control-Allow-Origin"), "https://shop.example");
}

TEST_F(ServerTest, PublicSearchNeedsNoKeyButWritesStillDo) {
  ServerOptions o = options();
  o.public_search = true;
  Server open(o, engine_);
  open.start();
  auto c = client(open.port());
  auto r = c.Post("/v1/search?k=1", as_string(read_bytes(items_->at(4).image)), "image/png");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto p = c.Get("/v1/products/fm-00004");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->status, 200);
  expect_error(c.Delete("/v1/products/fm-00004"), 401, "unauthorized");
  expect_error(
      c.Post("/v1/search?k=1", auth("wrong"), as_string(read_bytes(items_->at(4).image)), "image/png"), 403,
      "forbidden");
}

// --- ranking: events, explain, profiles, users ---------------------------------
// A suite of its own, so that the events it records (which move rankings) start
// from a fresh catalog and never meet the tests above.

class RankingApiTest : public ServerTest {
 protected:
  static json post_events(const std::string& body, const std::string& type, int expect_status = 200) {
    auto c = client();
    auto r = c.Post("/v1/events", auth(kAdminKey), body, type.c_str());
    EXPECT_TRUE(r);
    if (!r) return {};
    EXPECT_EQ(r->status, expect_status) << r->body;
    return json::parse(r->body);
  }
  static std::size_t rank_of(const json& response, const std::string& id) {
    auto found = ids(response);
    return static_cast<std::size_t>(std::find(found.begin(), found.end(), id) - found.begin());
  }
};

TEST_F(RankingApiTest, EventsOneByOneAndInBatchesWithPerLineErrors) {
  const std::string a = items_->at(30).id, b = items_->at(31).id;
  json one =
      post_events(json{{"type", "view"}, {"product_id", a}, {"user_id", "u-1"}}.dump(), "application/json");
  EXPECT_EQ(one["accepted"], 1);
  EXPECT_EQ(one["rejected"], 0);

  json array = json::array(
      {{{"type", "click"}, {"product_id", a}, {"user_id", "u-1"}, {"time", "2026-01-02T03:04:05Z"}},
       {{"type", "purchase"}, {"product_id", "nope"}, {"user_id", "u-1"}},
       {{"type", "add_to_cart"}, {"product_id", b}, {"user_id", "u-2"}, {"time", 1767225600}}});
  json batch = post_events(array.dump(), "application/json");
  EXPECT_EQ(batch["accepted"], 2);
  EXPECT_EQ(batch["rejected"], 1);
  ASSERT_EQ(batch["errors"].size(), 1u);
  EXPECT_EQ(batch["errors"][0]["line"], 2);
  EXPECT_NE(batch["errors"][0]["message"].get<std::string>().find("no product with id nope"),
            std::string::npos);

  const std::string jsonl = json{{"type", "view"}, {"product_id", b}, {"user_id", "u-2"}}.dump() + "\n\n" +
                            "{\"type\": \"like\", \"product_id\": \"" + b + "\", \"user_id\": \"u-2\"}\n" +
                            "not json\n" +
                            json{{"type", "purchase"}, {"product_id", b}, {"user_id", "u-3"}}.dump();
  json lines = post_events(jsonl, "application/x-ndjson");
  EXPECT_EQ(lines["accepted"], 2);
  EXPECT_EQ(lines["rejected"], 2);
  ASSERT_EQ(lines["errors"].size(), 2u);
  EXPECT_EQ(lines["errors"][0]["line"], 3);
  EXPECT_NE(lines["errors"][0]["message"].get<std::string>().find("type must be"), std::string::npos);
  EXPECT_EQ(lines["errors"][1]["line"], 4);

  auto c = client();
  expect_error(
      c.Post("/v1/events", auth(kAdminKey),
             json{{"type", "view"}, {"product_id", "nope"}, {"user_id", "u"}}.dump(), "application/json"),
      404, "not_found");
  expect_error(
      c.Post("/v1/events", auth(kAdminKey), R"({"type": "view", "product_id": "x"})", "application/json"),
      400, "bad_request");
  expect_error(c.Post("/v1/events", auth(kAdminKey), "\n\n", "application/x-ndjson"), 400, "bad_request");
  std::string too_many;
  for (std::size_t i = 0; i <= 10000; ++i) too_many += "{}\n";  // the limit is 10,000 per request
  expect_error(c.Post("/v1/events", auth(kAdminKey), too_many, "application/x-ndjson"), 400, "bad_request");
  expect_error(c.Post("/v1/events", auth(),
                      json{{"type", "view"}, {"product_id", a}, {"user_id", "u"}}.dump(), "application/json"),
               403, "forbidden");

  auto user = c.Get("/v1/users/u-2", auth(kAdminKey));
  ASSERT_TRUE(user);
  ASSERT_EQ(user->status, 200) << user->body;
  EXPECT_EQ(json::parse(user->body)["events"], 2);
}

TEST_F(RankingApiTest, ExplainBreaksTheScoreDownAndEventsShowAtOnce) {
  const Bytes png = read_bytes(items_->at(40).image);
  json visual = search_png(png, "?k=30&profile=visual");
  ASSERT_EQ(visual["results"].size(), 30u);
  EXPECT_FALSE(visual["results"][0].contains("explain"));  // only when asked for
  const std::string lifted = visual["results"][25]["product_id"];
  std::string jsonl;
  for (int i = 0; i < 10; ++i) {
    jsonl +=
        json{{"type", "purchase"}, {"product_id", lifted}, {"user_id", "buyer-" + std::to_string(i)}}.dump() +
        "\n";
  }
  EXPECT_EQ(post_events(jsonl, "application/x-ndjson")["accepted"], 10);

  json ranked = search_png(png, "?k=10&explain=true&depth=50");
  ASSERT_EQ(ranked["results"].size(), 10u);
  EXPECT_LT(rank_of(ranked, lifted), 10u) << ranked.dump();
  for (const auto& hit : ranked["results"]) {
    ASSERT_TRUE(hit.contains("explain")) << hit.dump();
    const json& explain = hit["explain"];
    double sum = 0;
    for (const auto& [name, part] : explain["components"].items()) {
      EXPECT_NEAR(part["contribution"].get<double>(),
                  part["value"].get<double>() * part["weight"].get<double>(), 1e-5);
      sum += part["contribution"].get<double>();
    }
    EXPECT_EQ(explain["components"].size(), std::size_t{rank::kComponentCount});
    EXPECT_NEAR(sum, hit["score"].get<double>(), 1e-5) << hit.dump();
    EXPECT_NEAR(explain["similarity"].get<double>(), hit["similarity"].get<double>(), 1e-6);
  }
  const json& top = ranked["results"][rank_of(ranked, lifted)];
  EXPECT_GT(top["explain"]["components"]["popularity"]["value"].get<double>(), 0.9);

  // The JSON form takes the same parameters; a price target shows as price_fit.
  auto c = client();
  json body{
      {"image_base64", base64(png)}, {"k", 3}, {"explain", true}, {"price", 30}, {"profile", "default"}};
  auto r = c.Post("/v1/search", auth(), body.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_TRUE(json::parse(r->body)["results"][0]["explain"].contains("price_fit"));
  for (const char* bad :
       {"?depth=-1", "?depth=1001", "?price=-1", "?price_min=50&price_max=10", "?explain=maybe"}) {
    expect_error(c.Post((std::string("/v1/search") + bad).c_str(), auth(), as_string(png), "image/png"), 400,
                 "bad_request");
  }
  expect_error(c.Post("/v1/search?profile=nope", auth(), as_string(png), "image/png"), 404, "not_found");
  // "More like this" is ranked the same way.
  auto similar = c.Get(("/v1/products/" + items_->at(40).id + "/similar?k=5&explain=true").c_str(), auth());
  ASSERT_TRUE(similar);
  ASSERT_EQ(similar->status, 200) << similar->body;
  EXPECT_TRUE(json::parse(similar->body)["results"][0].contains("explain"));
}

TEST_F(RankingApiTest, ProfilesAreCreatedEditedListedAndDeleted) {
  auto c = client();
  auto put = [&](const std::string& name, const json& body) {
    return c.Put(("/v1/profiles/" + name).c_str(), auth(kAdminKey), body.dump(), "application/json");
  };
  auto created = put("clearance", {{"weights", {{"price", 0.8}, {"taste", 0}}}, {"out_of_stock", "hide"}});
  ASSERT_TRUE(created);
  ASSERT_EQ(created->status, 200) << created->body;
  json profile = json::parse(created->body);
  EXPECT_EQ(profile["name"], "clearance");
  EXPECT_EQ(profile["weights"]["price"], 0.8);
  EXPECT_EQ(profile["weights"]["visual"], 1.0);  // left out: the built-in default's
  EXPECT_EQ(profile["out_of_stock"], "hide");
  EXPECT_EQ(profile["candidate_depth"], 100);

  auto got = c.Get("/v1/profiles/clearance", auth());
  ASSERT_TRUE(got);
  EXPECT_EQ(json::parse(got->body), profile);
  auto list = c.Get("/v1/profiles", auth());
  ASSERT_TRUE(list);
  ASSERT_EQ(list->status, 200) << list->body;
  std::vector<std::string> names;
  const json listed = json::parse(list->body);
  for (const auto& p : listed["profiles"]) names.push_back(p["name"]);
  EXPECT_EQ(names, (std::vector<std::string>{"default", "visual", "clearance"})) << list->body;

  // Searching with it hides what is out of stock.
  json hidden = search_png(read_bytes(items_->at(50).image), "?k=100&profile=clearance&explain=true");
  for (const auto& hit : hidden["results"]) EXPECT_GT(hit["stock"].get<int>(), 0) << hit.dump();

  expect_error(put("clearance", {{"weights", {{"popularty", 1}}}}), 400, "bad_request");
  expect_error(put("clearance", {{"candidate_depth", 0}}), 400, "bad_request");
  expect_error(put("visual", json::object()), 400, "bad_request");
  expect_error(put("has%20space", json::object()), 400, "bad_request");
  expect_error(c.Put("/v1/profiles/x", auth(), "{}", "application/json"), 403, "forbidden");

  auto edited = put("default", {{"weights", {{"popularity", 0.9}}}});
  ASSERT_TRUE(edited);
  EXPECT_EQ(edited->status, 200);
  EXPECT_EQ(json::parse(c.Get("/v1/profiles/default", auth())->body)["weights"]["popularity"], 0.9);
  auto reset = c.Delete("/v1/profiles/default", auth(kAdminKey));
  ASSERT_TRUE(reset);
  EXPECT_EQ(reset->status, 200);
  EXPECT_EQ(json::parse(c.Get("/v1/profiles/default", auth())->body)["weights"]["popularity"], 0.4);

  auto deleted = c.Delete("/v1/profiles/clearance", auth(kAdminKey));
  ASSERT_TRUE(deleted);
  EXPECT_EQ(deleted->status, 200);
  expect_error(c.Get("/v1/profiles/clearance", auth()), 404, "not_found");
  expect_error(c.Delete("/v1/profiles/clearance", auth(kAdminKey)), 404, "not_found");
  expect_error(c.Delete("/v1/profiles/visual", auth(kAdminKey)), 400, "bad_request");
}

TEST_F(RankingApiTest, DeletingAUserForgetsTheirEventsAndTaste) {
  const Bytes png = read_bytes(items_->at(60).image);
  json visual = search_png(png, "?k=20&profile=visual");
  std::string jsonl;
  for (std::size_t i = 15; i < 20; ++i) {
    jsonl += json{{"type", "add_to_cart"},
                  {"product_id", visual["results"][i]["product_id"]},
                  {"user_id", "forget-me"}}
                 .dump() +
             "\n";
  }
  EXPECT_EQ(post_events(jsonl, "application/x-ndjson")["accepted"], 5);
  auto c = client();
  auto user = c.Get("/v1/users/forget-me", auth(kAdminKey));
  ASSERT_TRUE(user);
  ASSERT_EQ(user->status, 200);
  EXPECT_EQ(json::parse(user->body), (json{{"user_id", "forget-me"}, {"events", 5}, {"has_taste", true}}));
  json personal = search_png(png, "?k=20&user=forget-me&explain=true");
  bool tasted = false;
  for (const auto& hit : personal["results"]) tasted = tasted || hit["explain"].contains("taste_similarity");
  EXPECT_TRUE(tasted);
  expect_error(c.Get("/v1/users/forget-me", auth()), 403, "forbidden");

  auto forgotten = c.Delete("/v1/users/forget-me", auth(kAdminKey));
  ASSERT_TRUE(forgotten);
  EXPECT_EQ(forgotten->status, 200) << forgotten->body;
  expect_error(c.Get("/v1/users/forget-me", auth(kAdminKey)), 404, "not_found");
  expect_error(c.Delete("/v1/users/forget-me", auth(kAdminKey)), 404, "not_found");
  json after = search_png(png, "?k=20&user=forget-me&explain=true");
  for (const auto& hit : after["results"]) {
    EXPECT_FALSE(hit["explain"].contains("taste_similarity")) << hit.dump();
    EXPECT_EQ(hit["explain"]["components"]["popularity"]["value"], 0.0) << hit.dump();
  }
}

TEST_F(RankingApiTest, PriceAndStockChangesByPutShowInTheNextSearch) {
  const auto& item = items_->at(70);
  const Bytes png = read_bytes(item.image);
  auto c = client();
  auto put = [&](double price, int stock) {
    json body{{"title", "Runner"},
              {"category", item.category},
              {"price", price},
              {"stock", stock},
              {"rating", 4.5},
              {"rating_count", 10},
              {"images_base64", {base64(png)}}};
    auto r = c.Put(("/v1/products/" + item.id).c_str(), auth(kAdminKey), body.dump(), "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
  };
  const std::string hide = json{{"out_of_stock", "hide"}}.dump();
  ASSERT_EQ(c.Put("/v1/profiles/in-stock", auth(kAdminKey), hide, "application/json")->status, 200);

  put(10, 5);
  json found = search_png(png, "?k=5&profile=in-stock&explain=true");
  ASSERT_EQ(rank_of(found, item.id), 0u) << found.dump();
  EXPECT_EQ(found["results"][0]["price"], 10.0);
  put(99, 0);  // the same photo: stored again by hash, not re-embedded
  found = search_png(png, "?k=5&profile=in-stock");
  EXPECT_EQ(rank_of(found, item.id), found["results"].size()) << "out of stock and hidden: " << found.dump();
  found = search_png(png, "?k=100&explain=true");
  ASSERT_LT(rank_of(found, item.id), 100u);
  const json& hit = found["results"][rank_of(found, item.id)];
  EXPECT_EQ(hit["price"], 99.0);
  EXPECT_EQ(hit["explain"]["components"]["stock"]["value"], -1.0);
}

}  // namespace
}  // namespace lookalike::server

namespace lookalike::server {
namespace {

// --- model switches over the API -------------------------------------------

// A server of its own: switching models must not disturb the shared one.
TEST_F(ServerTest, ReindexSwitchesModelsInTheBackgroundAndRollsBack) {
  search::OpenOptions open;
  open.model = search::kPixelsModel;
  const fs::path dir = root_->path() / "reindex-data";
  auto engine = std::shared_ptr<search::Engine>(search::Engine::open(dir, open));
  engine->ingest(shared_demo_catalog() / "catalog.jsonl", {});
  ServerOptions o = options();
  o.data_dir = dir;
  Server server(o, engine);
  server.start();
  auto c = client(server.port());
  const std::string pixels = engine->info().model;
  const std::string photo = as_string(read_bytes(items_->at(42).image));
  auto search = [&] {
    auto r = c.Post("/v1/search?k=3&profile=visual", auth(), photo, "image/png");
    EXPECT_TRUE(r && r->status == 200);
    return r && r->status == 200 ? json::parse(r->body) : json::object();
  };
  auto wait_idle = [&] {
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    json status;
    do {
      auto r = c.Get("/v1/admin/reindex", auth(kAdminKey));
      EXPECT_TRUE(r && r->status == 200);
      if (!r || r->status != 200) return json::object();
      status = json::parse(r->body);
      if (!status["running"].get<bool>()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    } while (Clock::now() < deadline);
    return status;
  };
  EXPECT_EQ(search()["model"], pixels);

  // Writes need the admin key; bad requests and bad files are answered at once.
  expect_error(c.Post("/v1/admin/reindex", auth(), R"({"rollback": true})", "application/json"), 403,
               "forbidden");
  expect_error(c.Post("/v1/admin/reindex", auth(kAdminKey), R"({})", "application/json"), 400, "bad_request");
  expect_error(c.Post("/v1/admin/reindex", auth(kAdminKey), R"({"model": 7})", "application/json"), 400,
               "bad_request");
  expect_error(c.Post("/v1/admin/reindex", auth(kAdminKey), R"({"rollback": true})", "application/json"), 404,
               "not_found");
  const fs::path garbage = root_->path() / "garbage.lkm";
  testing::write_text(garbage, "not a model");
  auto bad = c.Post("/v1/admin/reindex", auth(kAdminKey), json{{"model", garbage.string()}}.dump(),
                    "application/json");
  expect_error(bad, 400, "bad_request");
  EXPECT_NE(bad->body.find("garbage.lkm"), std::string::npos) << bad->body;

  const std::string shipped = search::shipped_model_path().string();
  auto started =
      c.Post("/v1/admin/reindex", auth(kAdminKey), json{{"model", shipped}}.dump(), "application/json");
  ASSERT_TRUE(started);
  ASSERT_EQ(started->status, 202) << started->body;
  EXPECT_EQ(started->get_header_value("Location"), "/v1/admin/reindex");
  // Searches keep answering while it runs, each from one model.
  for (int i = 0; i < 5; ++i) {
    json r = search();
    EXPECT_TRUE(r["model"] == pixels || testing::contains(r["model"].get<std::string>(), "fused/"))
        << r.dump();
  }
  json status = wait_idle();
  EXPECT_TRUE(testing::contains(status["model"].get<std::string>(), "fused/")) << status.dump();
  EXPECT_EQ(status["previous_model"], pixels);
  EXPECT_EQ(status["images_done"], status["images_total"]);
  EXPECT_EQ(status["images_total"], items_->size());
  EXPECT_FALSE(status.contains("last_error")) << status.dump();
  json after = search();
  EXPECT_EQ(after["model"], status["model"]);
  EXPECT_EQ(after["results"][0]["product_id"], items_->at(42).id);
  // The fused default says what it is made of: the category and the exact-item part.
  ASSERT_EQ(status["model_parts"].size(), 2u) << status.dump();
  EXPECT_TRUE(testing::contains(status["model_parts"][0].get<std::string>(), "weight 1 exact 0"))
      << status.dump();
  EXPECT_TRUE(testing::contains(status["model_parts"][1].get<std::string>(), "weight 1 exact 1"))
      << status.dump();
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(
      metrics->body.find("lookalike_model_info{model=\"" + status["model"].get<std::string>() + "\"} 1"),
      std::string::npos);
  EXPECT_NE(metrics->body.find("lookalike_reindex_running 0"), std::string::npos);

  auto back = c.Post("/v1/admin/reindex", auth(kAdminKey), R"({"rollback": true})", "application/json");
  ASSERT_TRUE(back);
  ASSERT_EQ(back->status, 202) << back->body;
  status = wait_idle();
  EXPECT_EQ(status["model"], pixels);
  EXPECT_EQ(status["model_parts"], json::array());
  EXPECT_EQ(search()["model"], pixels);
  server.stop();
}

}  // namespace
}  // namespace lookalike::server

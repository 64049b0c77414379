// The crash harness: proves the durability promise of `lookalike serve` by killing it.
//
// It builds a small catalog whose photos are all distinct, starts the real server on a
// data folder, and has clients add, update and delete products over the API (PUT and
// DELETE /v1/products/{id}, and bulk imports through POST /v1/imports) while recording
// every write the server acknowledged. At a random moment the server gets SIGKILL (now
// and then while it is still starting). After each restart every acknowledged product
// must be there with its last acknowledged metadata and image, its own photo must find
// it at rank 1, deleted products must stay gone, and the store and the index must agree
// (/metrics: products, images and index vectors). A write that was in flight when the
// server died may have happened or not; either outcome is accepted, and whichever it
// was must then persist like any other. After the last cycle the server is stopped with
// SIGTERM (it must exit 0) and `lookalike info` checks the folder offline.
//
// Usage: crash_test --lookalike build/lookalike [--cycles 100] [--seed 1] [--work DIR]
// Prints progress on stderr and one JSON summary line on stdout; exit 0 only when no
// acknowledged write was lost and every check passed.
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/files.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

const std::string kAdminKey = "crash-test-admin-key";
const std::string kSearchKey = "crash-test-search-key";

struct Options {
  std::string lookalike;
  int cycles = 100;
  unsigned seed = 1;
  fs::path work;
  bool keep = false;
  std::string model;       // empty: the shipped model
  int base_products = 40;  // ingested by the CLI before the first start, never changed
  int clients = 3;         // PUT/DELETE clients, each with its own products
  int products_per_client = 8;
  int bulk_products = 8;          // changed only by bulk imports
  int min_run_ms = 100;           // the server is killed this long after the writes start...
  int max_run_ms = 1500;          // ...at most
  int startup_kill_percent = 15;  // cycles where it is killed while still starting
};

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

[[noreturn]] void die(const std::string& message) {
  std::cerr << "crash_test: " << message << "\n";
  std::exit(2);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// Runs the lookalike binary to completion; stdout is returned, stderr goes to the log.
struct RunResult {
  int status = -1;
  std::string out;
};

RunResult run_cli(const Options& o, const std::vector<std::string>& args, const fs::path& log) {
  fs::path out_file = o.work / "cli-stdout.txt";
  pid_t pid = ::fork();
  if (pid < 0) die("fork failed");
  if (pid == 0) {
    int out = ::open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int in = ::open("/dev/null", O_RDONLY);
    if (out < 0 || err < 0 || in < 0) ::_exit(126);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    std::vector<std::string> all{o.lookalike};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  RunResult r;
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_text(out_file);
  return r;
}

std::string base64(const std::string& bytes) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    unsigned v =
        (unsigned char)bytes[i] << 16 | (unsigned char)bytes[i + 1] << 8 | (unsigned char)bytes[i + 2];
    out += {table[v >> 18], table[(v >> 12) & 63], table[(v >> 6) & 63], table[v & 63]};
  }
  if (i + 1 == bytes.size()) {
    unsigned v = (unsigned char)bytes[i] << 16;
    out += {table[v >> 18], table[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    unsigned v = (unsigned char)bytes[i] << 16 | (unsigned char)bytes[i + 1] << 8;
    out += {table[v >> 18], table[(v >> 12) & 63], table[(v >> 6) & 63], '='};
  }
  return out;
}

// ---- the photos ----

struct Photo {
  fs::path file;
  std::string bytes;
  std::string sha256;
};

// Demo-catalog photos whose own search finds them first with a clear margin, so that
// "its own photo finds it at rank 1" is never decided by a tie: byte-identical photos
// are dropped, and so are photos the model cannot tell from another one in the pool.
std::vector<Photo> distinct_photos(const Options& o, std::size_t wanted, const fs::path& log) {
  const fs::path pool = o.work / "pool";
  const std::size_t candidates = wanted + wanted / 2 + 20;
  auto r = run_cli(
      o, {"demo-catalog", "--out", pool.string(), "--products", std::to_string(candidates), "--queries", "1"},
      log);
  if (r.status != 0) die("demo-catalog failed; see " + log.string());
  std::vector<Photo> photos;
  std::set<std::string> seen;
  std::ofstream catalog(o.work / "probe.jsonl");
  for (std::size_t i = 0; i < candidates; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "%05zu.png", i);
    Photo p;
    p.file = pool / "images" / name;
    p.bytes = read_text(p.file);
    p.sha256 = lookalike::sha256_hex(p.bytes.data(), p.bytes.size());
    if (p.bytes.empty() || !seen.insert(p.sha256).second) continue;
    catalog << json{{"id", "probe-" + std::to_string(photos.size())}, {"images", {p.file.string()}}}.dump()
            << "\n";
    photos.push_back(std::move(p));
  }
  catalog.close();
  // Absolute paths are refused by the catalog reader: write the probe next to the pool.
  std::ofstream relative(pool / "probe.jsonl");
  std::ofstream queries(o.work / "probe-queries.txt");
  for (std::size_t i = 0; i < photos.size(); ++i) {
    relative << json{{"id", "probe-" + std::to_string(i)},
                     {"images", {fs::relative(photos[i].file, pool).string()}}}
                    .dump()
             << "\n";
    queries << photos[i].file.string() << "\n";
  }
  relative.close();
  queries.close();
  std::vector<std::string> ingest{"ingest", "--data", (o.work / "probe").string(), "--catalog",
                                  (pool / "probe.jsonl").string()};
  if (!o.model.empty()) ingest.insert(ingest.end(), {"--model", o.model});
  if (run_cli(o, ingest, log).status != 0) die("probe ingest failed; see " + log.string());
  r = run_cli(o,
              {"search", "--data", (o.work / "probe").string(), "--queries",
               (o.work / "probe-queries.txt").string(), "--k", "2", "--json"},
              log);
  if (r.status != 0) die("probe search failed; see " + log.string());
  std::vector<Photo> kept;
  std::istringstream lines(r.out);
  std::string line;
  for (std::size_t i = 0; std::getline(lines, line) && i < photos.size(); ++i) {
    json result = json::parse(line);
    const auto& hits = result["results"];
    if (hits.size() < 2 || hits[0]["product_id"] != "probe-" + std::to_string(i)) continue;
    if (hits[0]["score"].get<double>() - hits[1]["score"].get<double>() < 1e-4) continue;
    kept.push_back(std::move(photos[i]));
    if (kept.size() == wanted) break;
  }
  if (kept.size() < wanted) die("only " + std::to_string(kept.size()) + " distinct photos found");
  return kept;
}

// ---- what was acknowledged ----

struct State {
  bool exists = false;
  int rev = 0;
  std::string title;
  double price = 0;
  std::int64_t stock = 0;
  int photo = -1;  // index into the photos

  bool operator==(const State& o) const {
    return exists == o.exists && (!exists || (rev == o.rev && title == o.title && price == o.price &&
                                              stock == o.stock && photo == o.photo));
  }
};

std::string describe(const State& s) {
  if (!s.exists) return "absent";
  return "rev " + std::to_string(s.rev) + " \"" + s.title + "\" price " + std::to_string(s.price) +
         " stock " + std::to_string(s.stock) + " photo " + std::to_string(s.photo);
}

struct Tracked {
  State acked;                   // the last state the server acknowledged (or verified after a crash)
  std::vector<State> uncertain;  // writes sent after it without an acknowledgement (in flight at the kill)
};

struct Stats {
  std::atomic<long> acked_puts{0}, acked_deletes{0}, acked_import_lines{0}, imports_done{0};
  std::atomic<long> unacknowledged{0}, refused{0};
  long uncertain_applied = 0, uncertain_not_applied = 0;
  long losses = 0, checks = 0, startup_kills = 0, kills = 0;
  double max_sigterm_seconds = 0;
};

class Ledger {
 public:
  void set(const std::string& id, State s) {
    std::lock_guard<std::mutex> lock(mutex_);
    tracked_[id].acked = std::move(s);
  }
  State acked(const std::string& id) {
    std::lock_guard<std::mutex> lock(mutex_);
    return tracked_[id].acked;
  }
  void attempt(const std::string& id, const State& s) {
    std::lock_guard<std::mutex> lock(mutex_);
    tracked_[id].uncertain.push_back(s);
  }
  // The attempt was acknowledged: it is the state now, nothing before it is in doubt.
  void acknowledge(const std::string& id, const State& s) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& t = tracked_[id];
    t.acked = s;
    t.uncertain.clear();
  }
  bool in_doubt(const std::string& id) {
    std::lock_guard<std::mutex> lock(mutex_);
    return !tracked_[id].uncertain.empty();
  }
  std::map<std::string, Tracked> all() {
    std::lock_guard<std::mutex> lock(mutex_);
    return tracked_;
  }
  void resolve(const std::string& id, const State& actual) {
    std::lock_guard<std::mutex> lock(mutex_);
    tracked_[id].acked = actual;
    tracked_[id].uncertain.clear();
  }

 private:
  std::mutex mutex_;
  std::map<std::string, Tracked> tracked_;
};

// ---- the server ----

class Server {
 public:
  Server(const Options& o, const fs::path& data, const fs::path& log) {
    log_ = log;
    std::error_code ec;
    log_offset_ = fs::exists(log, ec) ? fs::file_size(log, ec) : 0;
    pid_ = ::fork();
    if (pid_ < 0) die("fork failed");
    if (pid_ == 0) {
      int err = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      int in = ::open("/dev/null", O_RDONLY);
      if (err < 0 || in < 0) ::_exit(126);
      ::dup2(in, 0);
      ::dup2(err, 1);
      ::dup2(err, 2);
      std::vector<std::string> all{o.lookalike,   "serve",   "--data",       data.string(), "--port",    "0",
                                   "--admin-key", kAdminKey, "--search-key", kSearchKey,    "--threads", "4"};
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    started_ = Clock::now();
  }
  ~Server() { kill(); }

  // Waits for the port in the log and for /readyz; false after timeout_s.
  bool wait_ready(double timeout_s) {
    const std::string marker = "listening on http://127.0.0.1:";
    while (seconds_since(started_) < timeout_s) {
      if (port_ == 0) {
        std::string text = read_text(log_).substr(log_offset_);
        auto at = text.find(marker);
        if (at != std::string::npos) port_ = std::atoi(text.c_str() + at + marker.size());
      }
      if (port_ > 0) {
        httplib::Client c("127.0.0.1", port_);
        c.set_connection_timeout(1);
        auto r = c.Get("/readyz");
        if (r && r->status == 200) return true;
      }
      if (exited()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  bool exited() {
    if (pid_ <= 0) return true;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      pid_ = -1;
      return true;
    }
    return false;
  }
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  // SIGTERM, then the exit status (or -1 if it did not exit within timeout_s) and the time taken.
  std::pair<int, double> terminate(double timeout_s) {
    auto start = Clock::now();
    ::kill(pid_, SIGTERM);
    while (seconds_since(start) < timeout_s) {
      if (exited()) return {status_, seconds_since(start)};
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return {-1, seconds_since(start)};
  }
  int port() const { return port_; }
  std::string log_text() const { return read_text(log_).substr(log_offset_); }

 private:
  fs::path log_;
  std::uintmax_t log_offset_ = 0;
  pid_t pid_ = -1;
  int port_ = 0;
  int status_ = -1;
  Clock::time_point started_;
};

httplib::Headers auth(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }

std::unique_ptr<httplib::Client> client_for(int port) {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
  c->set_connection_timeout(2);
  c->set_read_timeout(30);
  c->set_write_timeout(10);
  return c;
}

// ---- the harness ----

class Harness {
 public:
  explicit Harness(Options o) : o_(std::move(o)), rng_(o_.seed) {}

  int run() {
    const auto start = Clock::now();
    const fs::path log = o_.work / "lookalike.log";
    std::cerr << "crash_test: preparing distinct photos in " << o_.work << "\n";
    const std::size_t per_product = 2;
    const std::size_t movable =
        static_cast<std::size_t>(o_.clients * o_.products_per_client + o_.bulk_products);
    photos_ = distinct_photos(o_, static_cast<std::size_t>(o_.base_products) + movable * per_product, log);
    prepare_data(per_product, log);

    for (int cycle = 1; cycle <= o_.cycles; ++cycle) {
      if (!run_cycle(cycle, log)) break;
      if (cycle % 10 == 0 || cycle == o_.cycles) {
        std::cerr << "crash_test: cycle " << cycle << "/" << o_.cycles << ": " << stats_.kills << " kills ("
                  << stats_.startup_kills << " while starting), acknowledged " << acknowledged()
                  << " writes, losses " << stats_.losses << ", " << static_cast<int>(seconds_since(start))
                  << " s\n";
      }
    }
    bool final_ok = stats_.losses == 0 && failures_.empty() && final_checks(log);
    json summary{{"cycles", o_.cycles},
                 {"kills", stats_.kills},
                 {"kills_while_starting", stats_.startup_kills},
                 {"acknowledged_writes", acknowledged()},
                 {"acknowledged_puts", stats_.acked_puts.load()},
                 {"acknowledged_deletes", stats_.acked_deletes.load()},
                 {"acknowledged_import_lines", stats_.acked_import_lines.load()},
                 {"imports_done", stats_.imports_done.load()},
                 {"in_flight_at_kill", stats_.unacknowledged.load()},
                 {"in_flight_found_applied", stats_.uncertain_applied},
                 {"in_flight_found_not_applied", stats_.uncertain_not_applied},
                 {"refused_writes", stats_.refused.load()},
                 {"product_checks", stats_.checks},
                 {"losses", stats_.losses},
                 {"failures", failures_},
                 {"sigterm_exit_seconds", stats_.max_sigterm_seconds},
                 {"seconds", seconds_since(start)},
                 {"seed", o_.seed},
                 {"ok", final_ok}};
    std::cout << summary.dump() << std::endl;
    if (final_ok && !o_.keep) {
      std::error_code ec;
      fs::remove_all(o_.work, ec);
    } else if (!final_ok) {
      std::cerr << "crash_test: FAILED; the work folder is kept: " << o_.work << "\n";
    }
    return final_ok ? 0 : 1;
  }

 private:
  long acknowledged() const { return stats_.acked_puts + stats_.acked_deletes + stats_.acked_import_lines; }

  void prepare_data(std::size_t per_product, const fs::path& log) {
    data_ = o_.work / "data";
    // The base catalog: ingested by the CLI, never changed afterwards.
    const fs::path base = o_.work / "base";
    fs::create_directories(base / "images");
    std::ofstream catalog(base / "catalog.jsonl");
    std::size_t next = 0;
    for (int i = 0; i < o_.base_products; ++i, ++next) {
      const std::string id = "base-" + std::to_string(i);
      const std::string file = "images/" + std::to_string(next) + ".png";
      fs::copy_file(photos_[next].file, base / file);
      State s{true, 0, "base product " + std::to_string(i), 10.0 + i, i, static_cast<int>(next)};
      catalog << json{{"id", id},
                      {"title", s.title},
                      {"price", s.price},
                      {"stock", s.stock},
                      {"attributes", {{"rev", "0"}}},
                      {"images", {file}}}
                     .dump()
              << "\n";
      ledger_.set(id, s);
    }
    catalog.close();
    std::vector<std::string> ingest{"ingest", "--data", data_.string(), "--catalog",
                                    (base / "catalog.jsonl").string()};
    if (!o_.model.empty()) ingest.insert(ingest.end(), {"--model", o_.model});
    if (run_cli(o_, ingest, log).status != 0) die("base ingest failed; see " + log.string());
    // Each client and the bulk importer own their products, each product its own photos.
    for (int c = 0; c < o_.clients; ++c) {
      for (int j = 0; j < o_.products_per_client; ++j) {
        const std::string id = "c" + std::to_string(c) + "-" + std::to_string(j);
        owned_[c].push_back(id);
        for (std::size_t k = 0; k < per_product; ++k) own_photos_[id].push_back(static_cast<int>(next++));
        ledger_.set(id, State{});
      }
    }
    // Bulk imports read their photos from DIR/imports/ (docs/API.md).
    fs::create_directories(data_ / "imports" / "photos");
    for (int j = 0; j < o_.bulk_products; ++j) {
      const std::string id = "bulk-" + std::to_string(j);
      bulk_ids_.push_back(id);
      for (std::size_t k = 0; k < per_product; ++k) {
        fs::copy_file(photos_[next].file, data_ / "imports" / "photos" / (std::to_string(next) + ".png"));
        own_photos_[id].push_back(static_cast<int>(next++));
      }
      ledger_.set(id, State{});
    }
  }

  // One start, check, write and kill. False when the server could not be started at all.
  bool run_cycle(int cycle, const fs::path& log) {
    Server server(o_, data_, log);
    std::uniform_int_distribution<int> percent(0, 99);
    if (cycle > 1 && percent(rng_) < o_.startup_kill_percent) {
      // Killed while opening the folder: maybe in the middle of rebuilding the index.
      std::uniform_int_distribution<int> delay(0, 1500);
      std::this_thread::sleep_for(std::chrono::milliseconds(delay(rng_)));
      server.kill();
      ++stats_.kills;
      ++stats_.startup_kills;
      return true;
    }
    if (!server.wait_ready(120)) {
      failures_.push_back("cycle " + std::to_string(cycle) +
                          ": the server did not become ready: " + server.log_text().substr(0, 2000));
      return false;
    }
    verify(server.port(), cycle, /*everything=*/cycle % 10 == 1);
    if (stats_.losses > 0) return false;

    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int c = 0; c < o_.clients; ++c) {
      threads.emplace_back([&, c, seed = rng_()] { put_client(server.port(), c, seed, stop); });
    }
    threads.emplace_back([&, seed = rng_()] { bulk_client(server.port(), seed, stop); });
    std::uniform_int_distribution<int> run_ms(o_.min_run_ms, o_.max_run_ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(run_ms(rng_)));
    server.kill();
    ++stats_.kills;
    stop = true;
    for (auto& t : threads) t.join();
    return true;
  }

  State next_state(const std::string& id, std::mt19937& rng, int rev) {
    const auto& mine = own_photos_.at(id);
    State s;
    s.exists = true;
    s.rev = rev;
    s.title = id + " rev " + std::to_string(rev);
    s.price = std::uniform_int_distribution<int>(100, 99999)(rng) / 100.0;
    s.stock = std::uniform_int_distribution<int>(0, 500)(rng);
    s.photo = mine[std::uniform_int_distribution<std::size_t>(0, mine.size() - 1)(rng)];
    return s;
  }

  void put_client(int port, int c, unsigned seed, std::atomic<bool>& stop) {
    std::mt19937 rng(seed);
    auto http = client_for(port);
    const auto& mine = owned_.at(c);
    while (!stop) {
      const std::string id = mine[std::uniform_int_distribution<std::size_t>(0, mine.size() - 1)(rng)];
      if (ledger_.in_doubt(id)) {  // refused earlier: left alone until the next check
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        continue;
      }
      const State old = ledger_.acked(id);
      const bool remove = old.exists && std::uniform_int_distribution<int>(0, 99)(rng) < 20;
      State next = remove ? State{} : next_state(id, rng, ++revision_);
      ledger_.attempt(id, next);
      json body;
      if (!remove) {
        body = {{"title", next.title},
                {"price", next.price},
                {"stock", next.stock},
                {"attributes", {{"rev", std::to_string(next.rev)}}},
                {"images_base64", {base64(photos_[static_cast<std::size_t>(next.photo)].bytes)}}};
      }
      const std::string path = "/v1/products/" + id;
      auto r = remove ? http->Delete(path.c_str(), auth(kAdminKey))
                      : http->Put(path.c_str(), auth(kAdminKey), body.dump(), "application/json");
      if (!r) {  // the server died with this write in flight
        ++stats_.unacknowledged;
        return;
      }
      if (r->status / 100 == 2) {
        ledger_.acknowledge(id, next);
        ++(remove ? stats_.acked_deletes : stats_.acked_puts);
      } else {
        ++stats_.refused;  // stays in doubt until the next check decides
      }
    }
  }

  void bulk_client(int port, unsigned seed, std::atomic<bool>& stop) {
    std::mt19937 rng(seed);
    auto http = client_for(port);
    while (!stop) {
      std::string body;
      std::vector<std::pair<std::string, State>> lines;
      for (const auto& id : bulk_ids_) {
        if (ledger_.in_doubt(id)) continue;
        const State old = ledger_.acked(id);
        if (std::uniform_int_distribution<int>(0, 99)(rng) < 30) continue;  // not in this import
        const bool remove = old.exists && std::uniform_int_distribution<int>(0, 99)(rng) < 15;
        State next = remove ? State{} : next_state(id, rng, ++revision_);
        if (remove) {
          body += json{{"id", id}, {"deleted", true}}.dump() + "\n";
        } else {
          body += json{{"id", id},
                       {"title", next.title},
                       {"price", next.price},
                       {"stock", next.stock},
                       {"attributes", {{"rev", std::to_string(next.rev)}}},
                       {"images", {"photos/" + std::to_string(next.photo) + ".png"}}}
                      .dump() +
                  "\n";
        }
        lines.emplace_back(id, next);
      }
      if (lines.empty()) continue;
      for (const auto& [id, s] : lines) ledger_.attempt(id, s);
      auto r = http->Post("/v1/imports", auth(kAdminKey), body, "application/x-ndjson");
      if (!r) {
        stats_.unacknowledged += static_cast<long>(lines.size());
        return;
      }
      if (r->status != 202) {
        ++stats_.refused;
        continue;
      }
      const std::string status_url = json::parse(r->body)["status_url"];
      for (;;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        auto s = http->Get(status_url.c_str(), auth(kAdminKey));
        if (!s) {
          stats_.unacknowledged += static_cast<long>(lines.size());
          return;
        }
        json status = json::parse(s->body);
        const std::string state = status.value("state", "");
        if (state == "queued" || state == "running") continue;
        if (state == "done" && status.value("skipped", 1) == 0) {
          for (const auto& [id, next] : lines) ledger_.acknowledge(id, next);
          stats_.acked_import_lines += static_cast<long>(lines.size());
          ++stats_.imports_done;
        } else {
          ++stats_.refused;
        }
        break;
      }
    }
  }

  // What the server holds for a product, or nothing (and a failure noted) when it cannot be read.
  std::optional<State> fetch(httplib::Client& http, const std::string& id, std::string& image_sha) {
    auto r = http.Get(("/v1/products/" + id).c_str(), auth(kSearchKey));
    if (!r) return std::nullopt;
    State s;
    if (r->status == 404) return s;
    if (r->status != 200) return std::nullopt;
    json p = json::parse(r->body);
    s.exists = true;
    s.title = p.value("title", "");
    s.price = p.value("price", -1.0);
    s.stock = p.value("stock", std::int64_t{-1});
    s.rev = std::atoi(p["attributes"].value("rev", "-1").c_str());
    if (p["image_urls"].size() != 1) return s;
    auto img = http.Get(p["image_urls"][0].get<std::string>().c_str(), auth(kSearchKey));
    if (!img || img->status != 200) return s;
    image_sha = lookalike::sha256_hex(img->body.data(), img->body.size());
    return s;
  }

  void loss(const std::string& what) {
    ++stats_.losses;
    failures_.push_back(what);
    std::cerr << "crash_test: LOSS: " << what << "\n";
  }

  void verify(int port, int cycle, bool everything) {
    auto http = client_for(port);
    const std::string when = "after restart " + std::to_string(cycle) + ": ";
    long products = 0;
    for (auto& [id, tracked] : ledger_.all()) {
      const bool sample = std::uniform_int_distribution<int>(0, 99)(rng_) < 20;
      if (!everything && tracked.uncertain.empty() && id.rfind("base-", 0) == 0 && !sample) {
        products += tracked.acked.exists;
        continue;
      }
      ++stats_.checks;
      std::string image_sha;
      auto got = fetch(*http, id, image_sha);
      if (!got) {
        loss(when + id + ": cannot be read");
        continue;
      }
      // The photo is not part of the metadata: find it by the bytes served.
      if (got->exists) {
        for (std::size_t i = 0; i < photos_.size(); ++i) {
          if (photos_[i].sha256 == image_sha) got->photo = static_cast<int>(i);
        }
      }
      if (*got == tracked.acked) {
        if (!tracked.uncertain.empty()) ++stats_.uncertain_not_applied;
      } else if (std::find(tracked.uncertain.begin(), tracked.uncertain.end(), *got) !=
                 tracked.uncertain.end()) {
        ++stats_.uncertain_applied;
      } else {
        loss(
            when + id + " is " + describe(*got) + ", expected " + describe(tracked.acked) +
            (tracked.uncertain.empty() ? "" : " or an unacknowledged " + describe(tracked.uncertain.back())));
        continue;
      }
      ledger_.resolve(id, *got);
      products += got->exists;
      // Its own photo finds it first; a deleted product's last photo never finds it.
      const int photo = got->exists ? got->photo : tracked.acked.photo >= 0 ? tracked.acked.photo : -1;
      if (photo < 0) continue;
      // profile=visual: by look alone, so that business signals cannot reorder the results
      // (a server without ranking profiles ignores the parameter).
      auto r = http->Post("/v1/search?k=1&fields=title&profile=visual", auth(kSearchKey),
                          photos_[static_cast<std::size_t>(photo)].bytes, "image/png");
      if (!r || r->status != 200) {
        loss(when + "search with the photo of " + id + " failed");
        continue;
      }
      json results = json::parse(r->body)["results"];
      const bool first = !results.empty() && results[0]["product_id"] == id;
      if (got->exists && !first) loss(when + id + " is not found at rank 1 by its own photo: " + r->body);
      if (!got->exists && first) loss(when + "deleted " + id + " is still found by its photo");
    }
    // The store and the index agree, and hold exactly the acknowledged products.
    auto m = http->Get("/metrics");
    if (!m || m->status != 200) {
      loss(when + "/metrics failed");
      return;
    }
    auto gauge = [&](const std::string& name) {
      auto at = m->body.find("\n" + name + " ");
      return at == std::string::npos ? -1L : std::atol(m->body.c_str() + at + name.size() + 2);
    };
    const long store_products = gauge("lookalike_catalog_products");
    const long store_images = gauge("lookalike_catalog_images");
    const long vectors = gauge("lookalike_index_vectors");
    if (store_products != products || store_images != products || vectors != products) {
      loss(when + "expected " + std::to_string(products) + " products with one image each; the store has " +
           std::to_string(store_products) + " products and " + std::to_string(store_images) +
           " images, the index " + std::to_string(vectors) + " vectors");
    }
  }

  bool final_checks(const fs::path& log) {
    Server server(o_, data_, log);
    if (!server.wait_ready(120)) {
      failures_.push_back("the final start failed: " + server.log_text().substr(0, 2000));
      return false;
    }
    verify(server.port(), o_.cycles + 1, /*everything=*/true);
    auto [status, seconds] = server.terminate(30);
    stats_.max_sigterm_seconds = seconds;
    if (status != 0) failures_.push_back("SIGTERM: exit status " + std::to_string(status));
    long products = 0;
    for (auto& [id, t] : ledger_.all()) products += t.acked.exists;
    auto info = run_cli(o_, {"info", "--data", data_.string(), "--json"}, log);
    if (info.status != 0) {
      failures_.push_back("lookalike info failed");
    } else {
      json i = json::parse(info.out);
      if (i["products"] != products || i["images"] != products || i["index_vectors"] != products) {
        failures_.push_back("lookalike info disagrees: " + info.out + " expected " +
                            std::to_string(products));
      }
    }
    return stats_.losses == 0 && failures_.empty();
  }

  Options o_;
  std::mt19937 rng_;
  fs::path data_;
  std::vector<Photo> photos_;
  std::map<int, std::vector<std::string>> owned_;
  std::map<std::string, std::vector<int>> own_photos_;
  std::vector<std::string> bulk_ids_;
  std::atomic<int> revision_{0};
  Ledger ledger_;
  Stats stats_;
  std::vector<std::string> failures_;
};

void usage() {
  std::cerr << "usage: crash_test --lookalike PATH [--cycles N] [--seed S] [--work DIR] [--keep]\n"
               "                  [--model FILE|pixels] [--min-run-ms MS] [--max-run-ms MS]\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--lookalike")
      o.lookalike = value();
    else if (a == "--cycles")
      o.cycles = std::atoi(value().c_str());
    else if (a == "--seed")
      o.seed = static_cast<unsigned>(std::atol(value().c_str()));
    else if (a == "--work")
      o.work = value();
    else if (a == "--keep")
      o.keep = true;
    else if (a == "--model")
      o.model = value();
    else if (a == "--min-run-ms")
      o.min_run_ms = std::atoi(value().c_str());
    else if (a == "--max-run-ms")
      o.max_run_ms = std::atoi(value().c_str());
    else
      usage();
  }
  if (o.lookalike.empty() || o.cycles < 1 || o.min_run_ms < 0 || o.max_run_ms < o.min_run_ms) usage();
  o.lookalike = fs::absolute(o.lookalike).string();
  if (o.work.empty()) {
    std::string pattern = (fs::temp_directory_path() / "lookalike-crash-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) die("cannot create a work folder");
    o.work = pattern;
  } else {
    std::error_code ec;
    if (fs::exists(o.work, ec) && !fs::is_empty(o.work, ec)) die(o.work.string() + " is not empty");
    fs::create_directories(o.work);
  }
  o.work = fs::absolute(o.work);
  ::signal(SIGPIPE, SIG_IGN);
  return Harness(o).run();
}

// End-to-end: the real `lookalike serve` process, its start-up messages, its keys
// file and its shutdown on SIGTERM / SIGINT with a request in flight.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "search/demo_catalog.h"
#include "search/engine.h"
#include "support/test_support.h"

namespace {

namespace fs = std::filesystem;
using lookalike::testing::TempDir;
using Clock = std::chrono::steady_clock;

// The server process, with its stderr read line by line.
class ServeProcess {
 public:
  explicit ServeProcess(const std::vector<std::string>& args) {
    int pipe_fds[2];
    if (::pipe(pipe_fds) != 0) throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(pipe_fds[1], STDERR_FILENO);
      ::close(pipe_fds[0]);
      std::vector<char*> argv;
      std::vector<std::string> all = {LOOKALIKE_BINARY};
      all.insert(all.end(), args.begin(), args.end());
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(pipe_fds[1]);
    err_ = pipe_fds[0];
  }
  ~ServeProcess() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(err_);
  }

  // Reads stderr until `text` appears; false after timeout_ms or at EOF.
  bool wait_for(const std::string& text, int timeout_ms) {
    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (stderr_.find(text) == std::string::npos) {
      int left = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
      if (left <= 0) return false;
      pollfd p{err_, POLLIN, 0};
      if (::poll(&p, 1, left) <= 0) return false;
      char buf[4096];
      ssize_t n = ::read(err_, buf, sizeof buf);
      if (n <= 0) return false;
      stderr_.append(buf, static_cast<std::size_t>(n));
    }
    return true;
  }

  int port() const {
    auto at = stderr_.find("listening on http://127.0.0.1:");
    return at == std::string::npos ? -1 : std::atoi(stderr_.c_str() + at + 30);
  }

  // Exit status, or -1 if the process is still running after timeout_ms.
  int wait_exit(int timeout_ms) {
    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (Clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

  void signal(int sig) { ::kill(pid_, sig); }
  const std::string& err() const { return stderr_; }

 private:
  pid_t pid_ = -1;
  int err_ = -1;
  bool exited_ = false;
  std::string stderr_;
};

int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string read_all(int fd, int timeout_ms) {
  std::string out;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[65536];
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

class ServeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new TempDir();
    lookalike::demo::write_demo_catalog(root_->path() / "demo",
                                        {.dataset_dir = {}, .max_products = 200, .max_queries = 5});
    lookalike::search::OpenOptions open;
    open.model = lookalike::search::kPixelsModel;
    auto engine = lookalike::search::Engine::open(root_->path() / "data", open);
    engine->ingest(root_->path() / "demo" / "catalog.jsonl", {});
  }
  static void TearDownTestSuite() { delete root_; }
  static TempDir* root_;
};

TempDir* ServeTest::root_ = nullptr;

TEST_F(ServeTest, GeneratesKeysOnceAndStopsOnSigtermAfterTheRequestInFlight) {
  ::unsetenv("LOOKALIKE_ADMIN_KEY");
  ::unsetenv("LOOKALIKE_SEARCH_KEY");
  const fs::path data = root_->path() / "data";
  std::string search_key;
  {
    ServeProcess serve({"serve", "--data", data.string(), "--port", "0"});
    ASSERT_TRUE(serve.wait_for("ready:", 30000)) << serve.err();
    EXPECT_NE(serve.err().find("generated API keys"), std::string::npos) << serve.err();
    struct stat st {};
    ASSERT_EQ(::stat((data / "keys.json").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    search_key = nlohmann::json::parse(lookalike::testing::read_text(data / "keys.json"))["search_key"];
    EXPECT_NE(serve.err().find(search_key), std::string::npos);

    // A search whose body is still arriving when SIGTERM comes is answered.
    std::ifstream in(root_->path() / "demo" / "images" / "00003.png", std::ios::binary);
    std::string png((std::istreambuf_iterator<char>(in)), {});
    int fd = connect_to(serve.port());
    ASSERT_GE(fd, 0);
    std::string head = "POST /v1/search?k=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + search_key +
                       "\r\nContent-Type: image/png\r\nContent-Length: " + std::to_string(png.size()) +
                       "\r\n\r\n";
    ASSERT_GT(::send(fd, head.data(), head.size(), MSG_NOSIGNAL), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    serve.signal(SIGTERM);
    ASSERT_TRUE(serve.wait_for("SIGTERM", 5000)) << serve.err();
    ASSERT_GT(::send(fd, png.data(), png.size(), MSG_NOSIGNAL), 0);
    std::string response = read_all(fd, 5000);
    ::close(fd);
    EXPECT_EQ(response.compare(0, 12, "HTTP/1.1 200"), 0) << response;
    EXPECT_NE(response.find("fm-00003"), std::string::npos) << response;
    EXPECT_EQ(serve.wait_exit(10000), 0) << serve.err();
  }
  {
    // The second start uses the stored keys and prints none; SIGINT stops it too.
    ServeProcess serve({"serve", "--data", data.string(), "--port", "0"});
    ASSERT_TRUE(serve.wait_for("ready:", 30000)) << serve.err();
    EXPECT_EQ(serve.err().find("generated API keys"), std::string::npos) << serve.err();
    EXPECT_EQ(serve.err().find(search_key), std::string::npos) << "a key was logged";
    serve.signal(SIGINT);
    EXPECT_EQ(serve.wait_exit(10000), 0) << serve.err();
  }
}

TEST_F(ServeTest, RefusesToStartOnAPortInUse) {
  ServeProcess first({"serve", "--data", (root_->path() / "data").string(), "--port", "0", "--admin-key", "a",
                      "--search-key", "s"});
  ASSERT_TRUE(first.wait_for("listening on", 30000)) << first.err();
  ServeProcess second({"serve", "--data", (root_->path() / "data").string(), "--port",
                       std::to_string(first.port()), "--admin-key", "a", "--search-key", "s"});
  EXPECT_EQ(second.wait_exit(10000), 1) << second.err();
  ASSERT_TRUE(second.wait_for("cannot listen", 1000)) << second.err();
  first.signal(SIGTERM);
  EXPECT_EQ(first.wait_exit(10000), 0) << first.err();
}

}  // namespace

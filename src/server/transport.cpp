#include "server/transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>

#include "common/error.h"
#include "embed/embedder.h"

namespace lookalike::server {
namespace {

// The request the current worker thread is serving; the httplib hooks (which
// only see the Request and Response) find their state here.
thread_local RequestState* t_state = nullptr;

constexpr std::size_t kMaxLingering = 256;
constexpr std::size_t kMaxDrainBytes = 64u << 20;

// httplib's accept loop hands each socket to the TaskQueue; ours runs it at once
// on the accept thread, where process_and_close_socket (overridden) only parks it.
class InlineTaskQueue final : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override {}
};

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

bool wait_fd(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  int r;
  do {
    r = ::poll(&p, 1, timeout_ms);
  } while (r < 0 && errno == EINTR);
  return r > 0 && (p.revents & (events | POLLHUP | POLLERR)) != 0;
}

void address_of(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len)
                : ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (rc != 0) return;
  char buf[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    port = ntohs(a->sin6_port);
  }
  ip = buf;
}

// Where the blank line ending the request line and headers starts in data, or npos.
// `from` says how much was already searched, so that a head arriving byte by byte
// costs linear time.
std::size_t head_end(const char* data, std::size_t size, std::size_t from) {
  static constexpr char kEnd[] = "\r\n\r\n";
  const std::size_t start = from > 3 ? from - 3 : 0;
  if (size < start + 4) return std::string::npos;
  const char* end = data + size;
  const char* found = std::search(data + start, end, kEnd, kEnd + 4);
  return found == end ? std::string::npos : static_cast<std::size_t>(found - data);
}

std::string fixed_response(const char* status_line, const std::string& code, const std::string& message,
                           const char* extra_headers, const httplib::Headers& default_headers) {
  const std::string body = R"({"error":{"code":")" + code + R"(","message":")" + message + R"("}})";
  std::string response =
      std::string("HTTP/1.1 ") + status_line +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
      extra_headers + "Connection: close\r\n";
  for (const auto& [name, value] : default_headers) response += name + ": " + value + "\r\n";
  return response + "\r\n" + body;
}

// A client connection as httplib reads and writes it, with limits httplib 0.11
// lacks: the request line and headers may hold at most `limit` bytes and must
// arrive before a deadline; the body may hold at most max_body_bytes and must
// arrive before the request deadline. Reads are buffered: httplib reads the
// headers one byte at a time.
class ConnectionStream final : public httplib::Stream {
 public:
  // `head`: the bytes the poller already read from the connection.
  ConnectionStream(int fd, int read_timeout_ms, int write_timeout_ms, const std::string& head)
      : fd_(fd),
        read_timeout_ms_(read_timeout_ms),
        write_timeout_ms_(write_timeout_ms),
        buffer_(head.begin(), head.end()),
        end_(head.size()) {
    buffer_.resize(std::max<std::size_t>(buffer_.size(), 16 * 1024));
  }

  void begin_request(Clock::time_point deadline, std::size_t head_limit) {
    deadline_ = deadline;
    limit_ = head_limit;
    delivered_ = 0;
  }
  void begin_body(Clock::time_point deadline, std::size_t body_limit) {
    deadline_ = deadline;
    limit_ = delivered_ + body_limit;
  }
  std::size_t buffered() const { return end_ - pos_; }
  // The buffered bytes hold a whole request line and headers.
  bool buffered_head_complete() const {
    return head_end(buffer_.data() + pos_, end_ - pos_, 0) != std::string::npos;
  }
  std::string take_buffered() {
    std::string out(buffer_.data() + pos_, end_ - pos_);
    pos_ = end_;
    return out;
  }

  bool is_readable() const override { return pos_ < end_ || wait_fd(fd_, POLLIN, read_timeout_ms_); }
  bool is_writable() const override { return wait_fd(fd_, POLLOUT, write_timeout_ms_); }

  ssize_t read(char* ptr, std::size_t size) override {
    if (size == 0) return 0;
    if (delivered_ >= limit_) return -1;
    size = std::min(size, limit_ - delivered_);
    if (pos_ == end_) {
      for (;;) {
        if (Clock::now() >= deadline_) return -1;
        if (!wait_fd(fd_, POLLIN, std::min(read_timeout_ms_, remaining_ms(deadline_)))) return -1;
        const bool direct = size >= buffer_.size();
        ssize_t n = ::recv(fd_, direct ? ptr : buffer_.data(), direct ? size : buffer_.size(), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
        if (n <= 0) return n;  // 0: the client closed the connection
        if (direct) {
          delivered_ += static_cast<std::size_t>(n);
          return n;
        }
        pos_ = 0;
        end_ = static_cast<std::size_t>(n);
        break;
      }
    }
    std::size_t n = std::min(size, end_ - pos_);
    std::memcpy(ptr, buffer_.data() + pos_, n);
    pos_ += n;
    delivered_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, std::size_t size) override {
    for (;;) {
      if (!wait_fd(fd_, POLLOUT, write_timeout_ms_)) return -1;
      ssize_t n = ::send(fd_, ptr, size, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
      return n;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { address_of(fd_, true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { address_of(fd_, false, ip, port); }
  socket_t socket() const override { return fd_; }

 private:
  const int fd_;
  const int read_timeout_ms_;
  const int write_timeout_ms_;
  std::vector<char> buffer_;
  std::size_t pos_ = 0, end_ = 0;
  std::size_t delivered_ = 0;
  std::size_t limit_ = 0;
  Clock::time_point deadline_;
};

}  // namespace

class Transport::HttpServer final : public httplib::Server {
 public:
  explicit HttpServer(Transport& transport) : transport_(transport) {
    new_task_queue = [] { return new InlineTaskQueue; };
  }

  bool process(httplib::Stream& stream, bool close, bool& closed,
               const std::function<void(httplib::Request&)>& setup) {
    return process_request(stream, close, closed, setup);
  }

  // httplib creates the listening socket with a backlog of 5 (compiled into
  // the library); a burst of new connections would wait for SYN retries.
  void raise_backlog() { ::listen(svr_sock_, SOMAXCONN); }

 private:
  // Overrides httplib::Server's private virtual, which its accept loop calls
  // (through the TaskQueue) for each accepted socket: from here the socket is ours.
  bool process_and_close_socket(socket_t sock) override {
    transport_.adopt(sock);
    return true;
  }

  Transport& transport_;
};

Transport::Transport(TransportOptions options, RequestHandler& handler)
    : options_(std::move(options)), handler_(handler), http_(std::make_unique<HttpServer>(*this)) {
  using httplib::Request;
  using httplib::Response;
  using Handled = httplib::Server::HandlerResponse;
  auto& http = *http_;

  // SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, which would let
  // a second server on the same port start silently and take half the connections.
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  http.set_tcp_nodelay(true);
  http.set_default_headers(options_.default_headers);
  // Our serve() loop enforces these; httplib only reports them in its Keep-Alive header.
  http.set_keep_alive_max_count(options_.keep_alive_max_requests);
  http.set_keep_alive_timeout(std::max(1, options_.keep_alive_ms / 1000));
  http.set_payload_max_length(options_.max_body_bytes);  // a second guard; admission refuses first
  http.set_read_timeout(options_.read_timeout_ms / 1000, (options_.read_timeout_ms % 1000) * 1000);
  http.set_write_timeout(options_.write_timeout_ms / 1000, (options_.write_timeout_ms % 1000) * 1000);

  http.set_pre_routing_handler([this](const Request& req, Response& res) {
    RequestState& state = *t_state;
    state.admitted = true;
    bool answered = handler_.admit(req, res, state);
    const bool body_stays_unread = answered || req.method == "GET" || req.method == "HEAD";
    if (state.close_after && body_stays_unread) res.set_header("Connection", "close");
    return answered ? Handled::Handled : Handled::Unhandled;
  });
  // With "Expect: 100-continue" httplib asks before telling the client to send
  // the body: the same admission answers here, so a refused body is never sent.
  http.set_expect_100_continue_handler([this](const Request& req, Response& res) {
    RequestState& state = *t_state;
    state.admitted = true;
    if (!handler_.admit(req, res, state)) return 100;
    // httplib writes this answer with write_response, which sets no Content-Length.
    res.set_header("Content-Length", std::to_string(res.body.size()));
    res.set_header("Connection", "close");
    state.close_after = state.linger = true;
    return res.status;
  });
  auto dispatch = [this](const Request& req, Response& res) {
    // httplib calls a handler only after reading a POST, PUT or DELETE body
    // whole; a body it failed to read, or a GET's body (never read), leaves the
    // connection unusable, so admission's close_after stands for those.
    if (req.method != "GET" && req.method != "HEAD") t_state->close_after = t_state->linger = false;
    handler_.handle(req, res, *t_state);
  };
  http.Get(".*", dispatch);
  http.Post(".*", dispatch);
  http.Put(".*", dispatch);
  http.Delete(".*", dispatch);
  http.set_error_handler(httplib::Server::HandlerWithResponse([this](const Request&, Response& res) {
    if (!res.body.empty()) return Handled::Unhandled;
    handler_.fill_error(res);
    return Handled::Handled;
  }));
  http.set_exception_handler([this](const Request&, Response& res, std::exception_ptr) {
    res.status = 500;
    res.body.clear();
    handler_.fill_error(res);
  });
  http.set_logger([this](const Request& req, const Response& res) {
    if (t_state) handler_.finished(req, res, *t_state);
  });

  overloaded_response_ =
      fixed_response("503 Service Unavailable", "overloaded", "the server is busy; retry after 1 second",
                     "Retry-After: 1\r\n", options_.default_headers);
  timeout_response_ = fixed_response("408 Request Timeout", "request_timeout",
                                     "the request line and headers did not arrive within " +
                                         std::to_string(options_.read_timeout_ms) + " ms",
                                     "", options_.default_headers);

  if (::pipe2(wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    throw Error(ErrorKind::kIO, std::string("cannot create a pipe: ") + std::strerror(errno));
  }
}

Transport::~Transport() {
  stop();
  for (int fd : wake_pipe_) {
    if (fd >= 0) ::close(fd);
  }
}

int Transport::bind() {
  int port = options_.port;
  if (port == 0) {
    port = http_->bind_to_any_port(options_.host);
  } else if (!http_->bind_to_port(options_.host, port)) {
    port = -1;
  }
  if (port <= 0) {
    throw Error(ErrorKind::kIO, "cannot listen on " + options_.host + ":" + std::to_string(options_.port) +
                                    " (address in use, or not an address of this machine)");
  }
  http_->raise_backlog();
  return port;
}

void Transport::start() {
  poll_thread_ = std::thread([this] { poll_loop(); });
  for (int i = 0; i < std::max(1, options_.threads); ++i) workers_.emplace_back([this] { worker_loop(); });
  accept_thread_ = std::thread([this] { http_->listen_after_bind(); });
  // httplib's stop() does nothing until the accept loop runs; wait for it, so a
  // stop() right after start() cannot be lost.
  for (int i = 0; i < 5000 && !http_->is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void Transport::stop() {
  std::call_once(stop_once_, [this] {
    stopping_ = true;
    http_->stop();
    if (accept_thread_.joinable()) accept_thread_.join();
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      workers_exit_ = true;
    }
    queue_cv_.notify_all();
    for (auto& t : workers_) {
      if (t.joinable()) t.join();
    }
    {
      std::lock_guard<std::mutex> lock(poll_mutex_);
      poll_exit_ = true;
    }
    char byte = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_pipe_[1], &byte, 1);
    if (poll_thread_.joinable()) poll_thread_.join();
  });
}

void Transport::close_connection(int fd) {
  ::close(fd);
  --connections_;
}

void Transport::adopt(int fd) {
  int open = ++connections_;
  int yes = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
  if (stopping_) {
    close_connection(fd);
  } else if (open > options_.max_connections) {
    refuse_overloaded(fd);
  } else {
    add_to_poller(
        {fd, Clock::now() + std::chrono::milliseconds(options_.read_timeout_ms), false, 0, 0, {}, {}});
  }
}

void Transport::park(int fd, std::size_t requests, std::string head) {
  const auto now = Clock::now();
  // A request already begun must finish its headers within the read timeout.
  const int wait_ms = head.empty() ? options_.keep_alive_ms : options_.read_timeout_ms;
  add_to_poller({fd, now + std::chrono::milliseconds(wait_ms), false, requests, 0, std::move(head), now});
}

void Transport::linger(int fd) {
  // Half-close: the client reads our answer and EOF; whatever it still sends is
  // discarded, so the kernel does not answer it with a reset that could destroy
  // the response in the client's receive buffer.
  ::shutdown(fd, SHUT_WR);
  add_to_poller({fd, Clock::now() + std::chrono::milliseconds(options_.linger_ms), true, 0, 0, {}, {}});
}

void Transport::refuse_overloaded(int fd) {
  handler_.refused_overloaded();
  // A fresh connection's send buffer always has room for these few hundred bytes.
  [[maybe_unused]] ssize_t n =
      ::send(fd, overloaded_response_.data(), overloaded_response_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  linger(fd);
}

void Transport::refuse_timed_out(int fd) {
  [[maybe_unused]] ssize_t n =
      ::send(fd, timeout_response_.data(), timeout_response_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  linger(fd);
}

void Transport::add_to_poller(Parked parked) {
  const int fd = parked.fd;
  bool added = false;
  {
    std::lock_guard<std::mutex> lock(poll_mutex_);
    if (!poll_exit_) {
      pending_.push_back(std::move(parked));
      added = true;
    }
  }
  if (!added) {
    close_connection(fd);
    return;
  }
  char byte = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_pipe_[1], &byte, 1);
}

bool Transport::enqueue(int fd, std::size_t requests, Clock::time_point ready, std::string& head) {
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    if (workers_exit_ || jobs_.size() >= static_cast<std::size_t>(std::max(0, options_.queue))) return false;
    jobs_.push_back({fd, requests, ready, std::move(head)});
  }
  queue_cv_.notify_one();
  return true;
}

void Transport::poll_loop() {
  std::vector<Parked> entries;
  std::vector<pollfd> fds;
  std::vector<char> scratch(64 * 1024);
  for (;;) {
    bool exiting;
    {
      std::lock_guard<std::mutex> lock(poll_mutex_);
      std::move(pending_.begin(), pending_.end(), std::back_inserter(entries));
      pending_.clear();
      exiting = poll_exit_;
    }
    if (exiting) {
      // Idle connections get no more requests; refused ones finish draining.
      auto idle = std::partition(entries.begin(), entries.end(), [](const Parked& p) { return p.linger; });
      for (auto it = idle; it != entries.end(); ++it) close_connection(it->fd);
      entries.erase(idle, entries.end());
      if (entries.empty()) return;
    }
    std::size_t lingering = 0;
    for (const auto& e : entries) lingering += e.linger ? 1 : 0;
    if (lingering > kMaxLingering) {
      // Too many to drain: close the oldest at once (their clients may see a reset).
      for (auto& e : entries) {
        if (e.linger && lingering > kMaxLingering) {
          close_connection(e.fd);
          e.fd = -1;
          --lingering;
        }
      }
      entries.erase(std::remove_if(entries.begin(), entries.end(), [](const Parked& p) { return p.fd < 0; }),
                    entries.end());
    }

    fds.assign(1, pollfd{wake_pipe_[0], POLLIN, 0});
    auto next = Clock::now() + std::chrono::seconds(1);
    for (const auto& e : entries) {
      fds.push_back(pollfd{e.fd, POLLIN, 0});
      next = std::min(next, e.deadline);
    }
    int rc = ::poll(fds.data(), fds.size(), remaining_ms(next));
    if (rc < 0 && errno != EINTR) {
      std::cerr << "lookalike: poll failed: " << std::strerror(errno) << "\n";
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    if (fds[0].revents & POLLIN) {
      char drain[256];
      while (::read(wake_pipe_[0], drain, sizeof drain) > 0) {
      }
    }
    const auto now = Clock::now();
    std::size_t kept = 0;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      Parked& e = entries[i];
      const short revents = rc > 0 ? fds[i + 1].revents : 0;
      bool keep = true;
      if (e.linger) {
        if (revents & (POLLIN | POLLHUP | POLLERR)) {
          for (;;) {
            ssize_t n = ::recv(e.fd, scratch.data(), scratch.size(), MSG_DONTWAIT);
            if (n > 0) {
              e.drained += static_cast<std::size_t>(n);
              if (e.drained > kMaxDrainBytes) {
                keep = false;
                break;
              }
              continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
            keep = false;  // EOF or error: the client is done
            break;
          }
        }
        if (keep && now >= e.deadline) keep = false;
        if (!keep) close_connection(e.fd);
      } else {
        // Collect the request line and headers; a worker gets the request only once they are complete.
        bool closed = false;
        const std::size_t searched = e.head.size();
        if (revents & (POLLIN | POLLHUP | POLLERR)) {
          while (e.head.size() < options_.max_head_bytes) {
            const std::size_t room = std::min(scratch.size(), options_.max_head_bytes - e.head.size());
            ssize_t n = ::recv(e.fd, scratch.data(), room, MSG_DONTWAIT);
            if (n > 0) {
              if (e.head.empty()) {
                e.started = now;
                e.deadline = now + std::chrono::milliseconds(options_.read_timeout_ms);
              }
              e.head.append(scratch.data(), static_cast<std::size_t>(n));
              continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
            closed = true;  // EOF or error
            break;
          }
        }
        const bool ready =
            !e.head.empty() && (e.head.size() >= options_.max_head_bytes ||
                                head_end(e.head.data(), e.head.size(), searched) != std::string::npos);
        if (ready) {
          // Over the size limit: the worker lets httplib answer 400 for it.
          keep = false;
          if (!enqueue(e.fd, e.requests, e.started, e.head)) refuse_overloaded(e.fd);
        } else if (closed) {
          keep = false;
          close_connection(e.fd);
        } else if (now >= e.deadline) {
          keep = false;
          if (e.head.empty()) {
            close_connection(e.fd);
          } else {
            refuse_timed_out(e.fd);
          }
        }
      }
      if (keep && kept != i) entries[kept] = std::move(e);
      if (keep) ++kept;
    }
    entries.resize(kept);
  }
}

void Transport::worker_loop() {
  // Requests run in parallel across the workers, so each worker embeds and searches
  // on its own thread. OpenMP's thread count is per calling thread: left at the
  // default, every worker would start a team as large as the machine, and 8 busy
  // workers on 2 cores spin against each other (measured: 24 searches/s instead
  // of hundreds at 8 clients; bench/RESULTS.md).
  embed::set_compute_threads(1);
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(queue_mutex_);
      queue_cv_.wait(lock, [&] { return workers_exit_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // exiting, and every received request was answered
      job = jobs_.front();
      jobs_.pop_front();
    }
    serve(job.fd, job.requests, job.ready, std::move(job.head));
  }
}

void Transport::serve(int fd, std::size_t requests, Clock::time_point ready, std::string head) {
  ConnectionStream stream(fd, options_.read_timeout_ms, options_.write_timeout_ms, head);
  head.clear();
  Clock::time_point start = ready;
  for (;;) {
    RequestState state;
    state.start = start;
    stream.begin_request(start + std::chrono::milliseconds(options_.read_timeout_ms),
                         options_.max_head_bytes);
    const bool close = stopping_ || requests + 1 >= options_.keep_alive_max_requests;
    bool closed = false;
    bool ok = false;
    t_state = &state;
    try {
      ok = http_->process(stream, close, closed, [&](httplib::Request& req) {
        stream.begin_body(start + std::chrono::milliseconds(options_.request_timeout_ms),
                          options_.max_body_bytes);
        // httplib compresses brotli at its default quality 11, which costs
        // milliseconds per response: offer it gzip only.
        const bool gzip = req.get_header_value("Accept-Encoding").find("gzip") != std::string::npos;
        req.headers.erase("Accept-Encoding");
        if (gzip) req.headers.emplace("Accept-Encoding", "gzip");
      });
    } catch (const std::exception& e) {
      // Handler exceptions are caught inside httplib; this is httplib's own failure.
      std::cerr << "lookalike: connection error: " << e.what() << "\n";
    }
    t_state = nullptr;
    ++requests;
    if (ok && !state.admitted) {
      // httplib refused the request line or headers itself (400, 414): the rest
      // of the request is still on the socket and cannot be framed.
      state.linger = true;
    }
    if (state.linger) {
      linger(fd);
      return;
    }
    if (!ok || closed || close || state.close_after || stopping_) {
      close_connection(fd);
      return;
    }
    if (stream.buffered() == 0) {
      park(fd, requests);
      return;
    }
    if (!stream.buffered_head_complete()) {
      // The start of a pipelined request: the poller waits for the rest of its headers.
      park(fd, requests, stream.take_buffered());
      return;
    }
    start = Clock::now();  // a pipelined request is already here
  }
}

}  // namespace lookalike::server

// The HTTP transport around cpp-httplib 0.11: connections, the worker pool and
// its bounded queue, request size and time limits. Internal to the server module.
//
// Why not httplib's own connection handling: in 0.11 a worker thread is tied to a
// connection for its whole keep-alive life, the TaskQueue cannot refuse work,
// and a request refused before its body is read leaves that body on the socket
// to be parsed as the next request. So the transport overrides
// Server::process_and_close_socket (a virtual the accept loop calls for each new
// socket) to take the socket, and from then on owns it:
//  - a poller thread collects each request's line and headers as they arrive
//    (idle, keep-alive and slow connections hold no worker: a client dribbling
//    its headers cannot starve the pool) and queues the request for the pool
//    once its headers are complete; headers not complete within the read
//    timeout get 408;
//  - a full queue, or too many connections, is answered 503 `overloaded` with
//    Retry-After right there, without reading the request;
//  - a worker runs one request through Server::process_request with our own
//    Stream, which bounds the header bytes, the body bytes and the time;
//  - a response sent before the body was read (411, 413, 401, ...) closes the
//    connection after draining what the client still sends, so the client reads
//    the answer instead of a reset.
// The admission check (route, framing, keys) runs in httplib's pre-routing and
// Expect: 100-continue hooks, which 0.11 calls after the headers and before
// reading any body (Server::routing reads the body only after pre-routing).
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/routes.h"

namespace lookalike::server {

using Clock = std::chrono::steady_clock;

// What the transport and the API know about the request being served.
struct RequestState {
  Clock::time_point start;           // when its first bytes were ready to read
  std::string route_label = "none";  // route pattern, for metrics
  RouteMatch match;
  bool admitted = false;     // admission ran: httplib parsed the request
  bool close_after = false;  // close the connection after this response
  bool linger = false;       // the body was not read: drain before closing
};

// Implemented by the API. Called on worker threads, concurrently.
class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  // After the headers, before any body byte is read. Returns true when res holds
  // the final answer (then the body is never read and the connection closes).
  virtual bool admit(const httplib::Request& req, httplib::Response& res, RequestState& state) = 0;
  // After the body was read (admitted requests only).
  virtual void handle(const httplib::Request& req, httplib::Response& res, RequestState& state) = 0;
  // Fills an empty error response (httplib's own 400/414/...) with the JSON error body.
  virtual void fill_error(httplib::Response& res) = 0;
  // Each response written, and each request refused by overload before being read.
  virtual void finished(const httplib::Request& req, const httplib::Response& res,
                        const RequestState& state) = 0;
  virtual void refused_overloaded() = 0;
};

struct TransportOptions {
  std::string host;
  int port = 0;
  int threads = 8;
  int queue = 64;
  int max_connections = 512;
  std::size_t max_body_bytes = 16u << 20;
  std::size_t max_head_bytes = 64u << 10;  // request line and headers
  int read_timeout_ms = 10000;
  int write_timeout_ms = 10000;
  int request_timeout_ms = 60000;
  int keep_alive_ms = 5000;
  std::size_t keep_alive_max_requests = 1000;
  int linger_ms = 2000;              // drain time for a refused request's body
  httplib::Headers default_headers;  // on every response, the 503s written here included
};

class Transport {
 public:
  Transport(TransportOptions options, RequestHandler& handler);
  ~Transport();

  int bind();    // binds; returns the port. Throws Error(kIO).
  void start();  // accept, poller and worker threads
  // Stops accepting; requests already received are answered; joins. Idempotent.
  void stop();

 private:
  class HttpServer;
  struct Parked {
    int fd;
    Clock::time_point deadline;
    bool linger;
    std::size_t requests;       // served on this connection so far
    std::size_t drained;        // linger: bytes discarded
    std::string head;           // the next request's bytes read so far (at most max_head_bytes)
    Clock::time_point started;  // when head's first byte arrived
  };

  void adopt(int fd);  // accept thread: a new connection
  // Waits for the next request; `head` holds its first bytes when some are already read.
  void park(int fd, std::size_t requests, std::string head = {});
  void linger(int fd);             // drain, then close
  void refuse_overloaded(int fd);  // 503 without reading, then linger
  void refuse_timed_out(int fd);   // 408: the headers did not arrive in time
  void close_connection(int fd);
  void poll_loop();
  void worker_loop();
  bool enqueue(int fd, std::size_t requests, Clock::time_point ready, std::string& head);
  void serve(int fd, std::size_t requests, Clock::time_point ready, std::string head);
  void add_to_poller(Parked parked);

  const TransportOptions options_;
  RequestHandler& handler_;
  std::unique_ptr<HttpServer> http_;
  std::string overloaded_response_;
  std::string timeout_response_;

  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::thread accept_thread_;
  std::thread poll_thread_;
  std::vector<std::thread> workers_;
  std::once_flag stop_once_;

  // Poller: entries added by other threads go through pending_ and a wake-up pipe.
  int wake_pipe_[2] = {-1, -1};
  std::mutex poll_mutex_;
  std::vector<Parked> pending_;
  bool poll_exit_ = false;

  // Worker pool queue.
  struct Job {
    int fd;
    std::size_t requests;
    Clock::time_point ready;
    std::string head;  // the request line and headers, complete (or at the size limit)
  };
  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<Job> jobs_;
  bool workers_exit_ = false;
};

}  // namespace lookalike::server

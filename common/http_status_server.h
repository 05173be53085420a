// A minimal HTTP/1.1 server for monitoring endpoints (/metrics, /healthz, /readyz, /debug/...).
// GET and HEAD only, small requests, one response per connection, per-connection timeouts, so
// a slow or hostile client cannot stall it. Runs on its own thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace meshid {

struct HttpReply {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// Handlers run on the server thread; they must be thread-safe with respect to the rest of the
// program and should be quick. The argument is the request target (path and query).
using HttpHandler = std::function<HttpReply(const std::string& target)>;

class HttpStatusServer {
 public:
  // Binds `address` ("host:port", port 0 picks a free one) and starts serving. A path not in
  // `handlers` gets 404.
  static absl::StatusOr<std::unique_ptr<HttpStatusServer>> Create(const std::string& address,
                                                                  std::map<std::string, HttpHandler> handlers);
  virtual ~HttpStatusServer() = default;
  // The bound port.
  virtual uint16_t port() const = 0;
};

}  // namespace meshid

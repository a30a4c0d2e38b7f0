// A small HTTP client over libcurl (RAII over one easy handle, reusing its connection), for
// the sinks. It reports transport failures (refused, timed out, dropped) as status 0 with
// curl's message, never throws for them, and never puts credentials in a message.
//
//   tb::HttpSession http;
//   tb::HttpResponse r = http.PostJson(url, body, {"api", key}, /*timeout_seconds=*/10);
//   if (r.status == 0) ... r.error ...; else if (r.status == 429) ... r.retry_after ...
#pragma once

#include <atomic>
#include <string>

namespace tb {

struct BasicAuth {
  std::string user;
  std::string password;
};

struct HttpResponse {
  long status = 0;            // 0: no HTTP response (see error)
  std::string body;
  double retry_after = -1;    // seconds from a Retry-After header, -1 if none
  std::string error;          // transport error, when status == 0
};

class HttpSession {
 public:
  HttpSession();
  ~HttpSession();
  HttpSession(const HttpSession&) = delete;
  HttpSession& operator=(const HttpSession&) = delete;

  // `abort_at` (optional, seconds since the epoch, may move earlier while the request runs)
  // cuts a request short, as a timeout.
  HttpResponse PostJson(const std::string& url, const std::string& body, const BasicAuth& auth,
                        double timeout_seconds, const std::atomic<double>* abort_at = nullptr);

 private:
  void* curl_;  // CURL*
};

}  // namespace tb

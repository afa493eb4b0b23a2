// Request log lines written to stderr from a thread of their own.
#ifndef PAD_SERVER_LOG_WRITER_H_
#define PAD_SERVER_LOG_WRITER_H_

#include <cstdint>
#include <deque>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/metrics.h"

namespace pad::server {

// The engine thread logs every finished request; a stalled stderr (a full pipe, a slow log collector) must
// not stall decoding. Write() only queues. When the queue holds `capacity` lines, new ones are dropped and
// counted (in `dropped_counter` too, when given): losing log lines beats losing throughput.
class LogWriter {
 public:
  explicit LogWriter(int fd = 2, size_t capacity = 4096, Counter* dropped_counter = nullptr,
                     absl::Duration flush_timeout = absl::Seconds(2));
  // Writes what is queued, then stops; lines the fd does not take within `flush_timeout` (nobody reads the
  // pipe) are dropped and counted, so that shutting down never waits on a reader.
  ~LogWriter();
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  void Write(std::string line);  // one line, without its newline
  int64_t dropped() const;

 private:
  void Run();

  // Writes `line` whole, waiting for the fd as long as the writer runs; false if it gave up: the fd is
  // gone, or stopping and past the flush deadline.
  bool WriteLine(const std::string& line);

  const int fd_;
  const size_t capacity_;
  Counter* const dropped_counter_;
  const absl::Duration flush_timeout_;
  mutable absl::Mutex mu_;
  std::deque<std::string> lines_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time flush_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace pad::server

#endif  // PAD_SERVER_LOG_WRITER_H_

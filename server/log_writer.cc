#include "server/log_writer.h"

#include <limits.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

namespace pad::server {

LogWriter::LogWriter(int fd, size_t capacity, Counter* dropped_counter, absl::Duration flush_timeout)
    : fd_(fd),
      capacity_(capacity),
      dropped_counter_(dropped_counter),
      flush_timeout_(flush_timeout),
      thread_([this] { Run(); }) {}

LogWriter::~LogWriter() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    flush_deadline_ = absl::Now() + flush_timeout_;
  }
  thread_.join();
}

void LogWriter::Write(std::string line) {
  absl::MutexLock lock(&mu_);
  if (lines_.size() >= capacity_) {
    ++dropped_;
    if (dropped_counter_ != nullptr) dropped_counter_->Increment();
    return;
  }
  line.push_back('\n');
  lines_.push_back(std::move(line));
}

bool LogWriter::WriteLine(const std::string& line) {
  size_t written = 0;
  while (written < line.size()) {
    // Waits in short polls, so that a stop is seen while the reader stalls. Once the fd is writable, a
    // write of at most PIPE_BUF bytes does not block on a pipe (POLLOUT means that much room).
    pollfd ready = {fd_, POLLOUT, 0};
    const int polled = ::poll(&ready, 1, 100);
    if (polled < 0 && errno != EINTR) return false;
    if (polled <= 0) {
      absl::MutexLock lock(&mu_);
      if (absl::Now() >= flush_deadline_) return false;
      continue;
    }
    if ((ready.revents & (POLLERR | POLLNVAL)) != 0) return false;
    const size_t chunk = std::min<size_t>(line.size() - written, PIPE_BUF);
    const ssize_t n = ::write(fd_, line.data() + written, chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return false;  // nowhere to write: the line is lost, the server goes on
    written += static_cast<size_t>(n);
  }
  return true;
}

int64_t LogWriter::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

void LogWriter::Run() {
  for (;;) {
    std::deque<std::string> batch;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](LogWriter* w)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) { return w->stopping_ || !w->lines_.empty(); },
          this));
      if (lines_.empty()) return;  // stopping, and everything is written
      batch.swap(lines_);
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      if (WriteLine(batch[i])) continue;
      absl::MutexLock lock(&mu_);
      if (absl::Now() < flush_deadline_) continue;  // the fd failed: that line is lost, the server goes on
      // Stopping, and nobody read the fd in time: what is left is dropped, and counted.
      const int64_t left = static_cast<int64_t>(batch.size() - i + lines_.size());
      lines_.clear();
      dropped_ += left;
      if (dropped_counter_ != nullptr) dropped_counter_->Increment(static_cast<double>(left));
      return;
    }
  }
}

}  // namespace pad::server

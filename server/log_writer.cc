#include "server/log_writer.h"

#include <unistd.h>

#include <cerrno>
#include <utility>

namespace pad::server {

LogWriter::LogWriter(int fd, size_t capacity, Counter* dropped_counter)
    : fd_(fd), capacity_(capacity), dropped_counter_(dropped_counter), thread_([this] { Run(); }) {}

LogWriter::~LogWriter() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
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
    for (const std::string& line : batch) {
      size_t written = 0;
      while (written < line.size()) {
        const ssize_t n = ::write(fd_, line.data() + written, line.size() - written);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // nowhere to write: the line is lost, the server goes on
        written += static_cast<size_t>(n);
      }
    }
  }
}

}  // namespace pad::server

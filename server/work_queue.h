// Threads of the server's own for work that must not run on gRPC's callback threads.
#ifndef PAD_SERVER_WORK_QUEUE_H_
#define PAD_SERVER_WORK_QUEUE_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace pad::server {

// A fixed set of threads running tasks in the order they arrive, behind a bounded queue. A gRPC stream's
// request is prepared here (parsed, its chat template rendered and tokenized by Engine::Submit), so that a
// few large requests cannot hold the callback threads every other call needs. TrySchedule may be called
// from any thread; the destructor runs every task already queued, then joins.
class WorkQueue {
 public:
  WorkQueue(int threads, size_t capacity);
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Queues `task`; false, and `task` not run, when `capacity` tasks are already waiting.
  bool TrySchedule(std::function<void()> task);

 private:
  void Run();

  const size_t capacity_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace pad::server

#endif  // PAD_SERVER_WORK_QUEUE_H_

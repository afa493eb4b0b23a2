#include "server/work_queue.h"

#include <atomic>
#include <memory>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace pad::server {
namespace {

// One thread runs tasks in their order; the destructor runs what is queued before it returns.
TEST(WorkQueue, RunsEveryTaskInOrder) {
  std::vector<int> order;
  {
    WorkQueue queue(1, 100);
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(queue.TrySchedule([&order, i] { order.push_back(i); }));
  }
  ASSERT_EQ(order.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(order[i], i);
}

// While its threads are busy, the queue takes `capacity` tasks and refuses the next, which never runs.
TEST(WorkQueue, RefusesBeyondItsCapacity) {
  absl::Notification started, release;
  std::atomic<int> ran{0};
  {
    WorkQueue queue(1, 2);
    ASSERT_TRUE(queue.TrySchedule([&] {
      started.Notify();
      release.WaitForNotification();
    }));
    started.WaitForNotification();  // the thread is busy; the queue is empty
    EXPECT_TRUE(queue.TrySchedule([&] { ++ran; }));
    EXPECT_TRUE(queue.TrySchedule([&] { ++ran; }));
    EXPECT_FALSE(queue.TrySchedule([&] { ran += 100; }));
    release.Notify();
  }
  EXPECT_EQ(ran, 2);
}

}  // namespace
}  // namespace pad::server

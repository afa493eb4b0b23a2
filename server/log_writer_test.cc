#include "server/log_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <string>

#include "gtest/gtest.h"
#include "server/metrics.h"

namespace pad::server {
namespace {

// Everything queued reaches the fd, in order, before the destructor returns.
TEST(LogWriter, WritesEveryLineInOrder) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  {
    LogWriter writer(fds[1]);
    writer.Write("first");
    writer.Write("second");
  }
  close(fds[1]);
  std::string text(64, '\0');
  text.resize(static_cast<size_t>(read(fds[0], text.data(), text.size())));
  close(fds[0]);
  EXPECT_EQ(text, "first\nsecond\n");
}

// Nobody reads the pipe: once it is full, the destructor still returns, after the flush timeout, and the
// lines it could not write are counted as dropped. (It used to join a thread blocked in write() forever.)
TEST(LogWriter, StopsAlthoughNobodyReadsThePipe) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_GT(fcntl(fds[1], F_SETPIPE_SZ, 4096), 0);  // the smallest pipe: one page
  Counter dropped;
  auto writer = std::make_unique<LogWriter>(fds[1], 4096, &dropped, absl::Milliseconds(200));
  const std::string line(1000, 'x');
  for (int i = 0; i < 20; ++i) writer->Write(line);  // 20 KB into a 4 KB pipe
  std::future<void> stopped = std::async(std::launch::async, [&writer] { writer.reset(); });
  const bool returned = stopped.wait_for(std::chrono::seconds(60)) == std::future_status::ready;
  if (!returned) close(fds[0]);  // lets a hung writer go, so that the test fails instead of hanging
  ASSERT_TRUE(returned) << "~LogWriter waited on a pipe nobody reads";
  EXPECT_GE(dropped.Value(), 15);  // at most 4 lines fit
  EXPECT_LE(dropped.Value(), 20);
  close(fds[0]);
  close(fds[1]);
}

}  // namespace
}  // namespace pad::server

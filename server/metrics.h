// A small Prometheus registry: counters, gauges and histograms with fixed label names, rendered in the text
// exposition format 0.0.4. prometheus-cpp is not packaged for Debian 12; promtool checks our output.
#ifndef PAD_SERVER_METRICS_H_
#define PAD_SERVER_METRICS_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace pad::server {

template <typename T>
class Family;

// A value that only goes up. Any thread may call any method; updates are one lock-free atomic.
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Negative and NaN amounts are ignored: a counter that went down would read as a restart to rate().
  void Increment(double amount = 1.0);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  friend class Family<Counter>;
  static constexpr char kType[] = "counter";
  void AppendSamples(const std::string& name, const std::string& labels, std::string* out) const;

  std::atomic<double> value_{0.0};
};

// A value that goes up and down. Any thread may call any method; updates are one lock-free atomic.
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double amount);  // negative to decrease
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  friend class Family<Gauge>;
  static constexpr char kType[] = "gauge";
  void AppendSamples(const std::string& name, const std::string& labels, std::string* out) const;

  std::atomic<double> value_{0.0};
};

// Counts observations into buckets by the family's upper bounds, plus their sum and count. Any thread may
// call Observe; a short mutex keeps buckets, sum and count consistent with each other within a scrape.
class Histogram {
 public:
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // A value lands in the first bucket whose bound is >= it; NaN only in +Inf (and makes the sum NaN).
  void Observe(double value);

 private:
  friend class Family<Histogram>;
  static constexpr char kType[] = "histogram";
  explicit Histogram(const std::vector<double>* upper_bounds);  // owned by the family, which outlives us
  void AppendSamples(const std::string& name, const std::string& labels, std::string* out) const;

  const std::vector<double>* const upper_bounds_;  // finite, strictly increasing; +Inf is implicit
  mutable absl::Mutex mu_;
  std::vector<uint64_t> counts_ ABSL_GUARDED_BY(mu_);  // per bucket, not cumulative; last is +Inf
  double sum_ ABSL_GUARDED_BY(mu_) = 0.0;
  uint64_t count_ ABSL_GUARDED_BY(mu_) = 0;
};

namespace metrics_internal {

class FamilyBase {
 public:
  virtual ~FamilyBase() = default;
  virtual void Render(std::string* out) const = 0;
};

// Orders children by label values, comparing std::vector<std::string> keys with absl::string_view lookups.
struct LabelValuesLess {
  using is_transparent = void;
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(),
                                        [](absl::string_view x, absl::string_view y) { return x < y; });
  }
};

}  // namespace metrics_internal

// One metric with fixed label names and one child per tuple of label values. Any thread may call any method.
// Children live as long as the registry and are never removed, so a caller looks one up once (a map lookup
// under a mutex) and keeps the reference for cheap updates.
template <typename T>
class Family : public metrics_internal::FamilyBase {
 public:
  Family(const Family&) = delete;
  Family& operator=(const Family&) = delete;

  // The child for these label values, created on first use (it renders from then on). Label values may be
  // any UTF-8; they are escaped when rendered.
  // REQUIRES: label_values.size() == label_names().size(); aborts otherwise, as that is a bug at the call
  // site.
  T& WithLabels(absl::Span<const absl::string_view> label_values);
  // The only child of a family without labels; it exists from registration, so it renders 0 before any
  // update. REQUIRES: label_names() is empty; aborts otherwise.
  T& Get();

  const std::string& name() const { return name_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

 private:
  friend class MetricsRegistry;
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> upper_bounds);
  std::unique_ptr<T> NewChild() const;
  void Render(std::string* out) const override;

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const std::vector<double> upper_bounds_;  // histograms only
  T* default_child_ = nullptr;              // set for a family without labels; never changes
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>, metrics_internal::LabelValuesLess> children_
      ABSL_GUARDED_BY(mu_);
};

// Owns metric families and renders them for a scrape. Any thread may call any method, Render included, while
// others update. Registration fails rather than emitting what Prometheus or promtool would reject:
// INVALID_ARGUMENT for a bad metric or label name, an empty help, a counter not named *_total, a gauge or
// histogram named *_total, a gauge named *_count/_sum/_bucket, a reserved label (le, quantile, __*) or
// unsorted or non-finite buckets;
// ALREADY_EXISTS when a name (or a histogram's _bucket/_sum/_count) collides with another family's. The
// returned family lives as long as the registry.
class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  absl::StatusOr<Family<Counter>*> AddCounter(absl::string_view name, absl::string_view help,
                                              const std::vector<std::string>& label_names = {});
  absl::StatusOr<Family<Gauge>*> AddGauge(absl::string_view name, absl::string_view help,
                                          const std::vector<std::string>& label_names = {});
  // `upper_bounds`: finite and strictly increasing; the +Inf bucket is added on render.
  absl::StatusOr<Family<Histogram>*> AddHistogram(absl::string_view name, absl::string_view help,
                                                  const std::vector<double>& upper_bounds,
                                                  const std::vector<std::string>& label_names = {});

  // The text exposition format 0.0.4: families in registration order, children sorted by label values, a
  // labelled family with no children yet left out (as Prometheus's Go client does).
  std::string Render() const;

 private:
  // Checks the names and reserves the sample names the family will emit.
  absl::Status Reserve(absl::string_view type, absl::string_view name, absl::string_view help,
                       const std::vector<std::string>& label_names) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Lock order: mu_, then a family's mutex, then a histogram's.
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<metrics_internal::FamilyBase>> families_ ABSL_GUARDED_BY(mu_);
  std::set<std::string, std::less<>> sample_names_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pad::server

#endif  // PAD_SERVER_METRICS_H_

#include "server/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace pad::server {
namespace {

void AtomicAdd(std::atomic<double>& value, double amount) {
  double current = value.load(std::memory_order_relaxed);
  while (!value.compare_exchange_weak(current, current + amount, std::memory_order_relaxed)) {
  }
}

// Go's strconv.ParseFloat reads all of these: integers without an exponent where exact (so counts read as
// counts), otherwise the shortest %g that reads back as the same double.
std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::trunc(value) && std::fabs(value) <= 9007199254740992.0) {  // 2^53
    return absl::StrFormat("%.0f", value);
  }
  for (int precision = 15; precision < 17; ++precision) {
    std::string text = absl::StrFormat("%.*g", precision, value);
    if (std::strtod(text.c_str(), nullptr) == value) return text;
  }
  return absl::StrFormat("%.17g", value);
}

// The text format escapes backslash and newline in HELP text, and also the double quote in label values.
std::string Escape(absl::string_view text, bool quote) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

// `labels` is `a="x",b="y"` (already escaped) or empty; `extra` is one more such pair, or empty.
void AppendSample(absl::string_view name, absl::string_view suffix, absl::string_view labels,
                  absl::string_view extra, absl::string_view value, std::string* out) {
  absl::StrAppend(out, name, suffix);
  if (!labels.empty() || !extra.empty()) {
    absl::StrAppend(out, "{", labels, !labels.empty() && !extra.empty() ? "," : "", extra, "}");
  }
  absl::StrAppend(out, " ", value, "\n");
}

bool IsValidName(absl::string_view name, bool allow_colon) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok =
        absl::ascii_isalpha(c) || c == '_' || (allow_colon && c == ':') || (i > 0 && absl::ascii_isdigit(c));
    if (!ok) return false;
  }
  return true;
}

[[noreturn]] void DieLabelArity(absl::string_view name, size_t want, size_t got) {
  std::fprintf(stderr, "metric \"%.*s\": %zu label values given for %zu label names\n",
               static_cast<int>(name.size()), name.data(), got, want);
  std::abort();
}

}  // namespace

void Counter::Increment(double amount) {
  if (!(amount >= 0.0)) return;  // also NaN
  AtomicAdd(value_, amount);
}

void Counter::AppendSamples(const std::string& name, const std::string& labels, std::string* out) const {
  AppendSample(name, "", labels, "", FormatValue(Value()), out);
}

void Gauge::Add(double amount) { AtomicAdd(value_, amount); }

void Gauge::AppendSamples(const std::string& name, const std::string& labels, std::string* out) const {
  AppendSample(name, "", labels, "", FormatValue(Value()), out);
}

Histogram::Histogram(const std::vector<double>* upper_bounds)
    : upper_bounds_(upper_bounds), counts_(upper_bounds->size() + 1, 0) {}

void Histogram::Observe(double value) {
  size_t bucket = upper_bounds_->size();
  if (!std::isnan(value)) {
    bucket = std::lower_bound(upper_bounds_->begin(), upper_bounds_->end(), value) - upper_bounds_->begin();
  }
  absl::MutexLock lock(&mu_);
  ++counts_[bucket];
  sum_ += value;
  ++count_;
}

void Histogram::AppendSamples(const std::string& name, const std::string& labels, std::string* out) const {
  absl::MutexLock lock(&mu_);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    cumulative += counts_[i];
    const double bound = i < upper_bounds_->size() ? (*upper_bounds_)[i] : INFINITY;
    AppendSample(name, "_bucket", labels, absl::StrCat("le=\"", FormatValue(bound), "\""),
                 absl::StrCat(cumulative), out);
  }
  AppendSample(name, "_sum", labels, "", FormatValue(sum_), out);
  AppendSample(name, "_count", labels, "", absl::StrCat(count_), out);
}

template <typename T>
Family<T>::Family(std::string name, std::string help, std::vector<std::string> label_names,
                  std::vector<double> upper_bounds)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      upper_bounds_(std::move(upper_bounds)) {
  if (label_names_.empty()) default_child_ = &WithLabels({});
}

template <typename T>
std::unique_ptr<T> Family<T>::NewChild() const {
  if constexpr (std::is_same_v<T, Histogram>) {
    return std::unique_ptr<T>(new T(&upper_bounds_));  // private: only a family makes histograms
  } else {
    return std::make_unique<T>();
  }
}

template <typename T>
T& Family<T>::WithLabels(absl::Span<const absl::string_view> label_values) {
  if (label_values.size() != label_names_.size()) {
    DieLabelArity(name_, label_names_.size(), label_values.size());
  }
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = children_.find(label_values);
    if (it != children_.end()) return *it->second;
  }
  absl::MutexLock lock(&mu_);
  auto it = children_.find(label_values);
  if (it == children_.end()) {
    it = children_.emplace(std::vector<std::string>(label_values.begin(), label_values.end()), NewChild())
             .first;
  }
  return *it->second;
}

template <typename T>
T& Family<T>::Get() {
  if (default_child_ == nullptr) DieLabelArity(name_, label_names_.size(), 0);
  return *default_child_;
}

template <typename T>
void Family<T>::Render(std::string* out) const {
  absl::ReaderMutexLock lock(&mu_);
  if (children_.empty()) return;
  absl::StrAppend(out, "# HELP ", name_, " ", Escape(help_, /*quote=*/false), "\n");
  absl::StrAppend(out, "# TYPE ", name_, " ", T::kType, "\n");
  for (const auto& [values, child] : children_) {
    std::string labels;
    for (size_t i = 0; i < values.size(); ++i) {
      absl::StrAppend(&labels, i > 0 ? "," : "", label_names_[i], "=\"", Escape(values[i], /*quote=*/true),
                      "\"");
    }
    child->AppendSamples(name_, labels, out);
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

absl::Status MetricsRegistry::Reserve(absl::string_view type, absl::string_view name, absl::string_view help,
                                      const std::vector<std::string>& label_names) {
  const std::string what = absl::StrCat(type, " \"", name, "\"");
  if (!IsValidName(name, /*allow_colon=*/true)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": the name must match [a-zA-Z_:][a-zA-Z0-9_:]*"));
  }
  const bool is_counter = type == "counter";
  const bool is_histogram = type == "histogram";
  if (is_counter && !absl::EndsWith(name, "_total")) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": a counter's name must end in _total"));
  }
  if (!is_counter && absl::EndsWith(name, "_total")) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": only a counter's name may end in _total"));
  }
  if (!is_histogram &&
      (absl::EndsWith(name, "_count") || absl::EndsWith(name, "_sum") || absl::EndsWith(name, "_bucket"))) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": the suffixes _count, _sum and _bucket are reserved for histograms"));
  }
  if (help.empty()) return absl::InvalidArgumentError(absl::StrCat(what, ": the help must not be empty"));
  for (size_t i = 0; i < label_names.size(); ++i) {
    const std::string& label = label_names[i];
    if (!IsValidName(label, /*allow_colon=*/false)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": label name \"", label, "\" must match [a-zA-Z_][a-zA-Z0-9_]*"));
    }
    if (absl::StartsWith(label, "__") || label == "le" || label == "quantile") {
      return absl::InvalidArgumentError(absl::StrCat(what, ": label name \"", label, "\" is reserved"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (label_names[j] == label) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": label name \"", label, "\" is repeated"));
      }
    }
  }
  std::vector<std::string> names = {std::string(name)};
  if (is_histogram) {
    for (absl::string_view suffix : {"_bucket", "_sum", "_count"})
      names.push_back(absl::StrCat(name, suffix));
  }
  for (const std::string& sample_name : names) {
    if (sample_names_.count(sample_name) > 0) {
      return absl::AlreadyExistsError(absl::StrCat(what, ": \"", sample_name, "\" is already registered"));
    }
  }
  sample_names_.insert(names.begin(), names.end());
  return absl::OkStatus();
}

absl::StatusOr<Family<Counter>*> MetricsRegistry::AddCounter(absl::string_view name, absl::string_view help,
                                                             const std::vector<std::string>& label_names) {
  absl::MutexLock lock(&mu_);
  absl::Status reserved = Reserve("counter", name, help, label_names);
  if (!reserved.ok()) return reserved;
  auto* family = new Family<Counter>(std::string(name), std::string(help), label_names, {});
  families_.emplace_back(family);
  return family;
}

absl::StatusOr<Family<Gauge>*> MetricsRegistry::AddGauge(absl::string_view name, absl::string_view help,
                                                         const std::vector<std::string>& label_names) {
  absl::MutexLock lock(&mu_);
  absl::Status reserved = Reserve("gauge", name, help, label_names);
  if (!reserved.ok()) return reserved;
  auto* family = new Family<Gauge>(std::string(name), std::string(help), label_names, {});
  families_.emplace_back(family);
  return family;
}

absl::StatusOr<Family<Histogram>*> MetricsRegistry::AddHistogram(
    absl::string_view name, absl::string_view help, const std::vector<double>& upper_bounds,
    const std::vector<std::string>& label_names) {
  for (size_t i = 0; i < upper_bounds.size(); ++i) {
    if (!std::isfinite(upper_bounds[i]) || (i > 0 && !(upper_bounds[i] > upper_bounds[i - 1]))) {
      return absl::InvalidArgumentError(
          absl::StrCat("histogram \"", name, "\": upper bound ", FormatValue(upper_bounds[i]), " (index ", i,
                       ") must be finite and greater than the one before; +Inf is implicit"));
    }
  }
  absl::MutexLock lock(&mu_);
  absl::Status reserved = Reserve("histogram", name, help, label_names);
  if (!reserved.ok()) return reserved;
  auto* family = new Family<Histogram>(std::string(name), std::string(help), label_names, upper_bounds);
  families_.emplace_back(family);
  return family;
}

std::string MetricsRegistry::Render() const {
  std::string out;
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& family : families_) family->Render(&out);
  return out;
}

}  // namespace pad::server

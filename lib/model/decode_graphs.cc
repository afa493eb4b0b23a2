#include "pad/decode_graphs.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "pad/status_macros.h"

#if PAD_CUDA_GRAPHS
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace pad {

struct DecodeGraphs::Graph {
#if PAD_CUDA_GRAPHS
  std::unique_ptr<at::cuda::CUDAGraph> graph;  // null until recorded
#endif
  at::Tensor hidden;  // [S, hidden]: the recorded step's output, rewritten by every replay
};

int64_t DecodeGraphs::SlotBucket(int64_t slots, int64_t max_slots) {
  int64_t bucket = 1;
  while (bucket < slots && bucket < 8) bucket *= 2;
  if (bucket < slots) bucket = (slots + 7) / 8 * 8;
  return std::min(bucket, max_slots);
}

int64_t DecodeGraphs::KeyBucket(int64_t keys, int64_t max_seq_len) {
  return std::min((keys + 255) / 256 * 256, max_seq_len);
}

absl::StatusOr<std::unique_ptr<DecodeGraphs>> DecodeGraphs::Create(const LlamaModel* model, KvCache* cache,
                                                                   std::vector<const LoraAdapter*> adapters) {
  if (cache->padding_slot() < 0)
    return absl::InvalidArgumentError("decode graphs: the cache has no padding slot");
  std::unique_ptr<DecodeGraphs> graphs(new DecodeGraphs());
  graphs->model_ = model;
  graphs->cache_ = cache;
  graphs->adapters_ = std::move(adapters);
  graphs->capture_ = model->options().device.is_cuda();
#if !PAD_CUDA_GRAPHS
  if (graphs->capture_) {
    return absl::UnimplementedError("cuda_graphs: this build's LibTorch has no CUDA graphs");
  }
#endif
  return graphs;
}

DecodeGraphs::~DecodeGraphs() = default;

int64_t DecodeGraphs::graphs() const {
  int64_t recorded = 0;
#if PAD_CUDA_GRAPHS
  for (const auto& [shape, graph] : graphs_) recorded += graph->graph != nullptr;
#endif
  return recorded;
}

absl::StatusOr<at::Tensor> DecodeGraphs::Forward(absl::Span<const ForwardRow> rows) {
  PAD_RETURN_IF_ERROR(model_->CheckRows(rows, *cache_, "decode graphs"));
  int64_t slots = 0, keys = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    const ForwardRow& row = rows[r];
    if (row.tokens.size() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("decode graphs: rows[", r, "] has ", row.tokens.size(), " tokens, not 1"));
    }
    if (row.adapter != nullptr &&
        std::find(adapters_.begin(), adapters_.end(), row.adapter) == adapters_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("decode graphs: rows[", r, "] has an adapter not given at Create"));
    }
    slots = std::max<int64_t>(slots, row.slot + 1);
    keys = std::max(keys, cache_->length(row.slot) + 1);
  }
  const int64_t s_bucket = SlotBucket(slots, cache_->max_slots());
  const int64_t l_bucket = KeyBucket(keys, cache_->max_seq_len());
  const int64_t n = static_cast<int64_t>(rows.size());

  // The step's inputs ([5, S], FixedDecodeStep) and then the rows' slots, to the device in one copy. Slots
  // that do not decode write into the padding slot and see one key.
  std::vector<int64_t> host(5 * s_bucket + n, 0);
  std::fill_n(host.begin() + 2 * s_bucket, s_bucket, cache_->padding_slot());
  std::fill_n(host.begin() + 3 * s_bucket, s_bucket, 1);
  std::fill_n(host.begin() + 4 * s_bucket, s_bucket, -1);
  for (int64_t r = 0; r < n; ++r) {
    const ForwardRow& row = rows[r];
    const int64_t s = row.slot;
    host[s] = row.tokens[0];
    host[s_bucket + s] = cache_->length(row.slot);
    host[2 * s_bucket + s] = s;
    host[3 * s_bucket + s] = cache_->length(row.slot) + 1;
    if (row.adapter != nullptr) {
      host[4 * s_bucket + s] = std::find(adapters_.begin(), adapters_.end(), row.adapter) - adapters_.begin();
    }
    host[5 * s_bucket + r] = s;
  }
  at::Tensor hidden;     // [S, hidden]
  at::Tensor row_slots;  // [n]
  try {
    const at::Device device = model_->options().device;
    at::Tensor uploaded = at::from_blob(host.data(), {static_cast<int64_t>(host.size())}, at::kLong);
    uploaded = device.is_cuda() ? uploaded.pin_memory().to(device, /*non_blocking=*/true) : uploaded.clone();
    at::Tensor& inputs = inputs_[s_bucket];
    if (!inputs.defined()) inputs = at::empty({5, s_bucket}, uploaded.options());
    inputs.copy_(uploaded.narrow(0, 0, 5 * s_bucket).view({5, s_bucket}));
    row_slots = uploaded.narrow(0, 5 * s_bucket, n);

    const FixedDecodeStep step = {s_bucket, l_bucket, inputs, adapters_};
    std::unique_ptr<Graph>& graph = graphs_[{s_bucket, l_bucket}];
    if (graph == nullptr) graph = std::make_unique<Graph>();
    if (!capture_) {
      PAD_ASSIGN_OR_RETURN(hidden, model_->DecodeFixed(step, cache_));
    } else if (graph->hidden.defined()) {
#if PAD_CUDA_GRAPHS
      graph->graph->replay();
#endif
      hidden = graph->hidden;
    } else {
      PAD_ASSIGN_OR_RETURN(hidden, Capture(step, graph.get()));
    }
    // A copy: the graph's output is rewritten by the next replay.
    hidden = hidden.index_select(0, row_slots);  // [n, hidden]
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("decode graphs: ", e.what_without_backtrace()));
  }
  for (const ForwardRow& row : rows) cache_->Advance(row.slot, 1);
  ++steps_;
  return hidden;
}

absl::StatusOr<at::Tensor> DecodeGraphs::Capture(const FixedDecodeStep& step, Graph* graph) {
#if PAD_CUDA_GRAPHS
  // As torch.cuda.graph does: on a side stream, once directly (this step's result, and the warm-up that
  // creates the libraries' handles and workspaces outside the capture), then recorded, every graph in the
  // first one's memory pool since they never run at once.
  at::cuda::MempoolId_t pool = {0, 0};
  for (const auto& [shape, other] : graphs_) {
    if (other->graph != nullptr) {
      pool = other->graph->pool();
      break;
    }
  }
  c10::cuda::device_synchronize();
  const c10::cuda::CUDAStream stream = c10::cuda::getStreamFromPool();
  absl::StatusOr<at::Tensor> result;
  {
    const c10::cuda::CUDAStreamGuard on_side_stream(stream);
    result = model_->DecodeFixed(step, cache_);
    if (!result.ok()) return result.status();
    c10::cuda::device_synchronize();
    auto recording = std::make_unique<at::cuda::CUDAGraph>();
    // Thread-local: only the engine thread uses the device, and no other thread's call may void the capture.
    recording->capture_begin(pool, cudaStreamCaptureModeThreadLocal);
    // Recorded, not run: the step's writes into the cache happened above.
    absl::StatusOr<at::Tensor> recorded = model_->DecodeFixed(step, cache_);
    recording->capture_end();
    if (!recorded.ok()) return recorded.status();
    graph->graph = std::move(recording);
    graph->hidden = *recorded;
  }
  c10::cuda::device_synchronize();
  return result;
#else
  (void)graph;
  return model_->DecodeFixed(step, cache_);
#endif
}

}  // namespace pad

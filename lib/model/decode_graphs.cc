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

std::vector<int64_t> DecodeGraphs::RowBuckets(int64_t max_rows) {
  std::vector<int64_t> buckets;
  for (int64_t rows = 1; rows <= max_rows;) {
    buckets.push_back(RowBucket(rows, max_rows));
    rows = buckets.back() + 1;
  }
  return buckets;
}

int64_t DecodeGraphs::RowBucket(int64_t rows, int64_t max_rows) {
  int64_t bucket = 1;
  while (bucket < rows && bucket < 8) bucket *= 2;
  if (bucket < rows) bucket = (rows + 7) / 8 * 8;
  return std::min(bucket, max_rows);
}

absl::StatusOr<std::unique_ptr<DecodeGraphs>> DecodeGraphs::Create(const LlamaModel* model, KvCache* cache,
                                                                   std::vector<const LoraAdapter*> adapters) {
  if (cache->padding_block() < 0)
    return absl::InvalidArgumentError("decode graphs: the cache has no padding block");
  std::unique_ptr<DecodeGraphs> graphs(new DecodeGraphs());
  graphs->model_ = model;
  graphs->cache_ = cache;
  graphs->adapters_ = std::move(adapters);
  graphs->max_blocks_ = (cache->max_seq_len() + cache->block_size() - 1) / cache->block_size();
  graphs->capture_ = model->options().device.is_cuda();
#if !PAD_CUDA_GRAPHS
  if (graphs->capture_) {
    return absl::UnimplementedError("cuda_graphs: this build's LibTorch has no CUDA graphs");
  }
#endif
  if (graphs->capture_) {
    // Every bucket recorded now, its rows all padding (they write only the padding block), so that no
    // request waits for a capture and the graphs' memory is taken before the first request.
    for (const int64_t bucket : RowBuckets(cache->max_slots())) {
      auto graph = std::make_unique<Graph>();
      try {
        PAD_RETURN_IF_ERROR(graphs->Capture(graphs->StepFor(bucket), graph.get()).status());
      } catch (const c10::Error& e) {
        return absl::InternalError(
            absl::StrCat("decode graphs: recording ", bucket, " rows: ", e.what_without_backtrace()));
      }
      graphs->graphs_[bucket] = std::move(graph);
    }
  }
  return graphs;
}

DecodeGraphs::~DecodeGraphs() = default;

int64_t DecodeGraphs::graphs() const {
  int64_t recorded = 0;
#if PAD_CUDA_GRAPHS
  for (const auto& [bucket, graph] : graphs_) recorded += graph->graph != nullptr;
#endif
  return recorded;
}

FixedDecodeStep DecodeGraphs::StepFor(int64_t bucket) {
  at::Tensor& inputs = inputs_[bucket];
  if (!inputs.defined()) {
    // Padding rows: token 0 at position 0, written to the padding block, seeing that one key.
    const int64_t padding_row = cache_->BlockRow(cache_->padding_block());
    inputs = at::zeros({5 + max_blocks_, bucket},
                       at::TensorOptions().dtype(at::kLong).device(model_->options().device));
    inputs[2].fill_(padding_row);
    inputs[3].fill_(1);
    inputs[4].fill_(-1);
    inputs.narrow(0, 5, max_blocks_).fill_(cache_->padding_block());
  }
  return {bucket, max_blocks_, inputs, adapters_};
}

absl::StatusOr<at::Tensor> DecodeGraphs::Forward(absl::Span<const ForwardRow> rows) {
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
  }
  PAD_RETURN_IF_ERROR(model_->PrepareRows(rows, cache_, "decode graphs"));
  const int64_t n = static_cast<int64_t>(rows.size());
  const int64_t bucket = RowBucket(n, cache_->max_slots());
  // The step's inputs ([5 + M, S], FixedDecodeStep), to the device in one copy; rows past n are padding.
  const int64_t padding_block = cache_->padding_block();
  std::vector<int64_t> host((5 + max_blocks_) * bucket, 0);
  auto at = [&](int64_t field, int64_t row) -> int64_t& { return host[field * bucket + row]; };
  for (int64_t r = 0; r < bucket; ++r) {
    const bool real = r < n;
    const int64_t position = real ? cache_->length(rows[r].slot) : 0;
    at(0, r) = real ? rows[r].tokens[0] : 0;
    at(1, r) = position;
    at(2, r) = real ? cache_->CacheRow(rows[r].slot, position) : cache_->BlockRow(padding_block);
    at(3, r) = position + 1;
    at(4, r) = -1;
    if (real && rows[r].adapter != nullptr) {
      at(4, r) = std::find(adapters_.begin(), adapters_.end(), rows[r].adapter) - adapters_.begin();
    }
    const std::vector<int32_t> no_blocks;
    const std::vector<int32_t>& table = real ? cache_->block_table(rows[r].slot) : no_blocks;
    for (int64_t b = 0; b < max_blocks_; ++b) {
      at(5 + b, r) = b < static_cast<int64_t>(table.size()) ? table[b] : padding_block;
    }
  }
  at::Tensor hidden;  // [n, hidden]
  try {
    const at::Device device = model_->options().device;
    at::Tensor uploaded = at::from_blob(host.data(), {5 + max_blocks_, bucket}, at::kLong);
    uploaded = device.is_cuda() ? uploaded.pin_memory().to(device, /*non_blocking=*/true) : uploaded.clone();
    const FixedDecodeStep step = StepFor(bucket);
    step.inputs.copy_(uploaded);
    const auto graph = graphs_.find(bucket);
    if (!capture_ || graph == graphs_.end()) {
      PAD_ASSIGN_OR_RETURN(hidden, model_->DecodeFixed(step, cache_));
    } else {
#if PAD_CUDA_GRAPHS
      graph->second->graph->replay();
#endif
      hidden = graph->second->hidden;
      ++replays_;
    }
    // A copy: the graph's output is rewritten by the next replay.
    hidden = hidden.narrow(0, 0, n).clone();  // [n, hidden]
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("decode graphs: ", e.what_without_backtrace()));
  }
  for (const ForwardRow& row : rows) cache_->Append(row.slot, row.tokens);
  ++steps_;
  return hidden;
}

absl::StatusOr<at::Tensor> DecodeGraphs::Capture(const FixedDecodeStep& step, Graph* graph) {
#if PAD_CUDA_GRAPHS
  // As torch.cuda.graph does: on a side stream, once directly (this step's result, and the warm-up that
  // creates the libraries' handles and workspaces outside the capture), then recorded, every graph in the
  // first one's memory pool since they never run at once.
  at::cuda::MempoolId_t pool = {0, 0};
  for (const auto& [bucket, other] : graphs_) {
    if (other->graph != nullptr) {
      pool = other->graph->pool();
      break;
    }
  }
  // On the configured device (--device=cuda:N), not the current one.
  const c10::cuda::CUDAGuard on_device(model_->options().device);
  c10::cuda::device_synchronize();
  const c10::cuda::CUDAStream stream = c10::cuda::getStreamFromPool(false, model_->options().device.index());
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

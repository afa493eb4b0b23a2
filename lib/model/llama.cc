#include "pad/llama.h"

#include <ATen/ATen.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "model/cpu_kernels.h"
#include "pad/safetensors.h"
#include "pad/status_macros.h"

namespace pad {

// The weight of a matrix product [out, in]: in the model dtype, or with int8 quantization the int8 values
// and their float32 group scales [out, in / kInt8Group].
struct LinearWeight {
  at::Tensor weight;  // [out, in]
  at::Tensor scales;  // [out, in / kInt8Group] float32, or undefined when not quantized

  int64_t nbytes() const { return weight.nbytes() + (scales.defined() ? scales.nbytes() : 0); }
};

// Projections are fused at load (q|k|v and gate|up) so a layer is four matrix products.
struct LlamaLayer {
  at::Tensor input_norm;    // [hidden]
  LinearWeight qkv;         // [(heads + 2 * kv_heads) * head_dim, hidden]
  at::Tensor qkv_bias;      // [(heads + 2 * kv_heads) * head_dim], or undefined
  LinearWeight o;           // [hidden, heads * head_dim]
  at::Tensor o_bias;        // [hidden], or undefined
  at::Tensor post_norm;     // [hidden]
  LinearWeight gate_up;     // [2 * intermediate, hidden]
  at::Tensor gate_up_bias;  // [2 * intermediate], or undefined
  LinearWeight down;        // [hidden, intermediate]
  at::Tensor down_bias;     // [hidden], or undefined
};

namespace {

using at::indexing::Slice;

// As transformers' LlamaRMSNorm: normalise in float32, scale in the model dtype.
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor x32 = x.to(at::kFloat);
  at::Tensor normed = x32 * at::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

// The same on the CPU kernels' one-pass loop; x [..., hidden] contiguous, float32 or bfloat16.
at::Tensor FusedRmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor out = at::empty_like(x);
  const int64_t n = x.size(-1);
  CpuRmsNorm(x.scalar_type() == at::kFloat ? ActivationFormat::kFloat32 : ActivationFormat::kBFloat16,
             x.data_ptr(), x.numel() / n, n, weight.data_ptr(), static_cast<float>(eps), out.data_ptr());
  return out;
}

// x [B, heads, T, head_dim]; cos, sin [B, 1, T, head_dim].
at::Tensor ApplyRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

// As transformers' default and llama3 rope initialisation, in float32.
at::Tensor InverseFrequencies(const LlamaConfig& config) {
  const int64_t dim = config.head_dim;
  at::Tensor exponents = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);
  at::Tensor inv_freq = 1.0 / at::pow(config.rope.theta, exponents);  // [dim / 2]
  if (config.rope.type != "llama3") return inv_freq;

  const RopeConfig& rope = config.rope;
  const double old_context = static_cast<double>(rope.original_max_position_embeddings);
  const double low_freq_wavelen = old_context / rope.low_freq_factor;
  const double high_freq_wavelen = old_context / rope.high_freq_factor;
  at::Tensor wavelen = 2 * M_PI / inv_freq;
  at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv_freq / rope.factor, inv_freq);
  at::Tensor smooth =
      (old_context / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor);
  at::Tensor smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled;
  at::Tensor medium =
      at::logical_not(wavelen < high_freq_wavelen) & at::logical_not(wavelen > low_freq_wavelen);
  return at::where(medium, smoothed, scaled);
}

// weight [out, in] float -> int8 values [out, in] and float32 scales [out, in / kInt8Group], round to
// nearest, each group's largest magnitude to ±127 (llama.cpp's Q8_0).
LinearWeight QuantizeInt8(const at::Tensor& weight) {
  const at::Tensor groups = weight.to(at::kFloat).view({weight.size(0), -1, kInt8Group});  // [out, in/32, 32]
  at::Tensor scales = groups.abs().amax(-1) / 127.0;                                       // [out, in / 32]
  const at::Tensor values = (groups / scales.clamp_min(1e-30).unsqueeze(-1)).round().to(at::kChar);
  return {values.view_as(weight).contiguous(), scales.contiguous()};
}

// int8 values [n, in] and scales [n, in / kInt8Group] -> [n, in] in `dtype`.
at::Tensor Dequantize(const at::Tensor& values, const at::Tensor& scales, at::ScalarType dtype) {
  const int64_t n = values.size(0);
  return (values.to(at::kFloat).view({n, -1, kInt8Group}) * scales.unsqueeze(-1)).view_as(values).to(dtype);
}

// The weight as the products use it: quantized with int8 quantization, else as loaded.
LinearWeight Prepare(const at::Tensor& weight, Quantization quantization) {
  if (quantization == Quantization::kInt8) return QuantizeInt8(weight);
  return {weight, at::Tensor()};
}

// Up to this many rows a product runs on the CPU kernels; more rows (a prefill) go to a GEMM, whose cache
// blocking wins once the weights are no longer the cost (int8 weights are dequantized for it). Measured by
// bench_linear (bench/RESULTS.md): in float32 the kernels are 1.8-2.5x faster at 1-4 rows and still 1.2-2x
// at 64. In bfloat16, with AVX512_BF16, oneDNN's BF16 GEMM wins from 16 rows; without it LibTorch has no
// fast bfloat16 GEMM (35 GFLOP/s on AVX2, 70 on AVX-512), and the kernels, widening to float32, are 2-3.5x
// faster up to 256 rows; past 64 rows on AVX2 MKL's float32 GEMM on widened weights is faster still.
int64_t MaxKernelRows(CpuIsa isa, at::ScalarType weight_dtype) {
  if (weight_dtype != at::kBFloat16) return 64;
  switch (isa) {
    case CpuIsa::kAvx512Bf16:
      return 16;
    case CpuIsa::kAvx512:
      return 256;
    default:
      return 64;
  }
}

// Whether LibTorch's own GEMM is slow for these weights here: bfloat16 without AVX512_BF16 (bench_linear), so
// that products past the kernels' rows run in float32 on the weights widened for the call.
bool WidenForGemm(CpuIsa isa, const at::Tensor& w) {
  return w.scalar_type() == at::kBFloat16 && w.device().is_cpu() && isa != CpuIsa::kNone &&
         isa < CpuIsa::kAvx512Bf16;
}

// x [..., in], weight [out, in], bias [out] or undefined -> [..., out] in x's dtype, plus `residual`
// [..., out] when defined (on the kernels in the same pass, rounded as the separate add would be).
at::Tensor Linear(CpuIsa isa, const at::Tensor& x, const LinearWeight& weight, const at::Tensor& bias,
                  const at::Tensor& residual = at::Tensor()) {
  const at::Tensor& w = weight.weight;
  const int64_t in = x.size(-1), out = w.size(0), rows = x.numel() / in;
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = out;
  if (isa == CpuIsa::kNone || rows > MaxKernelRows(isa, w.scalar_type()) || rows == 0 || !w.is_contiguous()) {
    at::Tensor y;                // [..., out]
    if (WidenForGemm(isa, w)) {  // float32 sums rounded once to x's dtype, as LibTorch's bfloat16 GEMM rounds
      y = at::linear(x.to(at::kFloat), w.to(at::kFloat),
                     bias.defined() ? std::optional<at::Tensor>(bias.to(at::kFloat)) : std::nullopt)
              .to(x.scalar_type());
    } else {
      y = at::linear(x, weight.scales.defined() ? Dequantize(w, weight.scales, x.scalar_type()) : w,
                     bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt);
    }
    return residual.defined() ? residual + y : y;
  }
  at::Tensor y = at::empty(shape, x.options());  // [..., out]
  const at::Tensor r = residual.defined() ? residual.contiguous() : residual;
  const CpuOutput output = {
      x.scalar_type() == at::kFloat ? ActivationFormat::kFloat32 : ActivationFormat::kBFloat16, y.data_ptr(),
      out, bias.defined() ? bias.data_ptr() : nullptr, r.defined() ? r.data_ptr() : nullptr};
  if (w.scalar_type() == at::kBFloat16 && x.scalar_type() == at::kBFloat16 && isa == CpuIsa::kAvx512Bf16) {
    const at::Tensor x16 = x.reshape({rows, in}).contiguous();  // [rows, in]
    CpuLinearBf16(isa, static_cast<const uint16_t*>(x16.data_ptr()), in, rows,
                  {WeightFormat::kBFloat16, w.data_ptr(), nullptr, out, in}, output);
  } else {
    const WeightFormat format = weight.scales.defined()         ? WeightFormat::kInt8
                                : w.scalar_type() == at::kFloat ? WeightFormat::kFloat32
                                                                : WeightFormat::kBFloat16;
    const at::Tensor x32 = x.reshape({rows, in}).to(at::kFloat).contiguous();  // [rows, in]
    CpuLinear(
        isa, x32.data_ptr<float>(), in, rows,
        {format, w.data_ptr(), weight.scales.defined() ? weight.scales.data_ptr<float>() : nullptr, out, in},
        output);
  }
  return y;
}

// The rows of a batch that run with one adapter; `rows` is undefined when that is every row.
struct AdapterRows {
  const LoraAdapter* adapter;
  at::Tensor rows;  // [n] int64 batch indices
};

// x [B, T, in] -> [B, T, out]: the base projection, plus each adapter's low-rank update on its rows, plus
// `residual` [B, T, out] when defined (added by the product itself unless an update comes between).
at::Tensor Project(CpuIsa isa, const at::Tensor& x, const LinearWeight& weight, const at::Tensor& bias,
                   const std::vector<AdapterRows>& groups, int64_t layer, LoraUpdate LoraLayer::*update,
                   const at::Tensor& residual = at::Tensor()) {
  const bool adapted = std::any_of(groups.begin(), groups.end(), [&](const AdapterRows& group) {
    return (group.adapter->layer(layer).*update).defined();
  });
  at::Tensor y = Linear(isa, x, weight, bias, adapted ? at::Tensor() : residual);
  for (const AdapterRows& group : groups) {
    const LoraUpdate& lora = group.adapter->layer(layer).*update;
    if (!lora.defined()) continue;
    if (!group.rows.defined()) {
      y.add_(at::linear(at::linear(x, lora.a), lora.b));
    } else {
      y.index_add_(0, group.rows, at::linear(at::linear(x.index_select(0, group.rows), lora.a), lora.b));
    }
  }
  return adapted && residual.defined() ? residual + y : y;
}

// x [S, 1, in] -> [S, 1, out] as Project, for a fixed-shape step: each adapter's update is computed for
// every row and kept where its mask [S, 1, 1] (1 or 0, in x's dtype) selects the row, so that the step's
// shapes do not depend on which rows use which adapter.
at::Tensor ProjectMasked(CpuIsa isa, const at::Tensor& x, const LinearWeight& weight, const at::Tensor& bias,
                         absl::Span<const LoraAdapter* const> adapters, const std::vector<at::Tensor>& masks,
                         int64_t layer, LoraUpdate LoraLayer::*update,
                         const at::Tensor& residual = at::Tensor()) {
  at::Tensor y = Linear(isa, x, weight, bias);
  for (size_t a = 0; a < adapters.size(); ++a) {
    const LoraUpdate& lora = adapters[a]->layer(layer).*update;
    if (lora.defined()) y = y + at::linear(at::linear(x, lora.a), lora.b) * masks[a];
  }
  return residual.defined() ? residual + y : y;
}

std::string LayerName(int64_t layer, const char* rest) {
  return absl::StrCat("model.layers.", layer, ".", rest);
}

}  // namespace

LlamaModel::LlamaModel(LlamaConfig config, ModelOptions options)
    : config_(std::move(config)),
      options_(options),
      kernel_isa_(options.cpu_kernels && options.device.is_cpu() &&
                          (options.dtype == at::kFloat || options.dtype == at::kBFloat16)
                      ? DetectCpuIsa()
                      : CpuIsa::kNone) {}

LlamaModel::~LlamaModel() = default;

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Load(const std::string& model_dir,
                                                             const ModelOptions& options) {
  PAD_ASSIGN_OR_RETURN(LlamaConfig config, LlamaConfig::FromModelDir(model_dir));
  PAD_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint, Checkpoint::OpenDir(model_dir));
  PAD_ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model, FromTensors(config, *checkpoint, options));
  model->dir_ = model_dir;
  return model;
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::FromTensors(const LlamaConfig& config,
                                                                    const TensorSource& tensors,
                                                                    const ModelOptions& options) {
  std::unique_ptr<LlamaModel> model(new LlamaModel(config, options));
  if (options.quantization == Quantization::kInt8) {
    if (model->kernel_isa_ == CpuIsa::kNone) {
      return absl::InvalidArgumentError(
          "quantization int8: runs on the CPU kernels only (device cpu, cpu_kernels on, dtype float32 or "
          "bfloat16, a CPU with AVX2)");
    }
    for (const int64_t in :
         {config.hidden_size, config.num_attention_heads * config.head_dim, config.intermediate_size}) {
      if (in % kInt8Group != 0) {
        return absl::InvalidArgumentError(absl::StrCat("quantization int8: the model's input width ", in,
                                                       " is not a multiple of ", kInt8Group));
      }
    }
  }
  const auto to = at::TensorOptions().dtype(options.dtype).device(options.device);
  const int64_t hidden = config.hidden_size, head_dim = config.head_dim;
  const int64_t q_rows = config.num_attention_heads * head_dim,
                kv_rows = config.num_key_value_heads * head_dim;
  const int64_t inter = config.intermediate_size;

  auto load = [&](const std::string& name, std::vector<int64_t> shape) {
    return tensors.Load(name, shape, to);
  };
  PAD_ASSIGN_OR_RETURN(model->embed_tokens_, load("model.embed_tokens.weight", {config.vocab_size, hidden}));
  PAD_ASSIGN_OR_RETURN(model->final_norm_, load("model.norm.weight", {hidden}));
  at::Tensor lm_head = model->embed_tokens_;
  if (!config.tie_word_embeddings) {
    PAD_ASSIGN_OR_RETURN(lm_head, load("lm_head.weight", {config.vocab_size, hidden}));
  }
  try {
    LinearWeight prepared = Prepare(lm_head, options.quantization);
    model->lm_head_ = prepared.weight;
    model->lm_head_scales_ = prepared.scales;
    for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
      LlamaLayer layer;
      PAD_ASSIGN_OR_RETURN(layer.input_norm, load(LayerName(i, "input_layernorm.weight"), {hidden}));
      PAD_ASSIGN_OR_RETURN(layer.post_norm, load(LayerName(i, "post_attention_layernorm.weight"), {hidden}));
      PAD_ASSIGN_OR_RETURN(at::Tensor q, load(LayerName(i, "self_attn.q_proj.weight"), {q_rows, hidden}));
      PAD_ASSIGN_OR_RETURN(at::Tensor k, load(LayerName(i, "self_attn.k_proj.weight"), {kv_rows, hidden}));
      PAD_ASSIGN_OR_RETURN(at::Tensor v, load(LayerName(i, "self_attn.v_proj.weight"), {kv_rows, hidden}));
      PAD_ASSIGN_OR_RETURN(at::Tensor o, load(LayerName(i, "self_attn.o_proj.weight"), {hidden, q_rows}));
      layer.qkv = Prepare(at::cat({q, k, v}, 0), options.quantization);
      layer.o = Prepare(o, options.quantization);
      if (config.attention_bias) {
        PAD_ASSIGN_OR_RETURN(at::Tensor qb, load(LayerName(i, "self_attn.q_proj.bias"), {q_rows}));
        PAD_ASSIGN_OR_RETURN(at::Tensor kb, load(LayerName(i, "self_attn.k_proj.bias"), {kv_rows}));
        PAD_ASSIGN_OR_RETURN(at::Tensor vb, load(LayerName(i, "self_attn.v_proj.bias"), {kv_rows}));
        PAD_ASSIGN_OR_RETURN(layer.o_bias, load(LayerName(i, "self_attn.o_proj.bias"), {hidden}));
        layer.qkv_bias = at::cat({qb, kb, vb}, 0);
      }
      PAD_ASSIGN_OR_RETURN(at::Tensor gate, load(LayerName(i, "mlp.gate_proj.weight"), {inter, hidden}));
      PAD_ASSIGN_OR_RETURN(at::Tensor up, load(LayerName(i, "mlp.up_proj.weight"), {inter, hidden}));
      PAD_ASSIGN_OR_RETURN(at::Tensor down, load(LayerName(i, "mlp.down_proj.weight"), {hidden, inter}));
      layer.gate_up = Prepare(at::cat({gate, up}, 0), options.quantization);
      layer.down = Prepare(down, options.quantization);
      if (config.mlp_bias) {
        PAD_ASSIGN_OR_RETURN(at::Tensor gb, load(LayerName(i, "mlp.gate_proj.bias"), {inter}));
        PAD_ASSIGN_OR_RETURN(at::Tensor ub, load(LayerName(i, "mlp.up_proj.bias"), {inter}));
        PAD_ASSIGN_OR_RETURN(layer.down_bias, load(LayerName(i, "mlp.down_proj.bias"), {hidden}));
        layer.gate_up_bias = at::cat({gb, ub}, 0);
      }
      model->layers_.push_back(std::move(layer));
    }
    model->inv_freq_ = InverseFrequencies(config).to(options.device);
  } catch (const c10::Error& e) {
    return absl::ResourceExhaustedError(absl::StrCat("loading weights: ", e.what_without_backtrace()));
  }
  return model;
}

const char* LlamaModel::cpu_kernels() const { return CpuIsaName(kernel_isa_); }

int64_t LlamaModel::parameter_bytes() const {
  int64_t total = embed_tokens_.nbytes() + final_norm_.nbytes();
  if (!lm_head_.is_same(embed_tokens_)) total += lm_head_.nbytes();
  if (lm_head_scales_.defined()) total += lm_head_scales_.nbytes();
  for (const LlamaLayer& layer : layers_) {
    for (const at::Tensor* t : {&layer.input_norm, &layer.qkv_bias, &layer.o_bias, &layer.post_norm,
                                &layer.gate_up_bias, &layer.down_bias}) {
      if (t->defined()) total += t->nbytes();
    }
    for (const LinearWeight* w : {&layer.qkv, &layer.o, &layer.gate_up, &layer.down}) total += w->nbytes();
  }
  return total;
}

absl::Status LlamaModel::CheckRows(absl::Span<const ForwardRow> rows, const KvCache& cache,
                                   absl::string_view caller) const {
  if (rows.empty()) return absl::InvalidArgumentError(absl::StrCat(caller, ": no rows"));
  std::vector<bool> seen(cache.max_slots(), false);
  for (size_t r = 0; r < rows.size(); ++r) {
    const ForwardRow& row = rows[r];
    if (row.slot < 0 || row.slot >= cache.max_slots() || !cache.in_use(row.slot) || seen[row.slot]) {
      return absl::InvalidArgumentError(absl::StrCat(caller, ": rows[", r, "].slot ", row.slot,
                                                     " is not an allocated slot, or appears twice"));
    }
    seen[row.slot] = true;
    if (row.tokens.empty())
      return absl::InvalidArgumentError(absl::StrCat(caller, ": rows[", r, "] has no tokens"));
    for (int32_t token : row.tokens) {
      if (token < 0 || token >= config_.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(caller, ": rows[", r, "] token ", token,
                                                       " outside the vocabulary of ", config_.vocab_size));
      }
    }
    if (cache.length(row.slot) + static_cast<int64_t>(row.tokens.size()) > cache.max_seq_len()) {
      return absl::OutOfRangeError(absl::StrCat(caller, ": rows[", r, "] would hold ",
                                                cache.length(row.slot) + row.tokens.size(),
                                                " tokens, more than max_seq_len ", cache.max_seq_len()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> LlamaModel::Forward(absl::Span<const ForwardRow> rows, KvCache* cache,
                                               bool all_positions) const {
  PAD_RETURN_IF_ERROR(CheckRows(rows, *cache, "forward"));
  try {
    return ForwardUnchecked(rows, cache, all_positions);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("forward: ", e.what_without_backtrace()));
  }
}

at::Tensor LlamaModel::ForwardUnchecked(absl::Span<const ForwardRow> rows, KvCache* cache,
                                        bool all_positions) const {
  const int64_t batch = static_cast<int64_t>(rows.size());
  int64_t steps = 0;  // longest row: rows are padded to it
  for (const ForwardRow& row : rows) steps = std::max<int64_t>(steps, row.tokens.size());

  // Host-side layout of the padded batch.
  std::vector<int64_t> ids(batch * steps, 0), positions(batch * steps, 0), ends(batch), slots(batch);
  std::vector<int64_t> valid, valid_slot, valid_pos, last;  // flat indices into [batch * steps]
  int64_t key_len = 0, first_slot = cache->max_slots();
  for (int64_t b = 0; b < batch; ++b) {
    const ForwardRow& row = rows[b];
    const int64_t start = cache->length(row.slot), len = static_cast<int64_t>(row.tokens.size());
    for (int64_t t = 0; t < steps; ++t) {
      positions[b * steps + t] = start + t;
      if (t < len) {
        ids[b * steps + t] = row.tokens[t];
        valid.push_back(b * steps + t);
        valid_slot.push_back(row.slot);
        valid_pos.push_back(start + t);
      }
    }
    last.push_back(b * steps + len - 1);
    ends[b] = start + len;
    slots[b] = row.slot;
    key_len = std::max(key_len, ends[b]);
    first_slot = std::min<int64_t>(first_slot, row.slot);
  }
  // Attention reads the cache in place when the rows' slots are one run [first_slot, first_slot + batch), in
  // any order (the decoder keeps its slots packed so that they are); the queries are then put in slot order.
  // Otherwise the rows' slots are gathered, a copy of the used cache per layer.
  std::vector<int64_t> by_slot(batch, -1);  // row whose slot is first_slot + i
  bool slot_run = true, in_order = true;
  for (int64_t b = 0; b < batch && slot_run; ++b) {
    const int64_t i = slots[b] - first_slot;
    slot_run = i < batch && by_slot[i] < 0;
    if (slot_run) by_slot[i] = b;
    in_order = in_order && i == b;
  }
  std::vector<int64_t> to_row(batch);  // position in slot order of row b
  for (int64_t b = 0; b < batch; ++b) to_row[b] = slots[b] - first_slot;

  // Every index goes to the device in one copy (from pinned memory, asynchronously, on a GPU).
  std::vector<int64_t> host;
  auto append = [&](const std::vector<int64_t>& v) {
    const int64_t offset = static_cast<int64_t>(host.size());
    host.insert(host.end(), v.begin(), v.end());
    return std::make_pair(offset, static_cast<int64_t>(v.size()));
  };
  const auto ids_at = append(ids), positions_at = append(positions), ends_at = append(ends),
             slots_at = append(slots), valid_at = append(valid), valid_slot_at = append(valid_slot),
             valid_pos_at = append(valid_pos), last_at = append(last), by_slot_at = append(by_slot),
             to_row_at = append(to_row);
  std::vector<std::pair<const LoraAdapter*, std::pair<int64_t, int64_t>>> adapter_at;  // rows with each
  for (int64_t b = 0; b < batch; ++b) {
    if (rows[b].adapter == nullptr) continue;
    auto same = [&](const auto& g) { return g.first == rows[b].adapter; };
    if (std::none_of(adapter_at.begin(), adapter_at.end(), same)) {
      std::vector<int64_t> members;
      for (int64_t c = b; c < batch; ++c) {
        if (rows[c].adapter == rows[b].adapter) members.push_back(c);
      }
      adapter_at.emplace_back(rows[b].adapter, append(members));
    }
  }
  at::Tensor uploaded = at::from_blob(host.data(), {static_cast<int64_t>(host.size())}, at::kLong);
  if (options_.device.is_cuda()) {
    uploaded = uploaded.pin_memory().to(options_.device, /*non_blocking=*/true);
  } else {
    uploaded = uploaded.clone();  // `host` dies with this call; the CPU tensors must not alias it
  }
  auto view = [&](std::pair<int64_t, int64_t> at) { return uploaded.narrow(0, at.first, at.second); };
  const at::Tensor ids_t = view(ids_at);
  const at::Tensor positions_t = view(positions_at).view({batch, steps});  // [B, T]
  const at::Tensor ends_t = view(ends_at);                                 // [B]
  const at::Tensor slots_t = view(slots_at);                               // [B]
  const at::Tensor valid_t = view(valid_at);                               // [N]
  const at::Tensor valid_slot_t = view(valid_slot_at);                     // [N]
  const at::Tensor valid_pos_t = view(valid_pos_at);                       // [N]
  const at::Tensor last_t = view(last_at);                                 // [B]
  const at::Tensor by_slot_t = view(by_slot_at);                           // [B]
  const at::Tensor to_row_t = view(to_row_at);                             // [B]
  std::vector<AdapterRows> adapter_groups;
  for (const auto& [adapter, at] : adapter_at) {
    adapter_groups.push_back({adapter, at.second == batch ? at::Tensor() : view(at)});
  }
  const auto long_options = at::TensorOptions().dtype(at::kLong);

  const int64_t hidden = config_.hidden_size, head_dim = config_.head_dim;
  const int64_t heads = config_.num_attention_heads, kv_heads = config_.num_key_value_heads;
  const int64_t inter = config_.intermediate_size;
  const double eps = config_.rms_norm_eps;

  at::Tensor x = embed_tokens_.index_select(0, ids_t).view({batch, steps, hidden});  // [B, T, hidden]

  // Rotary tables as transformers builds them: float32 angles, cast to the model dtype.
  at::Tensor angles = positions_t.to(at::kFloat).unsqueeze(-1) * inv_freq_;  // [B, T, head_dim / 2]
  at::Tensor emb = at::cat({angles, angles}, -1);                            // [B, T, head_dim]
  const at::Tensor cos = emb.cos().to(options_.dtype).unsqueeze(1);          // [B, 1, T, head_dim]
  const at::Tensor sin = emb.sin().to(options_.dtype).unsqueeze(1);          // [B, 1, T, head_dim]

  // A decode step (one token a row) on the CPU kernels runs the norms, rotary embedding and cache writes,
  // the attention and SiLU, as one pass each (lib/model/cpu_kernels.h) instead of a few
  // dozen LibTorch operations a layer.
  const bool fused = kernel_isa_ != CpuIsa::kNone && steps == 1;
  const bool fused_attention = fused && DecodeAttentionSupported(kernel_isa_, head_dim);
  const ActivationFormat format =
      options_.dtype == at::kFloat ? ActivationFormat::kFloat32 : ActivationFormat::kBFloat16;

  // A query at position p sees keys at positions <= p of its own sequence.
  at::Tensor mask;  // [B, 1, T, L]
  if (!fused_attention) {
    at::Tensor key_positions = at::arange(key_len, long_options.device(options_.device));  // [L]
    mask = (key_positions.view({1, 1, 1, key_len}) <= positions_t.view({batch, 1, steps, 1})) &
           (key_positions.view({1, 1, 1, key_len}) < ends_t.view({batch, 1, 1, 1}));
  }
  auto norm = [&](const at::Tensor& input, const at::Tensor& weight) {
    return fused ? FusedRmsNorm(input, weight, eps) : RmsNorm(input, weight, eps);
  };
  for (size_t l = 0; l < layers_.size(); ++l) {
    const LlamaLayer& layer = layers_[l];
    at::Tensor h = norm(x, layer.input_norm);
    at::Tensor qkv = Project(kernel_isa_, h, layer.qkv, layer.qkv_bias, adapter_groups, l, &LoraLayer::qkv);
    // qkv: [B, T, (heads + 2 kv_heads) * head_dim]
    at::Tensor& cache_k = cache->keys(l);    // [slots, kv_heads, max_seq, head_dim]
    at::Tensor& cache_v = cache->values(l);  // [slots, kv_heads, max_seq, head_dim]
    if (fused) {
      // Rotates q and k inside qkv and writes k and v into the cache, every row at its slot and position.
      const DecodeRope shape = {batch,           heads,        kv_heads,        head_dim,
                                cache_k.size(2), slots.data(), positions.data()};
      qkv = qkv.contiguous();
      CpuRopeAndCache(format, shape, qkv.data_ptr(), cos.data_ptr(), sin.data_ptr(), cache_k.data_ptr(),
                      cache_v.data_ptr());
    }
    at::Tensor attn;  // [B, T, heads * head_dim]
    if (fused_attention) {
      attn = at::empty({batch, steps, heads * head_dim}, x.options());
      const DecodeAttention shape = {batch,           heads,        kv_heads,     head_dim,
                                     cache_k.size(2), qkv.size(-1), slots.data(), ends.data()};
      CpuDecodeAttention(kernel_isa_, format, shape, qkv.data_ptr(), cache_k.data_ptr(), cache_v.data_ptr(),
                         attn.data_ptr());
    } else {
      at::Tensor q =
          qkv.narrow(-1, 0, heads * head_dim).view({batch, steps, heads, head_dim}).transpose(1, 2);
      if (!fused) {
        at::Tensor k = qkv.narrow(-1, heads * head_dim, kv_heads * head_dim)
                           .view({batch, steps, kv_heads, head_dim})
                           .transpose(1, 2);
        at::Tensor v = qkv.narrow(-1, (heads + kv_heads) * head_dim, kv_heads * head_dim)
                           .view({batch, steps, kv_heads, head_dim})
                           .transpose(1, 2);
        q = ApplyRope(q, cos, sin);  // [B, heads, T, head_dim]
        k = ApplyRope(k, cos, sin);  // [B, kv_heads, T, head_dim]
        // Only real (unpadded) tokens are written to the cache.
        cache_k.index_put_(
            {valid_slot_t, Slice(), valid_pos_t},
            k.transpose(1, 2).reshape({batch * steps, kv_heads, head_dim}).index_select(0, valid_t));
        cache_v.index_put_(
            {valid_slot_t, Slice(), valid_pos_t},
            v.transpose(1, 2).reshape({batch * steps, kv_heads, head_dim}).index_select(0, valid_t));
      }
      // Up to the longest sequence only: a view of one slot run, else the rows' slots gathered.
      at::Tensor keys = cache_k.narrow(2, 0, key_len);    // [slots, kv_heads, L, head_dim]
      at::Tensor values = cache_v.narrow(2, 0, key_len);  // [slots, kv_heads, L, head_dim]
      keys = slot_run ? keys.narrow(0, first_slot, batch) : keys.index_select(0, slots_t);
      values = slot_run ? values.narrow(0, first_slot, batch) : values.index_select(0, slots_t);
      const bool permute = slot_run && !in_order;  // queries (and their masks) into slot order and back

      attn = at::scaled_dot_product_attention(permute ? q.index_select(0, by_slot_t) : q, keys, values,
                                              permute ? mask.index_select(0, by_slot_t) : mask, 0.0,
                                              /*is_causal=*/false, std::nullopt,
                                              /*enable_gqa=*/true);  // [B, heads, T, head_dim]
      if (permute) attn = attn.index_select(0, to_row_t);
      attn = attn.transpose(1, 2).reshape({batch, steps, heads * head_dim});
    }
    x = Project(kernel_isa_, attn, layer.o, layer.o_bias, adapter_groups, l, &LoraLayer::o, x);

    h = norm(x, layer.post_norm);
    at::Tensor gate_up =
        Project(kernel_isa_, h, layer.gate_up, layer.gate_up_bias, adapter_groups, l, &LoraLayer::gate_up);
    // gate_up: [B, T, 2 * inter]
    at::Tensor act;  // [B, T, inter]
    if (fused_attention) {
      act = at::empty({batch, steps, inter}, x.options());
      CpuSiluMul(kernel_isa_, format, gate_up.data_ptr(), batch, inter, act.data_ptr());
    } else {
      act = at::silu(gate_up.narrow(-1, 0, inter)) * gate_up.narrow(-1, inter, inter);
    }
    x = Project(kernel_isa_, act, layer.down, layer.down_bias, adapter_groups, l, &LoraLayer::down, x);
  }
  x = norm(x, final_norm_).view({batch * steps, hidden});

  for (const ForwardRow& row : rows) cache->Advance(row.slot, static_cast<int64_t>(row.tokens.size()));
  return x.index_select(0, all_positions ? valid_t : last_t);
}

absl::StatusOr<at::Tensor> LlamaModel::DecodeFixed(const FixedDecodeStep& step, KvCache* cache) const {
  const int64_t slots = step.slots, key_len = step.key_len;
  if (cache->padding_slot() < 0)
    return absl::InvalidArgumentError("fixed decode: the cache has no padding slot");
  if (slots < 1 || slots > cache->max_slots() || key_len < 1 || key_len > cache->max_seq_len()) {
    return absl::InvalidArgumentError(
        absl::StrCat("fixed decode: ", slots, " slots of ", key_len, " keys do not fit the cache"));
  }
  try {
    const int64_t hidden = config_.hidden_size, head_dim = config_.head_dim;
    const int64_t heads = config_.num_attention_heads, kv_heads = config_.num_key_value_heads;
    const int64_t groups = heads / kv_heads, inter = config_.intermediate_size;
    const double eps = config_.rms_norm_eps;
    const at::Tensor ids = step.inputs[0], positions = step.inputs[1];         // [S] each
    const at::Tensor write_slots = step.inputs[2], key_ends = step.inputs[3];  // [S] each
    const at::Tensor adapter_index = step.inputs[4];                           // [S]
    std::vector<at::Tensor> masks;  // per adapter: [S, 1, 1] in the model dtype
    for (size_t a = 0; a < step.adapters.size(); ++a) {
      masks.push_back(adapter_index.eq(static_cast<int64_t>(a)).to(options_.dtype).view({slots, 1, 1}));
    }
    at::Tensor x = embed_tokens_.index_select(0, ids).view({slots, 1, hidden});  // [S, 1, hidden]
    const at::Tensor angles =
        positions.to(at::kFloat).view({slots, 1, 1}) * inv_freq_;               // [S, 1, head_dim / 2]
    const at::Tensor emb = at::cat({angles, angles}, -1);                       // [S, 1, head_dim]
    const at::Tensor cos = emb.cos().to(options_.dtype).unsqueeze(1);           // [S, 1, 1, head_dim]
    const at::Tensor sin = emb.sin().to(options_.dtype).unsqueeze(1);           // [S, 1, 1, head_dim]
    const at::Tensor key_positions = at::arange(key_len, positions.options());  // [L]
    const at::Tensor mask =
        key_positions.view({1, 1, 1, key_len}) < key_ends.view({slots, 1, 1, 1});  // [S, 1, 1, L]

    for (size_t l = 0; l < layers_.size(); ++l) {
      const LlamaLayer& layer = layers_[l];
      at::Tensor h = RmsNorm(x, layer.input_norm, eps);
      const at::Tensor qkv =
          ProjectMasked(kernel_isa_, h, layer.qkv, layer.qkv_bias, step.adapters, masks, l, &LoraLayer::qkv);
      // qkv: [S, 1, (heads + 2 kv_heads) * head_dim]
      at::Tensor q = qkv.narrow(-1, 0, heads * head_dim).view({slots, 1, heads, head_dim}).transpose(1, 2);
      at::Tensor k = qkv.narrow(-1, heads * head_dim, kv_heads * head_dim)
                         .view({slots, 1, kv_heads, head_dim})
                         .transpose(1, 2);
      const at::Tensor v = qkv.narrow(-1, (heads + kv_heads) * head_dim, kv_heads * head_dim)
                               .view({slots, kv_heads, head_dim});  // [S, kv_heads, head_dim]
      q = ApplyRope(q, cos, sin);                                   // [S, heads, 1, head_dim]
      k = ApplyRope(k, cos, sin);                                   // [S, kv_heads, 1, head_dim]
      at::Tensor& cache_k = cache->keys(l);    // [slots + 1, kv_heads, max_seq, head_dim]
      at::Tensor& cache_v = cache->values(l);  // [slots + 1, kv_heads, max_seq, head_dim]
      cache_k.index_put_({write_slots, Slice(), positions}, k.squeeze(2));
      cache_v.index_put_({write_slots, Slice(), positions}, v);
      // Row s is slot s: the cache is read in place. A query head's group of kv_heads' heads goes in as that
      // kv head's queries (one query position each), so no backend needs grouped-query support.
      const at::Tensor keys =
          cache_k.narrow(0, 0, slots).narrow(2, 0, key_len);  // [S, kv_heads, L, head_dim]
      const at::Tensor values =
          cache_v.narrow(0, 0, slots).narrow(2, 0, key_len);  // [S, kv_heads, L, head_dim]
      const at::Tensor attn =
          at::scaled_dot_product_attention(q.reshape({slots, kv_heads, groups, head_dim}), keys, values,
                                           mask);  // [S, kv_heads, groups, head_dim]
      x = ProjectMasked(kernel_isa_, attn.reshape({slots, 1, heads * head_dim}), layer.o, layer.o_bias,
                        step.adapters, masks, l, &LoraLayer::o, x);
      h = RmsNorm(x, layer.post_norm, eps);
      const at::Tensor gate_up =
          ProjectMasked(kernel_isa_, h, layer.gate_up, layer.gate_up_bias, step.adapters, masks, l,
                        &LoraLayer::gate_up);  // [S, 1, 2 * inter]
      const at::Tensor act = at::silu(gate_up.narrow(-1, 0, inter)) * gate_up.narrow(-1, inter, inter);
      x = ProjectMasked(kernel_isa_, act, layer.down, layer.down_bias, step.adapters, masks, l,
                        &LoraLayer::down, x);
    }
    return RmsNorm(x, final_norm_, eps).view({slots, hidden});
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("fixed decode: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<at::Tensor> LlamaModel::Logits(const at::Tensor& hidden) const {
  try {
    return Linear(kernel_isa_, hidden.to(options_.dtype), {lm_head_, lm_head_scales_}, at::Tensor())
        .to(at::kFloat);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("logits: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<at::Tensor> LlamaModel::LogitsAt(const at::Tensor& hidden, const at::Tensor& token_ids) const {
  try {
    const int64_t n = token_ids.size(0), k = token_ids.size(1);
    const at::Tensor ids = token_ids.reshape({-1});   // [n * k]
    at::Tensor rows = lm_head_.index_select(0, ids);  // [n * k, hidden]
    if (lm_head_scales_.defined())
      rows = Dequantize(rows, lm_head_scales_.index_select(0, ids), options_.dtype);
    rows = rows.view({n, k, config_.hidden_size});  // [n, k, hidden]
    return at::bmm(rows, hidden.to(options_.dtype).unsqueeze(-1)).squeeze(-1).to(at::kFloat);  // [n, k]
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("logits: ", e.what_without_backtrace()));
  }
}

}  // namespace pad

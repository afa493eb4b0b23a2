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

// x [..., heads, head_dim]; cos, sin broadcast to it ([..., 1, head_dim]).
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
// at 64. In bfloat16 with AVX512_BF16 they are 1.03-1.7x faster than oneDNN's BF16 GEMM up to 48 rows and
// mixed at 64 (0.9-1.3x). Without AVX512_BF16 LibTorch has no fast bfloat16 GEMM (35 GFLOP/s on AVX2, 70 on
// AVX-512); the kernels are 2-4.5x faster up to 256 rows, where on AVX2 they are as fast as MKL's float32
// GEMM on the weights widened for the call. int8 weights stay on the kernels up to 256 rows: dequantizing
// them whole for the GEMM costs more than the GEMM saves below about 512 rows (a 128-token prefill 1.3x
// faster, bench_generate).
int64_t MaxKernelRows(CpuIsa isa, at::ScalarType weight_dtype) {
  if (weight_dtype == at::kChar) return 256;
  if (weight_dtype != at::kBFloat16) return 64;
  switch (isa) {
    case CpuIsa::kAvx512Bf16:
      return 48;
    default:
      return 256;
  }
}

// Whether LibTorch's own GEMM is slow for these weights here: bfloat16 without AVX512_BF16 (bench_linear), so
// that products past the kernels' rows run in float32 on the weights widened for the call.
bool WidenForGemm(CpuIsa isa, const at::Tensor& w) {
  return w.scalar_type() == at::kBFloat16 && w.device().is_cpu() && isa != CpuIsa::kNone &&
         isa < CpuIsa::kAvx512Bf16;
}

// Which rows of a product run on the CPU kernels (`isa`; kNone: none): all of them up to MaxKernelRows, and
// past that the first `decode_rows` (a step's decode tokens, which a forward packs first) while the rest go
// to the GEMM, so that a decode row's result does not depend on the prompt tokens prefilled beside it.
struct KernelRows {
  CpuIsa isa = CpuIsa::kNone;
  int64_t decode_rows = 0;
};

// x [rows, in] -> y [rows, out] (contiguous, written) on the kernels, plus `residual` [rows, out] when
// defined.
void KernelLinear(CpuIsa isa, const at::Tensor& x, const LinearWeight& weight, const at::Tensor& bias,
                  const at::Tensor& residual, at::Tensor& y) {
  const at::Tensor& w = weight.weight;
  const int64_t in = x.size(-1), out = w.size(0), rows = x.size(0);
  const at::Tensor r = residual.defined() ? residual.contiguous() : residual;
  const CpuOutput output = {
      x.scalar_type() == at::kFloat ? ActivationFormat::kFloat32 : ActivationFormat::kBFloat16, y.data_ptr(),
      out, bias.defined() ? bias.data_ptr() : nullptr, r.defined() ? r.data_ptr() : nullptr};
  if (w.scalar_type() == at::kBFloat16 && x.scalar_type() == at::kBFloat16 && isa == CpuIsa::kAvx512Bf16) {
    const at::Tensor x16 = x.contiguous();  // [rows, in]
    CpuLinearBf16(isa, static_cast<const uint16_t*>(x16.data_ptr()), in, rows,
                  {WeightFormat::kBFloat16, w.data_ptr(), nullptr, out, in}, output);
  } else {
    const WeightFormat format = weight.scales.defined()         ? WeightFormat::kInt8
                                : w.scalar_type() == at::kFloat ? WeightFormat::kFloat32
                                                                : WeightFormat::kBFloat16;
    const at::Tensor x32 = x.to(at::kFloat).contiguous();  // [rows, in]
    CpuLinear(
        isa, x32.data_ptr<float>(), in, rows,
        {format, w.data_ptr(), weight.scales.defined() ? weight.scales.data_ptr<float>() : nullptr, out, in},
        output);
  }
}

// x [..., in] -> [..., in] float32 as int8 products see it (QuantizeForInt8), for products on dequantized
// int8 weights to equal the kernels'. REQUIRES: isa != kNone.
at::Tensor QuantizedActivations(CpuIsa isa, const at::Tensor& x) {
  const at::Tensor x32 = x.to(at::kFloat).contiguous();  // [..., in]
  at::Tensor quantized = at::empty_like(x32);            // [..., in]
  const int64_t in = x.size(-1);
  QuantizeForInt8(isa, x32.data_ptr<float>(), in, x32.numel() / in, in, quantized.data_ptr<float>());
  return quantized;
}

// x [..., in] -> [..., out] on LibTorch's GEMM, plus `residual` when defined.
at::Tensor GemmLinear(CpuIsa isa, const at::Tensor& x, const LinearWeight& weight, const at::Tensor& bias,
                      const at::Tensor& residual) {
  const at::Tensor& w = weight.weight;
  at::Tensor y;                // [..., out]
  if (WidenForGemm(isa, w)) {  // float32 sums rounded once to x's dtype, as LibTorch's bfloat16 GEMM rounds
    y = at::linear(x.to(at::kFloat), w.to(at::kFloat),
                   bias.defined() ? std::optional<at::Tensor>(bias.to(at::kFloat)) : std::nullopt)
            .to(x.scalar_type());
  } else if (weight.scales.defined()) {
    y = at::linear(QuantizedActivations(isa, x).to(x.scalar_type()),
                   Dequantize(w, weight.scales, x.scalar_type()),
                   bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt);
  } else {
    y = at::linear(x, w, bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt);
  }
  return residual.defined() ? residual + y : y;
}

// x [..., in], weight [out, in], bias [out] or undefined -> [..., out] in x's dtype, plus `residual`
// [..., out] when defined (on the kernels in the same pass, rounded as the separate add would be).
at::Tensor Linear(const KernelRows& kernel, const at::Tensor& x, const LinearWeight& weight,
                  const at::Tensor& bias, const at::Tensor& residual = at::Tensor()) {
  const at::Tensor& w = weight.weight;
  const int64_t in = x.size(-1), out = w.size(0), rows = x.numel() / in;
  const int64_t max_rows = MaxKernelRows(kernel.isa, w.scalar_type());
  const int64_t on_kernels = rows <= max_rows                 ? rows
                             : kernel.decode_rows <= max_rows ? kernel.decode_rows
                                                              : 0;
  if (kernel.isa == CpuIsa::kNone || on_kernels == 0 || !w.is_contiguous())
    return GemmLinear(kernel.isa, x, weight, bias, residual);
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = out;
  at::Tensor y = at::empty({rows, out}, x.options());                                   // [rows, out]
  const at::Tensor x2 = x.reshape({rows, in});                                          // [rows, in]
  const at::Tensor r2 = residual.defined() ? residual.reshape({rows, out}) : residual;  // [rows, out]
  auto part = [](const at::Tensor& t, int64_t start, int64_t length) {
    return t.defined() ? t.narrow(0, start, length) : t;
  };
  at::Tensor head = y.narrow(0, 0, on_kernels);  // [on_kernels, out], contiguous
  KernelLinear(kernel.isa, x2.narrow(0, 0, on_kernels), weight, bias, part(r2, 0, on_kernels), head);
  if (on_kernels < rows) {
    const int64_t rest = rows - on_kernels;
    y.narrow(0, on_kernels, rest)
        .copy_(
            GemmLinear(kernel.isa, x2.narrow(0, on_kernels, rest), weight, bias, part(r2, on_kernels, rest)));
  }
  return y.view(shape);
}

// The rows of a batch that run with one adapter; `rows` is undefined when that is every row.
struct AdapterRows {
  const LoraAdapter* adapter;
  at::Tensor rows;  // [n] int64 token indices
};

// x [N, in] -> [N, out]: the base projection, plus each adapter's low-rank update on its rows (tokens), plus
// `residual` [N, out] when defined (added by the product itself unless an update comes between).
at::Tensor Project(const KernelRows& kernel, const at::Tensor& x, const LinearWeight& weight,
                   const at::Tensor& bias, const std::vector<AdapterRows>& groups, int64_t layer,
                   LoraUpdate LoraLayer::*update, const at::Tensor& residual = at::Tensor()) {
  const bool adapted = std::any_of(groups.begin(), groups.end(), [&](const AdapterRows& group) {
    return (group.adapter->layer(layer).*update).defined();
  });
  at::Tensor y = Linear(kernel, x, weight, bias, adapted ? at::Tensor() : residual);
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

// x [S, in] -> [S, out] as Project, for a fixed-shape step: each adapter's update is computed for every
// row and kept where its mask [S, 1] (1 or 0, in x's dtype) selects the row, so that the step's
// shapes do not depend on which rows use which adapter.
at::Tensor ProjectMasked(CpuIsa isa, const at::Tensor& x, const LinearWeight& weight, const at::Tensor& bias,
                         absl::Span<const LoraAdapter* const> adapters, const std::vector<at::Tensor>& masks,
                         int64_t layer, LoraUpdate LoraLayer::*update,
                         const at::Tensor& residual = at::Tensor()) {
  at::Tensor y = Linear({isa}, x, weight, bias);
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

absl::Status LlamaModel::PrepareRows(absl::Span<const ForwardRow> rows, KvCache* cache_ptr,
                                     absl::string_view caller) const {
  const KvCache& cache = *cache_ptr;
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
  int64_t needed = 0;
  for (const ForwardRow& row : rows) {
    needed += cache.BlocksNeeded(row.slot, cache.length(row.slot) + static_cast<int64_t>(row.tokens.size()));
  }
  if (needed > cache.blocks_available()) {
    return absl::ResourceExhaustedError(absl::StrCat(caller, ": the rows need ", needed, " KV cache blocks, ",
                                                     cache.blocks_available(), " are free"));
  }
  for (const ForwardRow& row : rows) {
    cache_ptr->Reserve(row.slot, cache.length(row.slot) + static_cast<int64_t>(row.tokens.size()));
  }
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> LlamaModel::Forward(absl::Span<const ForwardRow> rows, KvCache* cache,
                                               bool all_positions) const {
  PAD_RETURN_IF_ERROR(PrepareRows(rows, cache, "forward"));
  try {
    return ForwardUnchecked(rows, cache, all_positions);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("forward: ", e.what_without_backtrace()));
  }
}

// The layout of a packed batch: rows' tokens concatenated, and where each token's key goes and what keys
// each row reads, on the host (the CPU kernels) and on the device (LibTorch's and FlashAttention's).
struct LlamaModel::PackedRows {
  int64_t rows = 0, tokens = 0, max_query = 0, max_keys = 0, max_blocks = 0;
  std::vector<int64_t> query_starts;  // [rows + 1]
  std::vector<int64_t> key_lengths;   // [rows]: keys after this forward
  std::vector<int32_t> block_tables;  // [rows, max_blocks], the padding past a row's blocks 0
  at::Tensor cache_rows;              // [tokens] int64 on the device: where each token's key and value go
};

at::Tensor LlamaModel::Attention(const at::Tensor& q, const at::Tensor& cache_k, const at::Tensor& cache_v,
                                 const PackedRows& p, const KvCache& cache) const {
  const int64_t heads = config_.num_attention_heads, kv_heads = config_.num_key_value_heads;
  const int64_t head_dim = config_.head_dim, block = cache.block_size();
  // FlashAttention's paged variable-length kernel reads the blocks in place (as [blocks, B, kv_heads, d] by
  // strides), grouped heads natively; its blocks must be a multiple of 256 tokens.
  if (options_.device.is_cuda() && (options_.dtype == at::kBFloat16 || options_.dtype == at::kHalf) &&
      block % 256 == 0 && head_dim % 8 == 0 && head_dim <= 256) {
    std::vector<int32_t> host(2 * (p.rows + 1));
    for (int64_t r = 0; r <= p.rows; ++r) host[r] = static_cast<int32_t>(p.query_starts[r]);
    for (int64_t r = 0; r < p.rows; ++r) host[p.rows + 2 + r] = host[p.rows + 1 + r] + p.key_lengths[r];
    host.insert(host.end(), p.block_tables.begin(), p.block_tables.end());
    const at::Tensor uploaded = at::from_blob(host.data(), {static_cast<int64_t>(host.size())}, at::kInt)
                                    .pin_memory()
                                    .to(options_.device, /*non_blocking=*/true);
    const at::Tensor cu_q = uploaded.narrow(0, 0, p.rows + 1),
                     cu_k = uploaded.narrow(0, p.rows + 1, p.rows + 1);
    const at::Tensor tables =
        uploaded.narrow(0, 2 * (p.rows + 1), p.rows * p.max_blocks).view({p.rows, p.max_blocks});
    const at::Tensor out = std::get<0>(at::_flash_attention_forward(
        q.contiguous(), cache_k.transpose(1, 2), cache_v.transpose(1, 2), cu_q, cu_k, p.max_query, p.max_keys,
        0.0, /*is_causal=*/true,
        /*return_debug_mask=*/false, std::nullopt, std::nullopt, std::nullopt, std::nullopt, std::nullopt,
        tables));  // [tokens, heads, head_dim]
    return out.view({p.tokens, heads * head_dim});
  }
  at::Tensor out = at::empty({p.tokens, heads * head_dim}, q.options());  // [tokens, heads * head_dim]
  // On the CPU kernels, rows of a few queries (decode rows, short chunks), one call per run of such rows.
  // Longer rows (prefills) go to LibTorch's SDPA, whose tiled kernel reads each key once for many queries.
  constexpr int64_t kKernelQueries = 16;
  const bool kernels = kernel_isa_ != CpuIsa::kNone && PagedAttentionSupported(kernel_isa_, head_dim) &&
                       q.stride(1) == head_dim;
  auto queries = [&](int64_t r) { return p.query_starts[r + 1] - p.query_starts[r]; };
  const at::Tensor keys_flat = cache_k.view({-1, head_dim});    // [blocks * kv_heads * B, d]
  const at::Tensor values_flat = cache_v.view({-1, head_dim});  // [blocks * kv_heads * B, d]
  const auto long_options = at::TensorOptions().dtype(at::kLong).device(options_.device);
  for (int64_t r = 0; r < p.rows;) {
    if (kernels && queries(r) <= kKernelQueries) {
      int64_t end = r + 1;
      while (end < p.rows && queries(end) <= kKernelQueries) ++end;
      const PagedAttention shape = {end - r,
                                    heads,
                                    kv_heads,
                                    head_dim,
                                    block,
                                    q.stride(0),
                                    p.query_starts.data() + r,
                                    p.key_lengths.data() + r,
                                    p.block_tables.data() + r * p.max_blocks,
                                    p.max_blocks};
      CpuPagedAttention(
          kernel_isa_,
          options_.dtype == at::kFloat ? ActivationFormat::kFloat32 : ActivationFormat::kBFloat16, shape,
          q.data_ptr(), cache_k.data_ptr(), cache_v.data_ptr(), out.data_ptr());
      r = end;
      continue;
    }
    // LibTorch's operations (and the reference): the row's keys gathered through its block table, then SDPA
    // with the causal mask aligned to the row's last key.
    const int64_t n = queries(r), length = p.key_lengths[r];
    std::vector<int64_t> rows;  // [kv_heads, L]
    for (int64_t h = 0; h < kv_heads; ++h) {
      for (int64_t t = 0; t < length; ++t) {
        rows.push_back(cache.BlockRow(p.block_tables[r * p.max_blocks + t / block]) + h * block + t % block);
      }
    }
    const at::Tensor index = at::tensor(rows, long_options);  // [kv * L]
    const at::Tensor k =
        keys_flat.index_select(0, index).view({1, kv_heads, length, head_dim});  // [1, kv, L, d]
    const at::Tensor v =
        values_flat.index_select(0, index).view({1, kv_heads, length, head_dim});          // [1, kv, L, d]
    const at::Tensor qr = q.narrow(0, p.query_starts[r], n).transpose(0, 1).unsqueeze(0);  // [1, heads, n, d]
    const at::Tensor mask = at::arange(length, long_options).view({1, length}) <=
                            (at::arange(n, long_options) + (length - n)).view({n, 1});  // [n, L]
    out.narrow(0, p.query_starts[r], n)
        .copy_(at::scaled_dot_product_attention(qr, k, v, mask, 0.0, /*is_causal=*/false, std::nullopt,
                                                /*enable_gqa=*/true)
                   .squeeze(0)
                   .transpose(0, 1)
                   .reshape({n, heads * head_dim}));
    ++r;
  }
  return out;
}

at::Tensor LlamaModel::ForwardUnchecked(absl::Span<const ForwardRow> rows, KvCache* cache,
                                        bool all_positions) const {
  // Rows of one token (decode rows) are packed first, so that their products stay on the CPU kernels beside
  // a prefill's rows (KernelRows); packed row i is rows[order[i]].
  std::vector<int64_t> order;
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t r = 0; r < rows.size(); ++r) {
      if ((rows[r].tokens.size() == 1) == (pass == 0)) order.push_back(static_cast<int64_t>(r));
    }
  }
  PackedRows p;
  p.rows = static_cast<int64_t>(rows.size());
  p.query_starts.push_back(0);
  for (const int64_t r : order) {
    const ForwardRow& row = rows[r];
    const int64_t n = static_cast<int64_t>(row.tokens.size());
    p.query_starts.push_back(p.query_starts.back() + n);
    p.key_lengths.push_back(cache->length(row.slot) + n);
    p.max_query = std::max(p.max_query, n);
    p.max_keys = std::max(p.max_keys, p.key_lengths.back());
    p.max_blocks = std::max<int64_t>(p.max_blocks, cache->block_table(row.slot).size());
  }
  p.tokens = p.query_starts.back();
  p.block_tables.assign(p.rows * p.max_blocks, 0);
  for (int64_t r = 0; r < p.rows; ++r) {
    const std::vector<int32_t>& table = cache->block_table(rows[order[r]].slot);
    std::copy(table.begin(), table.end(), p.block_tables.begin() + r * p.max_blocks);
  }

  // Per token: id, position, cache row; per row (in `rows`' order): its last token; per adapter: its tokens;
  // with all_positions, every token in `rows`' order. To the device in one copy (from pinned memory,
  // asynchronously, on a GPU).
  std::vector<int64_t> host(3 * p.tokens);
  std::vector<int64_t> last(p.rows);
  std::vector<std::pair<const LoraAdapter*, std::vector<int64_t>>> adapter_tokens;
  int64_t decode_tokens = 0;
  for (int64_t r = 0; r < p.rows; ++r) {
    const ForwardRow& row = rows[order[r]];
    const int64_t start = cache->length(row.slot), first = p.query_starts[r];
    if (row.tokens.size() == 1) ++decode_tokens;
    for (size_t t = 0; t < row.tokens.size(); ++t) {
      host[first + t] = row.tokens[t];
      host[p.tokens + first + t] = start + static_cast<int64_t>(t);
      host[2 * p.tokens + first + t] = cache->CacheRow(row.slot, start + static_cast<int64_t>(t));
    }
    last[order[r]] = p.query_starts[r + 1] - 1;
    if (row.adapter == nullptr) continue;
    auto group = std::find_if(adapter_tokens.begin(), adapter_tokens.end(),
                              [&](const auto& g) { return g.first == row.adapter; });
    if (group == adapter_tokens.end()) group = adapter_tokens.insert(adapter_tokens.end(), {row.adapter, {}});
    for (int64_t t = first; t < p.query_starts[r + 1]; ++t) group->second.push_back(t);
  }
  const std::vector<int64_t> cache_rows_host(host.begin() + 2 * p.tokens, host.end());  // for the kernels
  const int64_t last_at = static_cast<int64_t>(host.size());
  host.insert(host.end(), last.begin(), last.end());
  const int64_t positions_at = static_cast<int64_t>(host.size());
  if (all_positions) {
    for (size_t r = 0; r < rows.size(); ++r) {
      const int64_t first = last[r] + 1 - static_cast<int64_t>(rows[r].tokens.size());
      for (int64_t t = first; t <= last[r]; ++t) host.push_back(t);
    }
  }
  std::vector<int64_t> adapter_at;
  for (const auto& [adapter, tokens] : adapter_tokens) {
    adapter_at.push_back(static_cast<int64_t>(host.size()));
    host.insert(host.end(), tokens.begin(), tokens.end());
  }
  at::Tensor uploaded = at::from_blob(host.data(), {static_cast<int64_t>(host.size())}, at::kLong);
  if (options_.device.is_cuda()) {
    uploaded = uploaded.pin_memory().to(options_.device, /*non_blocking=*/true);
  } else {
    uploaded = uploaded.clone();  // `host` dies with this call; the CPU tensors must not alias it
  }
  const at::Tensor ids_t = uploaded.narrow(0, 0, p.tokens);                                 // [N]
  const at::Tensor positions_t = uploaded.narrow(0, p.tokens, p.tokens);                    // [N]
  p.cache_rows = uploaded.narrow(0, 2 * p.tokens, p.tokens);                                // [N]
  const at::Tensor last_t = uploaded.narrow(0, last_at, p.rows);                            // [rows]
  const at::Tensor all_t = uploaded.narrow(0, positions_at, all_positions ? p.tokens : 0);  // [N] or [0]
  std::vector<AdapterRows> adapter_groups;
  for (size_t g = 0; g < adapter_tokens.size(); ++g) {
    const int64_t n = static_cast<int64_t>(adapter_tokens[g].second.size());
    adapter_groups.push_back(
        {adapter_tokens[g].first, n == p.tokens ? at::Tensor() : uploaded.narrow(0, adapter_at[g], n)});
  }

  const int64_t hidden = config_.hidden_size, head_dim = config_.head_dim;
  const int64_t heads = config_.num_attention_heads, kv_heads = config_.num_key_value_heads;
  const int64_t inter = config_.intermediate_size;
  const double eps = config_.rms_norm_eps;

  at::Tensor x = embed_tokens_.index_select(0, ids_t);  // [N, hidden]

  // Rotary tables as transformers builds them: float32 angles, cast to the model dtype.
  const at::Tensor angles = positions_t.to(at::kFloat).unsqueeze(-1) * inv_freq_;  // [N, head_dim / 2]
  const at::Tensor emb = at::cat({angles, angles}, -1);                            // [N, head_dim]
  const at::Tensor cos = emb.cos().to(options_.dtype).contiguous();                // [N, head_dim]
  const at::Tensor sin = emb.sin().to(options_.dtype).contiguous();                // [N, head_dim]

  // On the CPU kernels the norms, the rotary embedding with the cache writes, and the SiLU run as one pass
  // each (lib/model/cpu_kernels.h) instead of a few LibTorch operations each.
  const bool fused = kernel_isa_ != CpuIsa::kNone;
  const KernelRows kernel{kernel_isa_, decode_tokens};
  const ActivationFormat format =
      options_.dtype == at::kFloat ? ActivationFormat::kFloat32 : ActivationFormat::kBFloat16;
  auto norm = [&](const at::Tensor& input, const at::Tensor& weight) {
    return fused ? FusedRmsNorm(input, weight, eps) : RmsNorm(input, weight, eps);
  };
  for (size_t l = 0; l < layers_.size(); ++l) {
    const LlamaLayer& layer = layers_[l];
    at::Tensor h = norm(x, layer.input_norm);
    at::Tensor qkv = Project(kernel, h, layer.qkv, layer.qkv_bias, adapter_groups, l, &LoraLayer::qkv)
                         .contiguous();      // [N, (heads + 2 kv_heads) * head_dim]
    at::Tensor& cache_k = cache->keys(l);    // [blocks, B, kv_heads, head_dim]
    at::Tensor& cache_v = cache->values(l);  // [blocks, B, kv_heads, head_dim]
    at::Tensor q;                            // [N, heads, head_dim]
    if (fused) {
      // Rotates q and k inside qkv and writes k and v into the cache, every token at its cache row.
      CpuRopeAndCache(format,
                      {p.tokens, heads, kv_heads, head_dim, cache->block_size(), cache_rows_host.data()},
                      qkv.data_ptr(), cos.data_ptr(), sin.data_ptr(), cache_k.data_ptr(), cache_v.data_ptr());
      q = qkv.narrow(-1, 0, heads * head_dim).view({p.tokens, heads, head_dim});
    } else {
      const at::Tensor k =
          qkv.narrow(-1, heads * head_dim, kv_heads * head_dim).view({p.tokens, kv_heads, head_dim});
      const at::Tensor v = qkv.narrow(-1, (heads + kv_heads) * head_dim, kv_heads * head_dim)
                               .view({p.tokens, kv_heads, head_dim});
      q = ApplyRope(qkv.narrow(-1, 0, heads * head_dim).view({p.tokens, heads, head_dim}), cos.unsqueeze(1),
                    sin.unsqueeze(1));
      // Head h of a token at its head-0 row plus h * B.
      const at::Tensor rows =
          (p.cache_rows.unsqueeze(1) + at::arange(kv_heads, p.cache_rows.options()) * cache->block_size())
              .reshape({-1});  // [N * kv_heads]
      cache_k.view({-1, head_dim})
          .index_copy_(0, rows, ApplyRope(k, cos.unsqueeze(1), sin.unsqueeze(1)).reshape({-1, head_dim}));
      cache_v.view({-1, head_dim}).index_copy_(0, rows, v.reshape({-1, head_dim}));
    }
    const at::Tensor attn = Attention(q, cache_k, cache_v, p, *cache);  // [N, heads * head_dim]
    x = Project(kernel, attn, layer.o, layer.o_bias, adapter_groups, l, &LoraLayer::o, x);

    h = norm(x, layer.post_norm);
    const at::Tensor gate_up =
        Project(kernel, h, layer.gate_up, layer.gate_up_bias, adapter_groups, l, &LoraLayer::gate_up);
    // gate_up: [N, 2 * inter]
    at::Tensor act;  // [N, inter]
    if (fused) {
      act = at::empty({p.tokens, inter}, x.options());
      CpuSiluMul(kernel_isa_, format, gate_up.contiguous().data_ptr(), p.tokens, inter, act.data_ptr());
    } else {
      act = at::silu(gate_up.narrow(-1, 0, inter)) * gate_up.narrow(-1, inter, inter);
    }
    x = Project(kernel, act, layer.down, layer.down_bias, adapter_groups, l, &LoraLayer::down, x);
  }
  x = norm(x, final_norm_).view({p.tokens, hidden});

  for (const ForwardRow& row : rows) cache->Append(row.slot, row.tokens);
  return x.index_select(0, all_positions ? all_t : last_t);
}

absl::StatusOr<at::Tensor> LlamaModel::DecodeFixed(const FixedDecodeStep& step, KvCache* cache) const {
  const int64_t rows = step.rows, blocks = step.blocks, block = cache->block_size();
  if (cache->padding_block() < 0)
    return absl::InvalidArgumentError("fixed decode: the cache has no padding block");
  if (rows < 1 || rows > cache->max_slots() || blocks < 1 ||
      blocks * block > cache->max_seq_len() + block - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("fixed decode: ", rows, " rows of ", blocks, " blocks do not fit the cache"));
  }
  try {
    const int64_t hidden = config_.hidden_size, head_dim = config_.head_dim;
    const int64_t heads = config_.num_attention_heads, kv_heads = config_.num_key_value_heads;
    const int64_t groups = heads / kv_heads, inter = config_.intermediate_size, keys = blocks * block;
    const double eps = config_.rms_norm_eps;
    const at::Tensor ids = step.inputs[0], positions = step.inputs[1];        // [S] each
    const at::Tensor cache_rows = step.inputs[2], key_ends = step.inputs[3];  // [S] each
    const at::Tensor adapter_index = step.inputs[4];                          // [S]
    const at::Tensor tables = step.inputs.narrow(0, 5, blocks).t();           // [S, M]
    std::vector<at::Tensor> masks;  // per adapter: [S, 1] in the model dtype
    for (size_t a = 0; a < step.adapters.size(); ++a) {
      masks.push_back(adapter_index.eq(static_cast<int64_t>(a)).to(options_.dtype).view({rows, 1}));
    }
    const at::Tensor head_offsets = at::arange(kv_heads, positions.options()) * block;  // [kv_heads]
    // Where each row writes: [S * kv_heads], head h at its head-0 row plus h * B.
    const at::Tensor write_rows =
        (cache_rows.view({rows, 1}) + head_offsets.view({1, kv_heads})).reshape({-1});
    at::Tensor x = embed_tokens_.index_select(0, ids);                               // [S, hidden]
    const at::Tensor angles = positions.to(at::kFloat).view({rows, 1}) * inv_freq_;  // [S, head_dim / 2]
    const at::Tensor emb = at::cat({angles, angles}, -1);                            // [S, head_dim]
    const at::Tensor cos = emb.cos().to(options_.dtype).unsqueeze(1);                // [S, 1, head_dim]
    const at::Tensor sin = emb.sin().to(options_.dtype).unsqueeze(1);                // [S, 1, head_dim]

    // On a GPU in bfloat16 or float16 with blocks FlashAttention takes, its paged kernel reads the rows' keys
    // in place; elsewhere (the CPU twin) they are gathered, every row's M blocks.
    const bool flash = options_.device.is_cuda() &&
                       (options_.dtype == at::kBFloat16 || options_.dtype == at::kHalf) && block % 256 == 0;
    at::Tensor cu_q, cu_k, tables_int;  // flash: [S + 1], [S + 1] int32; [S, M] int32
    at::Tensor key_rows, mask;          // else: [S * kv_heads * M * B] int64; [S, 1, 1, M * B] bool
    if (flash) {
      cu_q = at::arange(rows + 1, positions.options().dtype(at::kInt));
      cu_k = at::cat({at::zeros({1}, key_ends.options()), key_ends.cumsum(0)}).to(at::kInt);
      tables_int = tables.to(at::kInt).contiguous();
    } else {
      // Where each row's keys are: rows of the cache viewed as [blocks * kv_heads * B, d].
      key_rows =
          (tables.view({rows, 1, blocks, 1}) * (kv_heads * block) + head_offsets.view({1, kv_heads, 1, 1}) +
           at::arange(block, positions.options()).view({1, 1, 1, block}))
              .reshape({-1});
      const at::Tensor key_positions = at::arange(keys, positions.options());  // [M * B]
      mask = (key_positions.view({1, keys}) < key_ends.view({rows, 1})).view({rows, 1, 1, keys});
    }
    for (size_t l = 0; l < layers_.size(); ++l) {
      const LlamaLayer& layer = layers_[l];
      at::Tensor h = RmsNorm(x, layer.input_norm, eps);
      const at::Tensor qkv =
          ProjectMasked(kernel_isa_, h, layer.qkv, layer.qkv_bias, step.adapters, masks, l, &LoraLayer::qkv);
      // qkv: [S, (heads + 2 kv_heads) * head_dim]
      const at::Tensor q =
          ApplyRope(qkv.narrow(-1, 0, heads * head_dim).view({rows, heads, head_dim}), cos, sin);
      const at::Tensor k = ApplyRope(
          qkv.narrow(-1, heads * head_dim, kv_heads * head_dim).view({rows, kv_heads, head_dim}), cos, sin);
      const at::Tensor v =
          qkv.narrow(-1, (heads + kv_heads) * head_dim, kv_heads * head_dim).view({rows, kv_heads, head_dim});
      const at::Tensor keys_flat = cache->keys(l).view({-1, head_dim});      // [blocks * kv * B, d]
      const at::Tensor values_flat = cache->values(l).view({-1, head_dim});  // [blocks * kv * B, d]
      keys_flat.index_copy_(0, write_rows, k.reshape({-1, head_dim}));
      values_flat.index_copy_(0, write_rows, v.reshape({-1, head_dim}));
      at::Tensor attn;  // [S, heads * head_dim]
      if (flash) {
        // FlashAttention's paged kernel reads the blocks in place; every size is fixed, so it records.
        attn =
            std::get<0>(at::_flash_attention_forward(
                            q.contiguous(), cache->keys(l).transpose(1, 2), cache->values(l).transpose(1, 2),
                            cu_q, cu_k, 1, keys, 0.0, /*is_causal=*/false, /*return_debug_mask=*/false,
                            std::nullopt, std::nullopt, std::nullopt, std::nullopt, std::nullopt, tables_int))
                .reshape({rows, heads * head_dim});
      } else {
        // The rows' keys gathered through their block tables. A query head's group of kv_heads' heads goes in
        // as that kv head's queries (one query position each), so no backend needs grouped-query support.
        const at::Tensor row_keys = keys_flat.index_select(0, key_rows)
                                        .view({rows, kv_heads, keys, head_dim});  // [S, kv_heads, L, d]
        const at::Tensor row_values = values_flat.index_select(0, key_rows)
                                          .view({rows, kv_heads, keys, head_dim});  // [S, kv_heads, L, d]
        attn = at::scaled_dot_product_attention(q.reshape({rows, kv_heads, groups, head_dim}), row_keys,
                                                row_values, mask)  // [S, kv_heads, groups, head_dim]
                   .reshape({rows, heads * head_dim});
      }
      x = ProjectMasked(kernel_isa_, attn, layer.o, layer.o_bias, step.adapters, masks, l, &LoraLayer::o, x);
      h = RmsNorm(x, layer.post_norm, eps);
      const at::Tensor gate_up =
          ProjectMasked(kernel_isa_, h, layer.gate_up, layer.gate_up_bias, step.adapters, masks, l,
                        &LoraLayer::gate_up);  // [S, 2 * inter]
      const at::Tensor act = at::silu(gate_up.narrow(-1, 0, inter)) * gate_up.narrow(-1, inter, inter);
      x = ProjectMasked(kernel_isa_, act, layer.down, layer.down_bias, step.adapters, masks, l,
                        &LoraLayer::down, x);
    }
    return RmsNorm(x, final_norm_, eps);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("fixed decode: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<at::Tensor> LlamaModel::Logits(const at::Tensor& hidden) const {
  try {
    return Linear({kernel_isa_}, hidden.to(options_.dtype), {lm_head_, lm_head_scales_}, at::Tensor())
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
    at::Tensor x = hidden.to(options_.dtype);         // [n, hidden]
    if (lm_head_scales_.defined()) {                  // as Logits' int8 product
      rows = Dequantize(rows, lm_head_scales_.index_select(0, ids), options_.dtype);
      x = QuantizedActivations(kernel_isa_, x).to(options_.dtype);
    }
    rows = rows.view({n, k, config_.hidden_size});                     // [n, k, hidden]
    return at::bmm(rows, x.unsqueeze(-1)).squeeze(-1).to(at::kFloat);  // [n, k]
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("logits: ", e.what_without_backtrace()));
  }
}

}  // namespace pad

// The models a PAD deployment keeps resident, loaded the one way: the server's engine, the local CLI, the
// benchmarks and the probes all load through here.
#ifndef PAD_MODEL_SET_H_
#define PAD_MODEL_SET_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pad/chat_template.h"
#include "pad/llama.h"
#include "pad/model_options.h"
#include "pad/pad_decoder.h"
#include "pad/reward_model.h"
#include "pad/tokenizer.h"

namespace pad {

// A policy with its tokenizer and chat template, and reward models (the first is the default), whose
// backbone is the policy's own weights when their directory is the policy's. Immutable once loaded;
// decoders borrow it, so it must outlive them.
class ModelSet {
 public:
  // The first error names the file or field at fault.
  static absl::StatusOr<std::unique_ptr<ModelSet>> Load(const std::string& policy_dir,
                                                        const std::vector<RewardModelSpec>& reward_models,
                                                        const ModelOptions& options);
  // As Load, with random weights made on the device (RandomTensors), for benchmarks of shapes whose weights
  // are not on the machine: `model_dir` needs only config.json and the tokenizer files. One PRM, "default",
  // with a random rank-`lora_rank` LoRA on all seven projections and a random value head, on the policy's
  // backbone or, with `separate_prm_backbone`, on a random backbone of its own (the paper's two models).
  static absl::StatusOr<std::unique_ptr<ModelSet>> Random(const std::string& model_dir, int64_t lora_rank,
                                                          bool separate_prm_backbone,
                                                          const ModelOptions& options);

  const LlamaModel& policy() const { return *policy_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const ChatTemplate& chat_template() const { return *chat_template_; }
  std::vector<const RewardModel*> reward_models() const;
  // The reward model called `name`, or nullptr.
  const RewardModel* reward_model(absl::string_view name) const;

  // A decoder over these models with its own KV caches.
  absl::StatusOr<std::unique_ptr<PadDecoder>> MakeDecoder(const DecoderOptions& options) const;

 private:
  ModelSet() = default;

  std::unique_ptr<LlamaModel> policy_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ChatTemplate> chat_template_;
  std::vector<std::unique_ptr<RewardModel>> reward_models_;
};

}  // namespace pad

#endif  // PAD_MODEL_SET_H_

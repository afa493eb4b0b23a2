#include "server/pad_service.h"

#include <grpcpp/support/byte_buffer.h>

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "server/api_conversion.h"
#include "server/request_account.h"

namespace pad::server {
namespace {

std::string Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (!buffer.Dump(&slices).ok()) return bytes;
  for (const grpc::Slice& slice : slices)
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  return bytes;
}

absl::Status Unauthenticated() { return absl::UnauthenticatedError("a valid bearer token is required"); }

// Streams one request's events to its client. The engine thread pushes events; gRPC's threads run the
// reactions. Deleted in OnDone; events that arrive after it are still recorded (RequestAccount), not written.
class GenerateReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  GenerateReactor(Engine* engine, ServingMetrics* metrics, LogWriter* log)
      : engine_(engine), metrics_(metrics), log_(log) {}

  void Start(const grpc::ByteBuffer& bytes) {
    absl::StatusOr<v1::GenerateAlignedRequest> proto = ParseRequest(Flatten(bytes));
    if (!proto.ok()) return Reject(proto.status(), "unknown");
    return_tokens_ = proto->return_token_ids() || proto->return_diagnostics();
    absl::StatusOr<AlignmentRequest> request = FromProto(*proto);
    if (!request.ok()) return Reject(request.status(), "unknown");
    mode_ = DecodingModeName(request->mode);
    {
      absl::MutexLock lock(&shared_->mu);
      shared_->account.emplace(metrics_, log_, "grpc", mode_);
    }
    // The sink holds the shared state, not the reactor, so it is safe after the stream ends.
    std::shared_ptr<Shared> shared = shared_;
    absl::StatusOr<uint64_t> id =
        engine_->Submit(*request, [shared](EngineEvent event) { shared->Push(std::move(event)); });
    if (!id.ok()) return Reject(id.status(), mode_);
    absl::MutexLock lock(&shared_->mu);
    shared_->id = *id;
    if (shared_->cancelled) engine_->Cancel(*id);
  }

  // Ends the call with `status` before its request was submitted.
  void Reject(const absl::Status& status, const std::string& mode) {
    metrics_->RecordRejected("grpc", mode, status);
    Finish(ToGrpcStatus(status));
  }

  void OnWriteDone(bool ok) override {
    Action action = Action::kNone;
    {
      absl::MutexLock lock(&shared_->mu);
      shared_->writing = false;
      if (ok) {
        action = shared_->Next();
      } else if (!shared_->done) {
        // The client is gone (cancelled, deadline): OnCancel stops the engine's work, but the call still
        // needs its Finish, or gRPC waits for it forever (and so would the server's shutdown).
        shared_->done = true;
        error_ = ToGrpcStatus(absl::CancelledError("the stream was cancelled"));
        action = Action::kFail;
      }
    }
    Perform(action);
  }

  void OnCancel() override {
    absl::MutexLock lock(&shared_->mu);
    shared_->cancelled = true;
    if (shared_->id != 0) engine_->Cancel(shared_->id);
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&shared_->mu);
      shared_->reactor = nullptr;
    }
    delete this;
  }

 private:
  enum class Action { kNone, kWrite, kWriteAndFinish, kFail };

  // What the engine thread and the reactions share.
  struct Shared {
    explicit Shared(GenerateReactor* r) : reactor(r) {}

    absl::Mutex mu;
    GenerateReactor* reactor ABSL_GUARDED_BY(mu);  // null once the stream is done
    uint64_t id ABSL_GUARDED_BY(mu) = 0;
    bool cancelled ABSL_GUARDED_BY(mu) = false;
    bool writing ABSL_GUARDED_BY(mu) = false;
    bool done ABSL_GUARDED_BY(mu) = false;
    std::deque<EngineEvent> pending ABSL_GUARDED_BY(mu);
    std::optional<RequestAccount> account ABSL_GUARDED_BY(mu);  // set before the request is submitted

    void Push(EngineEvent event) {
      GenerateReactor* target = nullptr;
      Action action = Action::kNone;
      {
        absl::MutexLock lock(&mu);
        account->Observe(event);
        if (reactor == nullptr || done) return;
        pending.push_back(std::move(event));
        action = Next();
        // Nothing to start: a write in flight will take the event, and its completion may end the stream
        // and delete the reactor the moment the lock is released (UBSan caught a call on a dead one).
        if (action == Action::kNone) return;
        target = reactor;
      }
      // The stream cannot end before the write or finish decided above is started, so `target` lives.
      target->Perform(action);
    }

    // Decides the next write: everything pending merged into the reactor's one response; the last
    // event makes it the final write. gRPC is called outside the lock (Perform).
    Action Next() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      if (writing || done || pending.empty() || reactor == nullptr) return Action::kNone;
      v1::GenerateAlignedResponse& out = reactor->response_;
      out.Clear();
      while (!pending.empty()) {
        EngineEvent event = std::move(pending.front());
        pending.pop_front();
        if (event.kind == EngineEvent::Kind::kError) {
          done = true;
          reactor->error_ = ToGrpcStatus(event.error);
          return Action::kFail;
        }
        reactor->Append(event, &out);
        if (event.kind == EngineEvent::Kind::kFinished) {
          done = true;
          return Action::kWriteAndFinish;
        }
      }
      writing = true;
      return Action::kWrite;
    }
  };

  void Perform(Action action) {
    switch (action) {
      case Action::kNone:
        return;
      case Action::kWrite:
        Serialize();
        return StartWrite(&wire_);
      case Action::kWriteAndFinish:
        Serialize();
        return StartWriteAndFinish(&wire_, grpc::WriteOptions(), grpc::Status::OK);
      case Action::kFail:
        return Finish(error_);
    }
  }

  void Serialize() {
    const std::string bytes = response_.SerializeAsString();
    grpc::Slice slice(bytes);
    wire_ = grpc::ByteBuffer(&slice, 1);
  }

  // Merges a token or finished event into the response being built.
  void Append(const EngineEvent& event, v1::GenerateAlignedResponse* out) {
    if (event.kind == EngineEvent::Kind::kFinished) {
      v1::Final* final = out->mutable_final();
      final->set_finish_reason(ToProto(event.finish_reason));
      ToProto(event.usage, final->mutable_usage());
      return;
    }
    const TokenEvent& token = event.token;
    out->mutable_text()->append(token.text);
    if (return_tokens_) {
      v1::GeneratedToken* t = out->add_tokens();
      t->set_id(token.token);
      t->set_reward(token.reward);
      t->set_changed_top_choice(token.changed_top_choice);
      if (token.diagnostics) {
        v1::TokenDiagnostics* d = t->mutable_diagnostics();
        d->mutable_candidates()->Add(token.diagnostics->candidates.begin(),
                                     token.diagnostics->candidates.end());
        d->mutable_policy_logits()->Add(token.diagnostics->policy_logits.begin(),
                                        token.diagnostics->policy_logits.end());
        d->mutable_rewards()->Add(token.diagnostics->rewards.begin(), token.diagnostics->rewards.end());
        d->mutable_scores()->Add(token.diagnostics->scores.begin(), token.diagnostics->scores.end());
        d->mutable_candidate_texts()->Add(token.diagnostics->candidate_texts.begin(),
                                          token.diagnostics->candidate_texts.end());
      }
    }
  }

  Engine* engine_;
  ServingMetrics* metrics_;
  LogWriter* log_;
  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>(this);
  v1::GenerateAlignedResponse response_;  // the message being written (one write in flight)
  grpc::ByteBuffer wire_;                 // response_ serialized, what gRPC writes
  grpc::Status error_;                    // why the stream failed, for kFail
  bool return_tokens_ = false;
  std::string mode_ = "unknown";
};

}  // namespace

bool PadServiceImpl::Authorized(const grpc::CallbackServerContext& context) const {
  if (options_.bearer_token.empty()) return true;
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return false;
  return BearerTokenMatches(absl::string_view(it->second.data(), it->second.size()), options_.bearer_token);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* PadServiceImpl::GenerateAligned(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  auto* reactor = new GenerateReactor(engine_, metrics_, log_);
  if (!Authorized(*context)) {
    metrics_->RecordRejected("grpc", "unknown", Unauthenticated());
    reactor->Finish(ToGrpcStatus(Unauthenticated()));
    return reactor;
  }
  // The reactor lives until its Finish, which only Start or its stream calls: it is there when the task
  // runs. A copy of the buffer shares the call's slices.
  if (!preparation_->TrySchedule([reactor, bytes = grpc::ByteBuffer(*request)] { reactor->Start(bytes); })) {
    reactor->Reject(
        absl::ResourceExhaustedError("the queue is full (requests waiting to be prepared); retry later"),
        "unknown");
  }
  return reactor;
}

grpc::ServerUnaryReactor* PadServiceImpl::ListModels(grpc::CallbackServerContext* context,
                                                     const v1::ListModelsRequest* /*request*/,
                                                     v1::ListModelsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!Authorized(*context)) {
    reactor->Finish(ToGrpcStatus(Unauthenticated()));
    return reactor;
  }
  const EngineOptions& options = engine_->options();
  response->set_policy(options.policy_dir);
  for (const RewardModelSpec& spec : options.reward_models) {
    v1::RewardModelInfo* info = response->add_reward_models();
    info->set_name(spec.name);
    info->set_backbone(spec.backbone_dir);
    info->set_adapter(spec.adapter_dir);
    info->set_shares_policy_backbone(spec.backbone_dir == options.policy_dir);
  }
  v1::Limits* limits = response->mutable_limits();
  limits->set_max_prompt_tokens(options.decoder.max_prompt_tokens);
  limits->set_max_new_tokens(options.decoder.max_new_tokens_limit);
  limits->set_max_top_k(options.decoder.max_top_k);
  limits->set_max_principles(options.decoder.max_principles);
  limits->set_max_stop_strings(options.decoder.max_stop_strings);
  limits->set_max_sequence_tokens(static_cast<int32_t>(options.decoder.max_seq_len));
  limits->set_max_request_bytes(options_.max_request_bytes);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace pad::server

#include "server/api_conversion.h"

#include <google/protobuf/unknown_field_set.h>

#include <map>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "pad/field_error.h"
#include "pad/utf8.h"
#include "server/field_names.h"

namespace pad::server {
namespace {

// libpad's field names and where they live in GenerateAlignedRequest.
const FieldPaths& ProtoPaths() {
  static const auto* paths = new FieldPaths{
      {"prompt", {"prompt", ""}},
      {"messages", {"messages", ""}},
      {"principles", {"preference.principles", ".text"}},
      {"weights", {"preference.principles", ".weight"}},
      {"reward_model", {"preference.reward_model", ""}},
      {"mode", {"decoding.mode", ""}},
      {"top_k", {"decoding.top_k", ""}},
      {"beta", {"decoding.beta", ""}},
      {"temperature", {"decoding.temperature", ""}},
      {"presence_penalty", {"decoding.presence_penalty", ""}},
      {"frequency_penalty", {"decoding.frequency_penalty", ""}},
      {"max_new_tokens", {"decoding.max_new_tokens", ""}},
      {"stop", {"decoding.stop", ""}},
  };
  return *paths;
}

// The path of the first string field in `bytes`, the wire format of a `type` message, that is not UTF-8
// ("messages[1].content"); "" when every string is; nullopt when `bytes` is not wire format at all. Read
// without the schema (UnknownFieldSet), since the schema's parser is what refused the bytes.
std::optional<std::string> FindInvalidUtf8(const google::protobuf::Descriptor& type,
                                           const std::string& bytes) {
  google::protobuf::UnknownFieldSet fields;
  if (!fields.ParseFromString(bytes)) return std::nullopt;
  std::map<int, int> seen;  // occurrences per field number: a repeated field's index
  for (int i = 0; i < fields.field_count(); ++i) {
    const google::protobuf::UnknownField& wire = fields.field(i);
    const google::protobuf::FieldDescriptor* field = type.FindFieldByNumber(wire.number());
    if (field == nullptr || wire.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) continue;
    std::string path = field->name();
    const int index = seen[wire.number()]++;
    if (field->is_repeated()) absl::StrAppend(&path, "[", index, "]");
    if (field->type() == google::protobuf::FieldDescriptor::TYPE_STRING &&
        !utf8::IsValid(wire.length_delimited())) {
      return path;
    }
    if (field->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE) {
      std::optional<std::string> inner = FindInvalidUtf8(*field->message_type(), wire.length_delimited());
      if (!inner.has_value()) return std::nullopt;
      if (!inner->empty()) return absl::StrCat(path, ".", *inner);
    }
  }
  return "";
}

}  // namespace

absl::StatusOr<v1::GenerateAlignedRequest> ParseRequest(absl::string_view bytes) {
  v1::GenerateAlignedRequest request;
  if (request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return request;
  const std::optional<std::string> field =
      FindInvalidUtf8(*v1::GenerateAlignedRequest::descriptor(), std::string(bytes));
  if (field.has_value() && !field->empty()) {
    return FieldError(*field, "is not valid UTF-8");
  }
  return absl::InvalidArgumentError(
      "request: not a valid pad.v1.GenerateAlignedRequest (protobuf wire format)");
}

absl::StatusOr<AlignmentRequest> FromProto(const v1::GenerateAlignedRequest& proto) {
  AlignmentRequest request;
  for (const v1::ChatMessage& m : proto.messages()) request.messages.push_back({m.role(), m.content()});
  request.prompt = proto.prompt();

  const v1::Preference& preference = proto.preference();
  int weighted = 0;
  for (const v1::Principle& p : preference.principles()) {
    request.principles.push_back(p.text());
    weighted += p.has_weight();
  }
  if (weighted != 0 && weighted != preference.principles_size()) {
    return FieldError("preference.principles.weight",
                      absl::StrCat("set on ", weighted, " of ", preference.principles_size(),
                                   " principles; set all or none"));
  }
  if (weighted != 0) {
    for (const v1::Principle& p : preference.principles()) request.weights.push_back(p.weight());
  }
  switch (preference.composition()) {
    case v1::COMPOSITION_UNSPECIFIED:
    case v1::COMPOSITION_PROMPT:
      request.composition = Composition::kPrompt;
      break;
    case v1::COMPOSITION_WEIGHTED:
      request.composition = Composition::kWeighted;
      break;
    default:  // proto3 enums are open: a newer client's value arrives as a number
      return FieldError("preference.composition", absl::StrCat("unknown value ", preference.composition()));
  }
  request.reward_model = preference.reward_model();
  if (preference.has_policy_sees_guideline())
    request.policy_sees_guideline = preference.policy_sees_guideline();

  const v1::DecodingParams& decoding = proto.decoding();
  switch (decoding.mode()) {
    case v1::DECODING_MODE_UNSPECIFIED:
    case v1::DECODING_MODE_PAD:
      request.mode = DecodingMode::kPad;
      break;
    case v1::DECODING_MODE_VANILLA:
      request.mode = DecodingMode::kVanilla;
      break;
    case v1::DECODING_MODE_PREFERENCE_PROMPT:
      request.mode = DecodingMode::kPreferencePrompt;
      break;
    case v1::DECODING_MODE_GENARM:
      request.mode = DecodingMode::kGenArm;
      break;
    default:
      return FieldError("decoding.mode", absl::StrCat("unknown value ", decoding.mode()));
  }
  if (decoding.has_top_k()) request.top_k = decoding.top_k();
  if (decoding.has_beta()) request.beta = decoding.beta();
  request.temperature = decoding.temperature();
  request.presence_penalty = decoding.presence_penalty();
  request.frequency_penalty = decoding.frequency_penalty();
  request.seed = decoding.seed();
  if (decoding.has_max_new_tokens()) {
    // Unset means the server's default; a value sent must be a count (libpad reads 0 as "default").
    if (decoding.max_new_tokens() < 1) {
      return FieldError(
          "decoding.max_new_tokens",
          absl::StrCat(decoding.max_new_tokens(), " is not at least 1 (leave it unset for the default)"));
    }
    request.max_new_tokens = decoding.max_new_tokens();
  }
  request.stop.assign(decoding.stop().begin(), decoding.stop().end());
  request.ignore_eos = decoding.ignore_eos();
  request.diagnostics = proto.return_diagnostics();
  return request;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  static constexpr std::pair<absl::StatusCode, grpc::StatusCode> kCodes[] = {
      {absl::StatusCode::kOk, grpc::StatusCode::OK},
      {absl::StatusCode::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT},
      {absl::StatusCode::kResourceExhausted, grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::StatusCode::kUnavailable, grpc::StatusCode::UNAVAILABLE},
      {absl::StatusCode::kUnauthenticated, grpc::StatusCode::UNAUTHENTICATED},
      {absl::StatusCode::kCancelled, grpc::StatusCode::CANCELLED},
      {absl::StatusCode::kDeadlineExceeded, grpc::StatusCode::DEADLINE_EXCEEDED},
      {absl::StatusCode::kNotFound, grpc::StatusCode::NOT_FOUND},
  };
  grpc::StatusCode code = grpc::StatusCode::INTERNAL;
  for (const auto& [from, to] : kCodes) {
    if (from == status.code()) code = to;
  }
  if (code == grpc::StatusCode::OK) return grpc::Status::OK;

  const absl::Status renamed = RenameField(status, ProtoPaths());
  const std::string message(renamed.message());
  // The rich error model (google.rpc.Status in the grpc-status-details-bin trailer): the field as data for
  // a bad request, how long to back off when the server is full.
  google::rpc::Status details;
  if (const std::optional<std::string> field = ErrorField(renamed); field.has_value()) {
    google::rpc::BadRequest bad_request;
    google::rpc::BadRequest::FieldViolation* violation = bad_request.add_field_violations();
    violation->set_field(*field);
    violation->set_description(std::string(ErrorReason(renamed)));
    details.add_details()->PackFrom(bad_request);
  } else if (code == grpc::StatusCode::RESOURCE_EXHAUSTED) {
    google::rpc::RetryInfo retry;
    retry.mutable_retry_delay()->set_seconds(kRetryAfterSeconds);
    details.add_details()->PackFrom(retry);
  }
  if (details.details().empty()) return grpc::Status(code, message);
  details.set_code(static_cast<int>(code));
  details.set_message(message);
  return grpc::Status(code, message, details.SerializeAsString());
}

v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kCancelled:
      return v1::FINISH_REASON_CANCELLED;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void ToProto(const Usage& usage, v1::Usage* out) {
  out->set_prompt_tokens(usage.prompt_tokens);
  out->set_generated_tokens(usage.generated_tokens);
  out->set_queue_seconds(absl::ToDoubleSeconds(usage.queue_time));
  out->set_decode_seconds(absl::ToDoubleSeconds(usage.decode_time));
}

}  // namespace pad::server

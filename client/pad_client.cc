// pad_client: streams one aligned answer from a pad_server to the terminal, then its usage.
//
//   pad_client --server=localhost:50051 --prompt="Tell me about owls" --principles=humor,harmless
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "client/wire_mode.h"
#include "pad/or_die.h"
#include "pad/read_file.h"
#include "pad/v1/pad.grpc.pb.h"

ABSL_FLAG(std::string, server, "localhost:50051", "pad_server address");
ABSL_FLAG(std::string, prompt, "", "the user's message");
ABSL_FLAG(std::string, system, "", "a system message");
ABSL_FLAG(bool, raw, false, "send --prompt as a raw prompt, without the chat template");
ABSL_FLAG(std::string, mode, "pad", "pad, vanilla, preference_prompt or genarm");
ABSL_FLAG(std::vector<std::string>, principles, {}, "comma-separated principles, e.g. helpful,humorous");
ABSL_FLAG(std::vector<std::string>, weights, {}, "per-principle weights (implies --composition=weighted)");
ABSL_FLAG(std::string, composition, "prompt", "prompt or weighted");
ABSL_FLAG(std::string, reward_model, "", "PRM name (default: the server's first)");
ABSL_FLAG(int, top_k, 10, "candidates per step");
ABSL_FLAG(double, beta, 1.0, "reward weight");
ABSL_FLAG(double, temperature, 0.0, "0 is greedy");
ABSL_FLAG(uint64_t, seed, 0, "sampling seed");
ABSL_FLAG(int, max_new_tokens, 128, "most tokens to generate");
ABSL_FLAG(std::vector<std::string>, stop, {}, "comma-separated stop strings");
ABSL_FLAG(double, deadline_s, 0, "give up after this many seconds (0: no deadline)");
ABSL_FLAG(std::string, token_file, "", "file holding the bearer token");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA to verify the server with; enables TLS");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate (mTLS)");
ABSL_FLAG(std::string, tls_key, "", "PEM client key (mTLS)");
ABSL_FLAG(bool, diagnostics, false, "print each token's reward and whether PAD changed the policy's choice");

namespace {

std::shared_ptr<grpc::ChannelCredentials> Credentials() {
  if (absl::GetFlag(FLAGS_tls_ca).empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = pad::OrDie(pad::ReadFile(absl::GetFlag(FLAGS_tls_ca)));
  if (!absl::GetFlag(FLAGS_tls_cert).empty()) {
    ssl.pem_cert_chain = pad::OrDie(pad::ReadFile(absl::GetFlag(FLAGS_tls_cert)));
    ssl.pem_private_key = pad::OrDie(pad::ReadFile(absl::GetFlag(FLAGS_tls_key)));
  }
  return grpc::SslCredentials(ssl);
}

pad::v1::GenerateAlignedRequest RequestFromFlags() {
  pad::v1::GenerateAlignedRequest request;
  if (absl::GetFlag(FLAGS_raw)) {
    request.set_prompt(absl::GetFlag(FLAGS_prompt));
  } else {
    if (!absl::GetFlag(FLAGS_system).empty()) {
      auto* m = request.add_messages();
      m->set_role("system");
      m->set_content(absl::GetFlag(FLAGS_system));
    }
    auto* m = request.add_messages();
    m->set_role("user");
    m->set_content(absl::GetFlag(FLAGS_prompt));
  }
  pad::v1::Preference* preference = request.mutable_preference();
  const auto weights = absl::GetFlag(FLAGS_weights);
  const auto principles = absl::GetFlag(FLAGS_principles);
  for (size_t i = 0; i < principles.size(); ++i) {
    pad::v1::Principle* p = preference->add_principles();
    p->set_text(principles[i]);
    if (i < weights.size()) p->set_weight(std::stod(weights[i]));
  }
  const bool weighted = !weights.empty() || absl::GetFlag(FLAGS_composition) == "weighted";
  preference->set_composition(weighted ? pad::v1::COMPOSITION_WEIGHTED : pad::v1::COMPOSITION_PROMPT);
  preference->set_reward_model(absl::GetFlag(FLAGS_reward_model));
  pad::v1::DecodingParams* decoding = request.mutable_decoding();
  decoding->set_mode(pad::client::WireModeOrDie("mode", absl::GetFlag(FLAGS_mode)));
  decoding->set_top_k(absl::GetFlag(FLAGS_top_k));
  decoding->set_beta(absl::GetFlag(FLAGS_beta));
  decoding->set_temperature(absl::GetFlag(FLAGS_temperature));
  decoding->set_seed(absl::GetFlag(FLAGS_seed));
  decoding->set_max_new_tokens(absl::GetFlag(FLAGS_max_new_tokens));
  for (const std::string& stop : absl::GetFlag(FLAGS_stop)) decoding->add_stop(stop);
  request.set_return_token_ids(absl::GetFlag(FLAGS_diagnostics));
  return request;
}

const char* FinishName(pad::v1::FinishReason reason) {
  switch (reason) {
    case pad::v1::FINISH_REASON_STOP:
      return "stop";
    case pad::v1::FINISH_REASON_LENGTH:
      return "length";
    case pad::v1::FINISH_REASON_CANCELLED:
      return "cancelled";
    default:
      return "unspecified";
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Streams an aligned answer from a pad_server.");
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_prompt).empty()) {
    std::cerr << "pad_client: --prompt is empty\n";
    return 2;
  }
  auto channel = grpc::CreateChannel(absl::GetFlag(FLAGS_server), Credentials());
  auto stub = pad::v1::PadService::NewStub(channel);
  grpc::ClientContext context;
  if (!absl::GetFlag(FLAGS_token_file).empty()) {
    context.AddMetadata("authorization", "Bearer " + std::string(absl::StripAsciiWhitespace(pad::OrDie(
                                                         pad::ReadFile(absl::GetFlag(FLAGS_token_file))))));
  }
  if (absl::GetFlag(FLAGS_deadline_s) > 0) {
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(
                                                                1e3 * absl::GetFlag(FLAGS_deadline_s))));
  }
  const auto start = std::chrono::steady_clock::now();
  double first_token_s = -1;
  auto reader = stub->GenerateAligned(&context, RequestFromFlags());
  pad::v1::GenerateAlignedResponse response;
  pad::v1::Final final;
  while (reader->Read(&response)) {
    if (first_token_s < 0 && !response.text().empty()) {
      first_token_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    std::cout << response.text() << std::flush;
    for (const pad::v1::GeneratedToken& token : response.tokens()) {
      std::cerr << absl::StrFormat(" [%d r=%+.3f%s]", token.id(), token.reward(),
                                   token.changed_top_choice() ? " changed" : "");
    }
    if (response.has_final()) final = response.final();
  }
  const grpc::Status status = reader->Finish();
  std::cout << "\n";
  if (!status.ok()) {
    std::cerr << "pad_client: " << status.error_code() << " " << status.error_message() << "\n";
    return 1;
  }
  std::cerr << absl::StrFormat(
      "[%s; %d prompt tokens, %d generated; queued %.3f s, decoding %.3f s; first text %.3f s]\n",
      FinishName(final.finish_reason()), final.usage().prompt_tokens(), final.usage().generated_tokens(),
      final.usage().queue_seconds(), final.usage().decode_seconds(), first_token_s);
  return 0;
}

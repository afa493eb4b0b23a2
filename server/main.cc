// pad_server: serves pad.v1.PadService over gRPC, with health, reflection and Prometheus metrics.
//
// Flags convert once into EngineOptions and ServerOptions; --flagfile=FILE reads them from a file (a
// Kubernetes ConfigMap). SIGTERM or SIGINT: stop admitting, let streams finish for --shutdown_grace_s,
// exit 0.
#include <google/protobuf/stubs/logging.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <signal.h>

#include <algorithm>
#include <climits>
#include <iostream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "pad/engine.h"
#include "pad/or_die.h"
#include "pad/read_file.h"
#include "server/health_service.h"
#include "server/http_server.h"
#include "server/log_writer.h"
#include "server/metrics.h"
#include "server/openai_api.h"
#include "server/pad_service.h"
#include "server/serving_metrics.h"
#include "server/web_chat.h"

ABSL_FLAG(std::string, policy, "models/SmolLM2-135M-Instruct", "the policy: a Hugging Face model directory");
ABSL_FLAG(std::vector<std::string>, reward_models, {"default"},
          "PRMs, comma-separated, each NAME[=BACKBONE_DIR[:ADAPTER_DIR[:VALUE_HEAD]]]; a bare NAME or an "
          "empty BACKBONE_DIR means the policy's own backbone (shared in memory); the first is the default");
ABSL_FLAG(std::string, listen, "0.0.0.0:50051", "gRPC address");
ABSL_FLAG(std::string, http_listen, "0.0.0.0:9090",
          "HTTP address of the web chat (/), the OpenAI-compatible API (/v1), /metrics, /healthz, /readyz");
ABSL_FLAG(
    std::string, probe_listen, "",
    "HTTP address of /healthz, /readyz and /metrics alone, with workers of their own, so that probes and "
    "scrapes answer however busy the API's workers are (Kubernetes: the Deployment's probes); empty: "
    "only on --http_listen");
ABSL_FLAG(int, prepare_threads, 2,
          "threads that parse, render and tokenize gRPC requests, off gRPC's callback threads; up to "
          "--kv_slots + --max_waiting + this many requests wait for them, more get RESOURCE_EXHAUSTED");
ABSL_FLAG(
    std::vector<std::string>, cors_allowed_origins, {},
    "origins whose web pages may call the HTTP API from a browser (CORS), comma-separated, e.g. "
    "https://chat.example.com; * allows any; empty: none (same-origin pages only, such as the web chat)");
ABSL_FLAG(
    std::string, served_model_name, "",
    "the model name OpenAI clients send and GET /v1/models lists; empty: the --policy directory's name");
ABSL_FLAG(int, http_threads, 0,
          "HTTP workers, one per open connection; 0: --kv_slots + --max_waiting + 8, a worker for every "
          "request the engine can hold and for the probes");
ABSL_FLAG(int, http_max_queued, 64,
          "HTTP connections that may wait for a worker; more are answered 503 with Retry-After");
ABSL_FLAG(std::string, dtype, "float32", "float32, bfloat16 or float16");
ABSL_FLAG(std::string, device, "cpu", "cpu or cuda[:N]");
ABSL_FLAG(bool, cpu_kernels, true,
          "on the CPU, float32 and bfloat16 products of a few rows (decode steps) on the project's AVX2 / "
          "AVX-512 kernels where the CPU has them; false: LibTorch's GEMM for every product");
ABSL_FLAG(std::string, quantization, "none",
          "none or int8: int8 weights for the projections and lm_head, groups of 32 with a scale each "
          "(llama.cpp's Q8_0 layout); CPU kernels only, activations and KV cache stay in --dtype");
ABSL_FLAG(int64_t, kv_slots, 16,
          "most sequences resident per backbone's KV cache (a PAD request takes 1 + its PRM rows); a limit, "
          "not the unit of memory");
ABSL_FLAG(double, gpu_memory_fraction, 0,
          "if > 0, the KV cache pool is as many blocks as fit in this share of the device's memory once the "
          "models are loaded, less --memory_reserve_mib; on the CPU, the share of the host's memory");
ABSL_FLAG(int64_t, kv_cache_mib, 0,
          "without --gpu_memory_fraction, the KV cache pool's size (all caches together); 0: enough for "
          "--kv_slots sequences at --max_seq_len");
ABSL_FLAG(
    int64_t, kv_block_size, 0,
    "tokens per KV cache block; 0: 256 on a GPU (FlashAttention's paged kernel's least), 16 on the CPU");
ABSL_FLAG(bool, prefix_cache, true,
          "keep full KV blocks of prompts and answers, keyed by their tokens, for later requests that begin "
          "with them; --noprefix_cache to compare");
ABSL_FLAG(int64_t, max_batch_tokens, 2048,
          "most tokens one engine step feeds the models: decode rows first, then prompts in chunks, so "
          "long prompts arriving cannot stall running streams; 0: prompts are prefilled whole");
ABSL_FLAG(double, prefill_stall_ratio, 1.0,
          "while streams decode, a step prefills beside them only as many prompt tokens as recent steps' "
          "measured costs say add about this many times the decode's own time (at least 16), so that a "
          "step with a prefill costs about 1 + this many decode steps and running streams' token gaps stay "
          "within about 2x their median while prompts arrive (bench/RESULTS.md); higher: prompts prefill "
          "sooner, gaps grow; 0: --max_batch_tokens alone");
ABSL_FLAG(bool, cuda_graphs, false,
          "decode steps in fixed shapes, recorded as CUDA graphs on a GPU (one per batch-size bucket, at "
          "start-up) and replayed; on the CPU the same steps run directly");
ABSL_FLAG(int64_t, memory_reserve_mib, 2048,
          "with --gpu_memory_fraction: memory kept for activations and workspace");
ABSL_FLAG(int64_t, max_seq_len, 4096, "most tokens of one sequence, prompt and answer");
ABSL_FLAG(int, max_prompt_tokens, 0, "longer prompts are refused; 0: 2048, or less to fit --max_seq_len");
ABSL_FLAG(int, max_new_tokens, 0,
          "largest max_new_tokens a request may ask; 0: 2048, or less to fit --max_seq_len");
ABSL_FLAG(int, max_request_bytes, 4 << 20,
          "largest request accepted: a serialized gRPC request (larger is RESOURCE_EXHAUSTED, gRPC's own "
          "message) or an HTTP body (larger is 413)");
ABSL_FLAG(int, max_waiting, 64, "requests queued beyond the running batch; more get RESOURCE_EXHAUSTED");
ABSL_FLAG(double, shutdown_grace_s, 30, "on SIGTERM, how long in-flight streams may run on");
ABSL_FLAG(
    double, max_connection_age_s, 300,
    "how long a client's connection (gRPC or HTTP) lives before the server asks it to reconnect, so that "
    "long-lived clients spread over replicas added since (gRPC: GOAWAY, jittered by +-10%; HTTP: "
    "Connection: close on the next answer); 0: forever");
ABSL_FLAG(double, max_connection_age_grace_s, 0,
          "gRPC: how long a connection's streams may run on after its GOAWAY; 0: until they end");
ABSL_FLAG(int, log_queue_lines, 4096,
          "request log lines held for a slow stderr reader; more are dropped (pad_log_lines_dropped_total)");
ABSL_FLAG(std::string, auth_token_file, "", "file holding the bearer token clients must send");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain; with --tls_key, serve TLS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle; when set, clients must present certificates (mTLS)");

namespace {

[[noreturn]] void Die(const std::string& message) {
  std::cerr << "pad_server: " << message << std::endl;
  std::exit(1);
}

// A limit of 0 is its default cut to fit --max_seq_len; one given must fit it. Checked before anything
// loads: one line naming the flag, exit 1.
int TokenLimitFlag(const char* name, int given, int64_t max_seq_len) {
  constexpr int kDefault = 2048;
  if (given == 0) return static_cast<int>(std::min<int64_t>(kDefault, max_seq_len - 1));
  if (given < 1 || given >= max_seq_len) {
    Die(absl::StrCat("--", name, "=", given, ": must be in [1, --max_seq_len) = [1, ", max_seq_len, ")"));
  }
  return given;
}

pad::EngineOptions EngineOptionsFromFlags() {
  pad::EngineOptions options;
  const int64_t max_seq_len = absl::GetFlag(FLAGS_max_seq_len);
  if (absl::GetFlag(FLAGS_kv_slots) < 1) Die("--kv_slots: must be at least 1");
  if (max_seq_len < 2) Die("--max_seq_len: must be at least 2");
  if (absl::GetFlag(FLAGS_max_waiting) < 0) Die("--max_waiting: must be at least 0");
  if (absl::GetFlag(FLAGS_max_request_bytes) < 1024) Die("--max_request_bytes: must be at least 1024");
  if (absl::GetFlag(FLAGS_prepare_threads) < 1) Die("--prepare_threads: must be at least 1");
  if (!(absl::GetFlag(FLAGS_shutdown_grace_s) >= 0)) Die("--shutdown_grace_s: must be at least 0");
  if (!(absl::GetFlag(FLAGS_max_connection_age_s) >= 0)) Die("--max_connection_age_s: must be at least 0");
  if (!(absl::GetFlag(FLAGS_max_connection_age_grace_s) >= 0)) {
    Die("--max_connection_age_grace_s: must be at least 0");
  }
  options.policy_dir = absl::GetFlag(FLAGS_policy);
  for (const std::string& entry : absl::GetFlag(FLAGS_reward_models)) {
    std::vector<std::string> name_rest = absl::StrSplit(entry, absl::MaxSplits('=', 1));
    pad::RewardModelSpec spec;
    spec.name = name_rest[0];
    std::vector<std::string> parts;
    if (name_rest.size() > 1) parts = absl::StrSplit(name_rest[1], ':');
    spec.backbone_dir = parts.size() > 0 && !parts[0].empty() ? parts[0] : options.policy_dir;
    if (parts.size() > 1) spec.adapter_dir = parts[1];
    if (parts.size() > 2) spec.value_head_path = parts[2];
    if (spec.name.empty()) Die("--reward_models: an entry has no name");
    options.reward_models.push_back(spec);
  }
  auto dtype = pad::ParseDtype(absl::GetFlag(FLAGS_dtype));
  if (!dtype.ok()) Die("--dtype: " + std::string(dtype.status().message()));
  options.model.dtype = *dtype;
  auto device = pad::ParseDevice(absl::GetFlag(FLAGS_device));
  if (!device.ok()) Die("--device: " + std::string(device.status().message()));
  options.model.device = *device;
  options.model.cpu_kernels = absl::GetFlag(FLAGS_cpu_kernels);
  auto quantization = pad::ParseQuantization(absl::GetFlag(FLAGS_quantization));
  if (!quantization.ok()) Die("--quantization: " + std::string(quantization.status().message()));
  options.model.quantization = *quantization;
  options.decoder.kv_slots = absl::GetFlag(FLAGS_kv_slots);
  const double fraction = absl::GetFlag(FLAGS_gpu_memory_fraction);
  if (!(fraction >= 0 && fraction <= 1)) Die("--gpu_memory_fraction: must be in [0, 1]");
  if (absl::GetFlag(FLAGS_memory_reserve_mib) < 0) Die("--memory_reserve_mib: must be at least 0");
  options.decoder.memory_fraction = fraction;
  if (absl::GetFlag(FLAGS_kv_cache_mib) < 0) Die("--kv_cache_mib: must be at least 0");
  options.decoder.kv_cache_bytes = absl::GetFlag(FLAGS_kv_cache_mib) << 20;
  if (absl::GetFlag(FLAGS_kv_block_size) < 0) Die("--kv_block_size: must be at least 0");
  options.decoder.kv_block_size = absl::GetFlag(FLAGS_kv_block_size);
  options.decoder.prefix_cache = absl::GetFlag(FLAGS_prefix_cache);
  if (absl::GetFlag(FLAGS_max_batch_tokens) < 0) Die("--max_batch_tokens: must be at least 0");
  options.decoder.max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);
  const double stall_ratio = absl::GetFlag(FLAGS_prefill_stall_ratio);
  if (!(stall_ratio >= 0)) Die("--prefill_stall_ratio: must be at least 0");
  options.decoder.prefill_stall_ratio = stall_ratio;
  options.decoder.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
  options.decoder.memory_reserve_bytes = absl::GetFlag(FLAGS_memory_reserve_mib) << 20;
  options.decoder.max_seq_len = max_seq_len;
  options.decoder.max_prompt_tokens =
      TokenLimitFlag("max_prompt_tokens", absl::GetFlag(FLAGS_max_prompt_tokens), max_seq_len);
  options.decoder.max_new_tokens_limit =
      TokenLimitFlag("max_new_tokens", absl::GetFlag(FLAGS_max_new_tokens), max_seq_len);
  options.max_waiting = absl::GetFlag(FLAGS_max_waiting);
  return options;
}

// Readiness, owned in one place: /readyz and gRPC health both follow it. Loading becomes serving once the
// models are loaded, and anything becomes draining on a signal; draining is final, so a load that finishes
// after SIGTERM cannot report SERVING again. Nothing here touches the engine, which main may destroy.
class Readiness {
 public:
  explicit Readiness(pad::server::HealthService* health) : health_(health) {}
  void Loaded() {
    absl::MutexLock lock(&mu_);
    if (state_ != State::kLoading) return;
    state_ = State::kServing;
    health_->SetServing(true);
  }
  void Drain() {
    absl::MutexLock lock(&mu_);
    state_ = State::kDraining;
    health_->SetServing(false);
  }
  bool serving() const {
    absl::MutexLock lock(&mu_);
    return state_ == State::kServing;
  }

 private:
  enum class State { kLoading, kServing, kDraining };
  mutable absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kLoading;
  pad::server::HealthService* const health_;
};

pad::server::HttpServerOptions HttpOptionsFromFlags(const pad::EngineOptions& engine_options) {
  pad::server::HttpServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_http_listen);
  options.num_threads = absl::GetFlag(FLAGS_http_threads);
  if (options.num_threads < 0) Die("--http_threads: must be at least 0");
  if (options.num_threads == 0) {
    options.num_threads = static_cast<int>(engine_options.decoder.kv_slots) + engine_options.max_waiting + 8;
  }
  options.max_queued_connections = absl::GetFlag(FLAGS_http_max_queued);
  const double age = absl::GetFlag(FLAGS_max_connection_age_s);
  options.max_connection_age = age > 0 ? absl::Seconds(age) : absl::InfiniteDuration();
  if (options.max_queued_connections < 0) Die("--http_max_queued: must be at least 0");
  options.max_body_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_request_bytes));
  options.cors_allowed_origins = absl::GetFlag(FLAGS_cors_allowed_origins);
  return options;
}

// --served_model_name, or the policy directory's last component ("SmolLM2-135M-Instruct").
std::string ServedModelName(const std::string& policy_dir) {
  if (!absl::GetFlag(FLAGS_served_model_name).empty()) return absl::GetFlag(FLAGS_served_model_name);
  const absl::string_view dir = absl::StripSuffix(policy_dir, "/");
  const size_t slash = dir.rfind('/');
  return std::string(slash == absl::string_view::npos ? dir : dir.substr(slash + 1));
}

enum class Pem { kPrivateKey, kCertificates };

// The contents of a --tls_* file, parsed with OpenSSL (what gRPC uses) so that a bad file is named here
// instead of gRPC failing to listen.
std::string ReadPem(const std::string& flag, const std::string& path, Pem kind) {
  std::string pem = pad::OrDie(pad::ReadFile(path));
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())),
                                                BIO_free);
  bool parsed = false;
  if (kind == Pem::kPrivateKey) {
    EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
    parsed = key != nullptr;
    EVP_PKEY_free(key);
  } else {
    X509* certificate = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    parsed = certificate != nullptr;
    X509_free(certificate);
  }
  if (!parsed) {
    Die(absl::StrCat("--", flag, "=", path, ": not a PEM ",
                     kind == Pem::kPrivateKey ? "private key" : "certificate"));
  }
  return pem;
}

std::shared_ptr<grpc::ServerCredentials> CredentialsFromFlags() {
  if (absl::GetFlag(FLAGS_tls_cert).empty() != absl::GetFlag(FLAGS_tls_key).empty()) {
    Die("--tls_cert and --tls_key go together");
  }
  if (absl::GetFlag(FLAGS_tls_cert).empty()) {
    if (!absl::GetFlag(FLAGS_tls_client_ca).empty()) Die("--tls_client_ca needs --tls_cert and --tls_key");
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({ReadPem("tls_key", absl::GetFlag(FLAGS_tls_key), Pem::kPrivateKey),
                                    ReadPem("tls_cert", absl::GetFlag(FLAGS_tls_cert), Pem::kCertificates)});
  if (!absl::GetFlag(FLAGS_tls_client_ca).empty()) {
    ssl.pem_root_certs = ReadPem("tls_client_ca", absl::GetFlag(FLAGS_tls_client_ca), Pem::kCertificates);
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Serves personalized alignment at decoding time (PAD) over gRPC.");
  // --help lists this file's flags: abseil would look for a file named after the binary, pad_server.cc.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) { return absl::EndsWith(file, "server/main.cc"); };
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);
  // Protobuf logs every string that is not UTF-8; the client is told which field (ParseRequest), and a
  // client sending many would otherwise fill the log.
  google::protobuf::SetLogHandler(nullptr);

  // Every thread started from here on inherits the blocked signals; one thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  pad::server::MetricsRegistry registry;
  pad::server::ServingMetrics metrics(&registry);
  if (absl::GetFlag(FLAGS_log_queue_lines) < 1) Die("--log_queue_lines: must be at least 1");
  // Outlives the engine, whose last events log.
  pad::server::LogWriter request_log(2, absl::GetFlag(FLAGS_log_queue_lines), metrics.log_lines_dropped());
  pad::EngineOptions engine_options = EngineOptionsFromFlags();
  engine_options.on_stats = [&metrics](const pad::EngineStats& stats) { metrics.UpdateEngine(stats); };
  std::string token;
  if (!absl::GetFlag(FLAGS_auth_token_file).empty()) {
    token = std::string(
        absl::StripAsciiWhitespace(pad::OrDie(pad::ReadFile(absl::GetFlag(FLAGS_auth_token_file)))));
    if (token.empty()) Die("--auth_token_file is empty");
  }

  // Files first: a bad one must not leave an engine thread behind.
  const std::shared_ptr<grpc::ServerCredentials> credentials = CredentialsFromFlags();
  const pad::server::HttpServerOptions http_options = HttpOptionsFromFlags(engine_options);
  pad::server::OpenAiApiOptions openai_options{ServedModelName(engine_options.policy_dir), token};
  // The server as a whole ("") and our API. Declared before the gRPC server, which it must outlive.
  pad::server::HealthService health({"", "pad.v1.PadService"});
  Readiness readiness(&health);
  std::unique_ptr<pad::Engine> engine = pad::Engine::Start(engine_options);
  std::unique_ptr<pad::server::HttpServer> http;
  std::unique_ptr<pad::server::HttpServer> probes;
  // A port that cannot be served ends the process, said at once. The HTTP workers (maybe answering a
  // probe) stop first and then the engine (maybe still loading): exit's destructors of static objects
  // must not run under a thread still using them.
  const auto fail = [&engine, &http, &probes](const std::string& message) {
    std::cerr << "pad_server: " << message << std::endl;
    probes.reset();
    http.reset();
    engine.reset();
    std::exit(1);
  };

  auto started = pad::server::HttpServer::Start(http_options, [&](httplib::Server& server) {
    pad::server::ProbeRoutes(&registry, [&readiness] { return readiness.serving(); })(server);
    pad::server::OpenAiRoutes(engine.get(), &metrics, &request_log, openai_options)(server);
    pad::server::WebChatRoutes()(server);
  });
  if (!started.ok()) fail(std::string(started.status().message()));
  http = *std::move(started);
  if (!absl::GetFlag(FLAGS_probe_listen).empty()) {
    // A few workers suffice: a probe or a scrape is one short request, and a connection that holds a
    // worker idle is dropped after a second.
    pad::server::HttpServerOptions probe_options;
    probe_options.listen_address = absl::GetFlag(FLAGS_probe_listen);
    probe_options.num_threads = 4;
    probe_options.read_timeout = probe_options.write_timeout = probe_options.idle_timeout = absl::Seconds(1);
    probe_options.max_body_bytes = 1024;
    auto probes_started = pad::server::HttpServer::Start(
        probe_options, pad::server::ProbeRoutes(&registry, [&readiness] { return readiness.serving(); }));
    if (!probes_started.ok()) fail(std::string(probes_started.status().message()));
    probes = *std::move(probes_started);
  }

  grpc::EnableDefaultHealthCheckService(false);  // ours (health) reads NOT_SERVING until the models load
  // Health (for kubelet probes) and reflection (the public schema) need no bearer token.
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  pad::server::ServiceOptions service_options{token, absl::GetFlag(FLAGS_max_request_bytes)};
  // Declared before the gRPC server, so that it outlives the server's Shutdown: a call whose preparation is
  // queued still gets its Finish (UNAVAILABLE, the engine draining).
  // Its queue holds as many requests as the engine can (running and waiting) and one per thread more, so
  // that a burst the engine could take is never refused here.
  const int prepare_threads = absl::GetFlag(FLAGS_prepare_threads);
  pad::server::WorkQueue preparation(prepare_threads, static_cast<size_t>(engine_options.decoder.kv_slots) +
                                                          static_cast<size_t>(engine_options.max_waiting) +
                                                          static_cast<size_t>(prepare_threads));
  pad::server::PadServiceImpl service(engine.get(), &metrics, &request_log, &preparation, service_options);
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(service_options.max_request_bytes);
  // Milliseconds as gRPC takes them; INT_MAX is its "never".
  const auto milliseconds = [](double seconds) {
    return seconds > 0 ? static_cast<int>(std::min(seconds * 1000, double{INT_MAX})) : INT_MAX;
  };
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                             milliseconds(absl::GetFlag(FLAGS_max_connection_age_s)));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                             milliseconds(absl::GetFlag(FLAGS_max_connection_age_grace_s)));
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), credentials, &port);
  builder.RegisterService(&service);
  builder.RegisterService(&health);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) fail("cannot listen on " + absl::GetFlag(FLAGS_listen));
  std::cerr << "pad_server: gRPC on " << absl::GetFlag(FLAGS_listen) << " (port " << port << "), metrics on "
            << absl::GetFlag(FLAGS_http_listen) << "; loading " << engine_options.policy_dir << std::endl;

  std::thread ready_waiter([&] {
    const absl::Status loaded = engine->WaitUntilReady();
    if (!loaded.ok()) {
      std::cerr << "pad_server: loading failed: " << loaded << std::endl;
      kill(getpid(), SIGTERM);
      return;
    }
    readiness.Loaded();
    const pad::EngineStats stats = engine->Stats();
    std::cerr
        << absl::StrFormat(
               "pad_server: ready; KV caches: %d blocks of %d tokens, %.2f GiB, for up to %d sequences of "
               "%d tokens%s",
               stats.kv.blocks_total, stats.kv.block_size, stats.kv.bytes / 1073741824.0,
               stats.kv.slots_total, engine_options.decoder.max_seq_len,
               stats.kv.plan.empty() ? " (--kv_slots x --max_seq_len)" : " (" + stats.kv.plan + ")")
        << std::endl;
  });

  int received = 0;
  sigwait(&signals, &received);
  const double grace = absl::GetFlag(FLAGS_shutdown_grace_s);
  std::cerr << "pad_server: signal " << received << "; draining for up to " << grace << " s" << std::endl;
  readiness.Drain();
  engine->Shutdown(absl::Seconds(grace));  // in-flight streams finish, new ones get UNAVAILABLE
  // The engine is drained; give the last writes a moment to reach their clients.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  ready_waiter.join();
  const bool loaded = engine->WaitUntilReady().ok();
  std::cerr << "pad_server: stopped" << std::endl;
  return loaded ? 0 : 1;
}

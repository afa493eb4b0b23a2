"""A small client of the real pad_server over gRPC: stubs, a server process on loopback, one-call generation.

    from pad_rpc import Server, generate, generate_many
    with Server("--reward_models=demo=:prm/DIR") as server:
        answer = generate(server.stub, "Tell me about owls", principles=["concise"])
        answer["text"], answer["finish_reason"], answer["generated_tokens"]

Nothing here imports from tests/; the stubs are generated from proto/pad/v1/pad.proto by grpc_tools into a
cache directory under the system temp dir, keyed by the proto's hash, so every caller shares one copy.
"""
import concurrent.futures
import hashlib
import importlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import grpc

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROTO = ROOT / "proto" / "pad" / "v1" / "pad.proto"
SERVER_BINARY = pathlib.Path(os.environ.get("PAD_BUILD", ROOT / "build")) / "server" / "pad_server"
DEFAULT_FLAGS = ("--policy=models/SmolLM2-135M-Instruct", "--kv_slots=32", "--max_seq_len=1024")

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

_stubs = None


def load_stubs():
    """(pad_pb2, pad_pb2_grpc), generated once per proto version into <tmp>/pad_eval_stubs/<hash>/."""
    global _stubs
    if _stubs is not None:
        return _stubs
    digest = hashlib.sha256(PROTO.read_bytes()).hexdigest()[:16]
    out = pathlib.Path(tempfile.gettempdir()) / "pad_eval_stubs" / digest
    if not (out / "pad" / "v1" / "pad_pb2_grpc.py").exists():
        # Generate beside the final directory, then rename: concurrent callers never see half a package.
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = pathlib.Path(tempfile.mkdtemp(dir=out.parent))
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "proto"),
                        f"--python_out={staging}", f"--grpc_python_out={staging}", "pad/v1/pad.proto"],
                       check=True, cwd=ROOT)
        try:
            staging.rename(out)
        except OSError:  # another process got there first
            shutil.rmtree(staging, ignore_errors=True)
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    _stubs = (importlib.import_module("pad.v1.pad_pb2"), importlib.import_module("pad.v1.pad_pb2_grpc"))
    return _stubs


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exit_on_sigterm():
    """Makes SIGTERM exit this process through Python's cleanup (SystemExit), so that a `with Server(...)`
    block stops its pad_server rather than leaving it running when the script is killed."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


class Server:
    """A pad_server process on free loopback ports, SERVING when the constructor returns; a context manager.

    `flags` are added to DEFAULT_FLAGS (a later flag of the same name wins, as abseil parses them); `env` is
    added to this process's environment for it (e.g. OMP_NUM_THREADS). The log
    goes to a temporary file (`logs()`), or to `log_path` when given. `stub` is a PadServiceStub on it.
    """

    def __init__(self, *flags, ready_timeout=300, log_path=None, binary=SERVER_BINARY, cwd=ROOT, env=None):
        if not pathlib.Path(binary).exists():
            raise RuntimeError(f"{binary} is not built; run ./scripts/test.sh")
        from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415  (grpcio-health-checking)
        self._health_pb2, self._health_grpc = health_pb2, health_pb2_grpc
        self.port, self.http_port = _free_port(), _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = open(log_path, "w+b") if log_path else tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [str(binary), *DEFAULT_FLAGS, f"--listen={self.address}",
             f"--http_listen=127.0.0.1:{self.http_port}", *flags],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd, env=dict(os.environ, **(env or {})))
        self.channel = grpc.insecure_channel(self.address)
        _, pad_pb2_grpc = load_stubs()
        self.stub = pad_pb2_grpc.PadServiceStub(self.channel)
        try:
            self._wait_serving(ready_timeout)
        except BaseException:
            self.stop()
            raise

    def logs(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def _wait_serving(self, timeout):
        health = self._health_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pad_server exited with {self.process.returncode}:\n{self.logs()[-4000:]}")
            try:
                status = health.Check(self._health_pb2.HealthCheckRequest(service=""), timeout=2.0).status
                if status == self._health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"pad_server not SERVING after {timeout} s:\n{self.logs()[-4000:]}")

    def stop(self, timeout=30):
        """SIGTERM, then the exit code (None if it had to be killed after `timeout` seconds)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None
        self.channel.close()
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        self.log.close()
        return False


_MODES = {"pad": "DECODING_MODE_PAD", "vanilla": "DECODING_MODE_VANILLA",
          "preference_prompt": "DECODING_MODE_PREFERENCE_PROMPT"}
_COMPOSITIONS = {"prompt": "COMPOSITION_PROMPT", "weighted": "COMPOSITION_WEIGHTED"}


def make_request(prompt, *, mode="pad", principles=(), weights=None, composition="prompt", reward_model="",
                 top_k=10, beta=1.0, temperature=0.0, seed=0, max_new_tokens=128, presence_penalty=0.0,
                 frequency_penalty=0.0):
    """The GenerateAlignedRequest for one user message; vanilla sends no principles."""
    pb, _ = load_stubs()
    request = pb.GenerateAlignedRequest(messages=[pb.ChatMessage(role="user", content=prompt)])
    if mode != "vanilla":
        if weights is not None and len(weights) != len(principles):
            raise ValueError("weights: one per principle")
        for i, text in enumerate(principles):
            p = request.preference.principles.add(text=text)
            if weights is not None:
                p.weight = float(weights[i])
        request.preference.composition = pb.Composition.Value(_COMPOSITIONS[composition])
        request.preference.reward_model = reward_model
    request.decoding.mode = pb.DecodingMode.Value(_MODES[mode])
    request.decoding.top_k = top_k
    request.decoding.beta = beta
    request.decoding.temperature = temperature
    request.decoding.seed = seed
    request.decoding.max_new_tokens = max_new_tokens
    request.decoding.presence_penalty = presence_penalty
    request.decoding.frequency_penalty = frequency_penalty
    return request


def generate(stub, prompt, *, mode="pad", principles=(), weights=None, composition="prompt", reward_model="",
             top_k=10, beta=1.0, temperature=0.0, seed=0, max_new_tokens=128, presence_penalty=0.0,
             frequency_penalty=0.0, timeout=600.0):
    """One streamed answer -> {"text", "finish_reason" ("stop"|"length"|"cancelled"), "generated_tokens"}.

    Raises grpc.RpcError on a failed call.
    """
    pb, _ = load_stubs()
    request = make_request(prompt, mode=mode, principles=principles, weights=weights, composition=composition,
                           reward_model=reward_model, top_k=top_k, beta=beta, temperature=temperature,
                           seed=seed, max_new_tokens=max_new_tokens, presence_penalty=presence_penalty,
                           frequency_penalty=frequency_penalty)
    pieces, final = [], None
    for message in stub.GenerateAligned(request, timeout=timeout):
        pieces.append(message.text)
        if message.HasField("final"):
            final = message.final
    if final is None:
        raise RuntimeError("stream ended without a final message")
    reason = pb.FinishReason.Name(final.finish_reason).removeprefix("FINISH_REASON_").lower()
    return {"text": "".join(pieces), "finish_reason": reason,
            "generated_tokens": int(final.usage.generated_tokens)}


def generate_retrying(stub, request, retries=5, **overrides):
    """generate(stub, **request, **overrides) for a dict `request` that has "prompt"; RESOURCE_EXHAUSTED and
    UNAVAILABLE are retried with backoff, other errors raised."""
    r = dict(request, **overrides)
    prompt = r.pop("prompt")
    for attempt in range(retries + 1):
        try:
            return generate(stub, prompt, **r)
        except grpc.RpcError as e:
            transient = e.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)
            if not transient or attempt == retries:
                raise
            time.sleep(0.5 * 2 ** attempt)


def generate_many(stub, requests, concurrency=12, retries=5):
    """generate(stub, **r) for each dict r in `requests` (each has "prompt"), `concurrency` streams at a time
    (the server batches concurrent streams); answers in the order of `requests`. RESOURCE_EXHAUSTED and
    UNAVAILABLE are retried with backoff."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(lambda r: generate_retrying(stub, r, retries), requests))

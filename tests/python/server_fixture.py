"""Runs the real pad_server binary over loopback for the black-box tests: ports, start, readiness, stop."""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import tempfile
import time
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import BUILD, ROOT

SERVER = BUILD / "server" / "pad_server"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_stubs(out_dir):
    """Generates pad.v1's Python modules with grpc_tools.protoc into out_dir; returns (pad_pb2, pad_pb2_grpc)."""
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "proto"),
                    f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", "pad/v1/pad.proto"],
                   check=True, cwd=ROOT)
    if str(out_dir) not in sys.path:
        sys.path.insert(0, str(out_dir))
    from pad.v1 import pad_pb2, pad_pb2_grpc  # noqa: E402  (generated above)
    return pad_pb2, pad_pb2_grpc


# --- pad.v1 requests in pad_probe's JSON form -------------------------------------------------------------------

def stub_of(pb, channel):
    return pb[1].PadServiceStub(channel)


def to_proto(pb, spec):
    """The GenerateAlignedRequest for a request in pad_probe's JSON form."""
    pad_pb2 = pb[0]
    modes = {"pad": pad_pb2.DECODING_MODE_PAD, "vanilla": pad_pb2.DECODING_MODE_VANILLA,
             "preference_prompt": pad_pb2.DECODING_MODE_PREFERENCE_PROMPT, "genarm": pad_pb2.DECODING_MODE_GENARM}
    weights = spec.get("weights", [])
    principles = [pad_pb2.Principle(text=t, weight=weights[i]) if i < len(weights) else pad_pb2.Principle(text=t)
                  for i, t in enumerate(spec.get("principles", []))]
    preference = pad_pb2.Preference(
        principles=principles, reward_model=spec.get("reward_model", ""),
        composition=(pad_pb2.COMPOSITION_WEIGHTED if spec.get("composition") == "weighted"
                     else pad_pb2.COMPOSITION_PROMPT))
    if "policy_sees_guideline" in spec:
        preference.policy_sees_guideline = spec["policy_sees_guideline"]
    decoding = pad_pb2.DecodingParams(mode=modes[spec.get("mode", "pad")], temperature=spec.get("temperature", 0.0),
                                      seed=spec.get("seed", 0), stop=spec.get("stop", []),
                                      ignore_eos=spec.get("ignore_eos", False),
                                      presence_penalty=spec.get("presence_penalty", 0.0),
                                      frequency_penalty=spec.get("frequency_penalty", 0.0))
    for field in ("top_k", "beta", "max_new_tokens"):
        if field in spec:
            setattr(decoding, field, spec[field])
    return pad_pb2.GenerateAlignedRequest(
        prompt=spec.get("prompt", ""),
        messages=[pad_pb2.ChatMessage(role=m["role"], content=m["content"]) for m in spec.get("messages", [])],
        preference=preference, decoding=decoding)


def collect(responses):
    """(text, final, number of messages) of a finished stream."""
    text, final, count = "", None, 0
    for message in responses:
        count += 1
        assert final is None, "a message after the final one"
        text += message.text
        if message.HasField("final"):
            final = message.final
    return text, final, count



class Server:
    """One pad_server process: gRPC on `port`, HTTP (/metrics, /healthz, /readyz) on `http_port`."""

    def __init__(self, model_dir, *flags, credentials=None, ready_timeout=60, output=None, metadata=None, env=None):
        """`output`: where stdout and stderr go (a file descriptor); by default a temporary file, logs().
        `metadata`: what gRPC calls must send (a bearer token), kept for the tests as `self.metadata`.
        `env`: the process's environment (default: this one's)."""
        if not SERVER.exists():
            raise RuntimeError(f"{SERVER} is not built; run ./scripts/test.sh")
        self.port = free_port()
        self.http_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [str(SERVER), f"--policy={model_dir}", f"--listen={self.address}",
             f"--http_listen=127.0.0.1:{self.http_port}", *flags],
            stdout=self.log if output is None else output, stderr=subprocess.STDOUT, env=env)
        self.credentials = credentials
        self.metadata = metadata
        self.channel = self.new_channel()
        self.wait_serving(ready_timeout)

    def new_channel(self):
        if self.credentials is not None:
            return grpc.secure_channel(self.address, self.credentials)
        return grpc.insecure_channel(self.address)

    def logs(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def health(self, service="", metadata=None, timeout=2.0):
        stub = health_pb2_grpc.HealthStub(self.channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout,
                          metadata=metadata).status

    def wait_serving(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pad_server exited with {self.process.returncode}:\n{self.logs()}")
            try:
                if self.health() == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"pad_server not SERVING after {timeout} s:\n{self.logs()}")

    def http(self, path):
        """(status, body) of GET path on the metrics port."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics_text(self):
        status, body = self.http("/metrics")
        assert status == 200, body
        return body

    def metric(self, name, **labels):
        """The sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
        total, found = 0.0, False
        for line in self.metrics_text().splitlines():
            if line.startswith("#"):
                continue
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
            if not m or m.group(1) != name:
                continue
            have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(m.group(3))
                found = True
        return total if found else 0.0

    def generated_tokens(self):
        """Tokens the server has generated, over every request so far."""
        return self.metric("pad_generated_tokens_total")

    def assert_idle_soon(self, tokens_before, most_tokens):
        """Asserts that no request runs and no KV slot or block is held, at most `most_tokens` tokens after
        `tokens_before` (generated_tokens() when the requests were cancelled): freed within a few decoding
        steps, counted in steps rather than seconds, so that a loaded machine does not fail the test and a
        request that ran to its end does."""
        def idle():
            return self.metric("pad_requests_running") == 0 and self.metric("pad_kv_cache_slots_used") == 0 \
                and self.metric("pad_kv_cache_blocks_used") == 0
        assert wait_for(idle, PATIENCE), (f"running={self.metric('pad_requests_running')} "
                                          f"slots_used={self.metric('pad_kv_cache_slots_used')} "
                                          f"blocks_used={self.metric('pad_kv_cache_blocks_used')}")
        after = self.generated_tokens() - tokens_before
        assert after <= most_tokens, f"{after} tokens generated after the cancel (at most {most_tokens})"

    def terminate(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout=30):
        """SIGTERM, then the exit code (killing the process if it does not exit within `timeout`)."""
        self.terminate()
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None
        self.channel.close()
        return code

    def stop_and_check(self):
        code = self.stop()
        assert code == 0, f"pad_server exited with {code}:\n{self.logs()[-4000:]}"
        self.log.close()


# The longest a test waits for what must happen (a gauge to reach a value, a stream to end): minutes, for a
# 2-core machine running other work beside the tests. Reaching it is a failure, never a pass, and what a test
# asserts about promptness it counts in decoding steps or in the order of events instead.
PATIENCE = 300.0


def wait_for(predicate, timeout=PATIENCE, interval=0.1):
    """Polls predicate() until it is truthy or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def run_concurrently(functions):
    """Runs every function at once; their results, an exception standing for a failed one."""
    results = [None] * len(functions)
    start = threading.Barrier(len(functions))

    def run(i):
        start.wait()
        try:
            results[i] = functions[i]()
        except Exception as e:  # noqa: BLE001 - returned to the test, which names the stream
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(functions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=PATIENCE)
    return results

"""The real pad_server binary over loopback for the black-box tests: client/python/pad_server_process.py's
launcher with what only the tests need (a bearer token to send, counting generated tokens, asserting idleness
and a clean exit), and grpcio stubs of pad.v1 generated here from the proto, so that the tests check the wire
with protoc's own output rather than with the client package's copy."""
import subprocess
import sys
import threading
import time

from conftest import ROOT
from pad_server_process import SERVER_BINARY as SERVER, PadServerProcess, free_port  # noqa: F401  (re-exported)


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


class Server(PadServerProcess):
    """pad_server on `model_dir` for one test: the test's own environment and working directory, 60 s to be
    SERVING. `metadata`: what gRPC calls must send (a bearer token), kept for the tests as `self.metadata`."""

    def __init__(self, model_dir, *flags, credentials=None, ready_timeout=60, output=None, metadata=None, env=None):
        self.metadata = metadata
        super().__init__(*flags, policy=model_dir, env=env, cwd=None, output=output, credentials=credentials,
                         ready_timeout=ready_timeout)

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

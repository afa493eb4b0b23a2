"""Black-box tests of pad_server: the real binary over loopback, driven by grpcio, checked against the library's
own output (build/tests/pad_probe), promtool/Prometheus, grpc health and reflection, and openssl certificates."""
import concurrent.futures
import fcntl
import json
import math
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from conftest import probe
from server_fixture import PATIENCE, Server, collect, free_port, stub_of, to_proto, wait_for

QUESTION = [{"role": "user", "content": "What is a good way to spend a rainy afternoon?"}]


@pytest.fixture(scope="module")
def server(model_dir):
    """The shared server: room for 16 concurrent PAD streams, small prompt limit for the error table."""
    s = Server(model_dir, "--kv_slots=40", "--max_prompt_tokens=256", "--shutdown_grace_s=10")
    yield s
    s.stop_and_check()


def library_results(model_dir, specs):
    """pad_probe's answers for specs, decoded one at a time, with the server's default (identity) PRM."""
    request = {"command": "generate", "policy": str(model_dir), "dtype": "float32",
               "reward_models": [{"name": "default"}], "requests": specs, "batched": False}
    result = subprocess.run([probe("pad_probe")], input=json.dumps(request), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)["results"]
    for r in results:
        assert "error" not in r, r
    return results


def generate(pb, channel, spec, **kwargs):
    return collect(stub_of(pb, channel).GenerateAligned(to_proto(pb, spec), **kwargs))


def spec(mode, max_new_tokens=16, **fields):
    return {"messages": QUESTION, "mode": mode, "max_new_tokens": max_new_tokens, "ignore_eos": True,
            "temperature": 0.0, **fields}


# --- 1. Streams equal the library's output ---------------------------------------------------------------------

PARITY = {
    "vanilla": spec("vanilla"),
    "pad": spec("pad", principles=["humor"]),
    "weighted": spec("pad", principles=["humor", "harmless"], weights=[0.7, 0.3], composition="weighted"),
    "genarm": spec("genarm", principles=["humor"], beta=0.5),
}


@pytest.fixture(scope="module")
def parity_library(model_dir):
    return dict(zip(PARITY, library_results(model_dir, list(PARITY.values()))))


@pytest.mark.parametrize("name", list(PARITY))
def test_stream_equals_library(pb, server, parity_library, name):
    text, final, count = generate(pb, server.channel, PARITY[name], timeout=120)
    expected = parity_library[name]
    assert expected["finish_reason"] == "length"
    assert text == expected["text"]
    assert count >= 2, "the answer should stream in pieces"
    assert final is not None
    assert final.finish_reason == pb[0].FINISH_REASON_LENGTH
    assert final.usage.generated_tokens == PARITY[name]["max_new_tokens"]
    assert final.usage.prompt_tokens == expected["prompt_tokens"]


# --- 2. Concurrent streams equal the same requests run alone ----------------------------------------------------

def _concurrent_specs():
    questions = [QUESTION, [{"role": "user", "content": "Tell me about cats."}],
                 [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a color."}]]
    principles = [["humor"], ["harmless"], ["helpful and concise"], ["answer like a pirate"]]
    specs = []
    for i in range(16):
        mode = ("vanilla", "pad", "preference_prompt", "pad")[i % 4]
        s = {"messages": questions[i % 3], "mode": mode, "max_new_tokens": 10 + i % 5, "ignore_eos": True,
             "top_k": (10, 3, 20, 5)[i % 4], "beta": (1.0, 0.5, 2.0, 4.0)[(i // 4) % 4]}
        if mode != "vanilla":
            s["principles"] = principles[(i // 2) % 4]
        if i == 7:
            s.update(principles=["humor", "harmless"], weights=[0.25, 0.75], composition="weighted")
        if i == 11:
            s["policy_sees_guideline"] = False
        if i == 13:
            s.update(temperature=0.8, seed=42)
        if i == 14:
            s = {"prompt": "The capital of France is", "mode": "pad", "principles": ["humor"],
                 "max_new_tokens": 12, "ignore_eos": True}
        specs.append(s)
    return specs


def test_concurrent_streams_equal_alone(pb, server, model_dir):
    specs = _concurrent_specs()
    expected = library_results(model_dir, specs)
    results = [None] * len(specs)
    start = threading.Barrier(len(specs))

    def run(i):
        start.wait()
        try:
            results[i] = generate(pb, server.channel, specs[i], timeout=PATIENCE)
        except grpc.RpcError as e:
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(specs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (got, want) in enumerate(zip(results, expected)):
        assert not isinstance(got, grpc.RpcError), f"request {i}: {got.code()} {got.details()}"
        text, final, _ = got
        assert text == want["text"], f"request {i} {specs[i]}"
        assert final.usage.generated_tokens == specs[i]["max_new_tokens"], f"request {i}"
        assert final.usage.prompt_tokens == want["prompt_tokens"], f"request {i}"
        assert final.finish_reason == pb[0].FINISH_REASON_LENGTH


# --- 3. Cancellation and deadlines free the request's slots -----------------------------------------------------

def test_cancel_mid_stream_frees_slots(pb, server):
    responses = stub_of(pb, server.channel).GenerateAligned(
        to_proto(pb, spec("pad", max_new_tokens=400, principles=["humor"])), timeout=120)
    for _ in range(2):
        message = next(responses)
        assert not message.HasField("final")
    assert server.metric("pad_requests_running") == 1
    assert server.metric("pad_kv_cache_slots_used") > 0
    assert server.metric("pad_kv_cache_blocks_used") > 0
    # The ratio a load-aware router reads: blocks held over blocks.
    assert server.metric("pad_kv_cache_usage_ratio") == (server.metric("pad_kv_cache_blocks_used")
                                                         / server.metric("pad_kv_cache_blocks"))
    tokens = server.generated_tokens()
    responses.cancel()
    with pytest.raises(grpc.RpcError) as error:
        collect(responses)
    assert error.value.code() == grpc.StatusCode.CANCELLED
    server.assert_idle_soon(tokens, most_tokens=64)  # of the 400 asked for
    text, final, _ = generate(pb, server.channel, spec("vanilla", max_new_tokens=4), timeout=60)
    assert final.usage.generated_tokens == 4 and text


def test_every_cancelled_stream_is_counted_once(pb, server):
    """Cancelled mid-write or between writes, each stream's finish is recorded once: the engine's cancel event
    is counted even when the stream's failed write ended it first."""
    def totals():
        return {status: server.metric("pad_requests_total", status=status)
                for status in ("ok", "cancelled", "error")}

    before = totals()
    n = 8
    stub = stub_of(pb, server.channel)
    tokens = server.generated_tokens()
    for _ in range(n):
        responses = stub.GenerateAligned(to_proto(pb, spec("vanilla", max_new_tokens=400)), timeout=120)
        next(responses)
        responses.cancel()
    server.assert_idle_soon(tokens, most_tokens=n * 64)  # of the n * 400 asked for
    assert wait_for(lambda: totals()["cancelled"] - before["cancelled"] == n), (before, totals())
    after = totals()
    assert (after["ok"], after["error"]) == (before["ok"], before["error"])


def test_a_stalled_log_pipe_does_not_stall_decoding(pb, model_dir):
    """Every finished request logs a line; when nobody reads the server's stderr (here a pipe of one page,
    about 17 lines), decoding must go on and the lines beyond the queue are dropped, and counted."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    s = Server(model_dir, "--kv_slots=8", "--log_queue_lines=16", output=write_end)
    os.close(write_end)
    try:
        stub = stub_of(pb, s.channel)
        n = 100
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
        futures = [pool.submit(lambda: collect(stub.GenerateAligned(
            to_proto(pb, spec("vanilla", max_new_tokens=1)), timeout=PATIENCE))[1]) for _ in range(n)]
        _, pending = concurrent.futures.wait(futures, timeout=PATIENCE)
        pool.shutdown(wait=False, cancel_futures=True)
        assert not pending, f"{len(pending)} of {n} requests did not finish in {PATIENCE} s"
        assert all(f.result().usage.generated_tokens == 1 for f in futures)
        assert s.metric("pad_requests_total", status="ok") == n
        # The pipe holds 4 KiB of lines, the queue 16; what is beyond them is dropped and counted.
        assert s.metric("pad_log_lines_dropped_total") > 0
    finally:
        drain = threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(read_end, 65536), b"")])
        drain.start()  # lets the server write its last lines and exit
        code = s.stop()
        drain.join(timeout=30)
        os.close(read_end)
    assert code == 0


def test_deadline_frees_slots(pb, server):
    with pytest.raises(grpc.RpcError) as error:
        generate(pb, server.channel, spec("pad", max_new_tokens=400, principles=["humor"]), timeout=1.0)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    server.assert_idle_soon(server.generated_tokens(), most_tokens=64)  # of the 400 asked for
    text, final, _ = generate(pb, server.channel, spec("vanilla", max_new_tokens=4), timeout=60)
    assert final.usage.generated_tokens == 4 and text


# --- 5. Invalid requests name the field ---------------------------------------------------------------------------

def _both_prompt_and_messages(pb):
    return to_proto(pb, spec("vanilla", prompt="Hello"))


def _unknown_composition(pb):
    request = to_proto(pb, spec("pad", principles=["humor"]))
    request.preference.composition = 7  # proto3 enums are open: a newer client's value arrives as a number
    return request


INVALID = [
    ("empty", lambda pb: pb[0].GenerateAlignedRequest(), "prompt"),
    ("prompt_and_messages", _both_prompt_and_messages, "messages"),
    ("unknown_role", lambda pb: to_proto(pb, spec("vanilla", messages=[{"role": "robot", "content": "hi"}, *QUESTION])),
     "messages[0].role"),
    ("only_message_has_unknown_role",
     lambda pb: to_proto(pb, spec("vanilla", messages=[{"role": "robot", "content": "hi"}])), "messages[0].role"),
    ("pad_without_principles", lambda pb: to_proto(pb, spec("pad")), "preference.principles"),
    ("empty_principle", lambda pb: to_proto(pb, spec("pad", principles=[""])), "preference.principles[0].text"),
    ("weight_on_one_principle",
     lambda pb: to_proto(pb, spec("pad", principles=["humor", "harmless"], weights=[0.5], composition="weighted")),
     "preference.principles.weight"),
    ("weights_with_prompt_composition",
     lambda pb: to_proto(pb, spec("pad", principles=["humor", "harmless"], weights=[0.5, 0.5], composition="prompt")),
     "preference.principles[0].weight"),
    ("top_k_zero", lambda pb: to_proto(pb, spec("vanilla", top_k=0)), "decoding.top_k"),
    ("top_k_huge", lambda pb: to_proto(pb, spec("vanilla", top_k=100000)), "decoding.top_k"),
    ("negative_temperature", lambda pb: to_proto(pb, spec("vanilla", temperature=-0.5)), "decoding.temperature"),
    ("penalty_out_of_range", lambda pb: to_proto(pb, spec("vanilla", frequency_penalty=-3.0)),
     "decoding.frequency_penalty"),
    ("beta_nan", lambda pb: to_proto(pb, spec("pad", principles=["humor"], beta=float("nan"))), "decoding.beta"),
    ("max_new_tokens_zero", lambda pb: to_proto(pb, spec("vanilla", max_new_tokens=0)), "decoding.max_new_tokens"),
    ("unknown_reward_model", lambda pb: to_proto(pb, spec("pad", principles=["humor"], reward_model="nope")),
     "preference.reward_model"),
    ("prompt_too_long", lambda pb: to_proto(pb, {"prompt": "word " * 400, "mode": "vanilla"}), "prompt"),
    # The guideline's tokens count against the prompt; a short prompt with a huge principle blames the principle.
    ("principle_too_long", lambda pb: to_proto(pb, spec("pad", principles=["be kind " * 200])), "preference.principles"),
    ("empty_stop", lambda pb: to_proto(pb, spec("vanilla", stop=[""])), "decoding.stop[0]"),
    ("unknown_composition", _unknown_composition, "preference.composition"),
]


@pytest.mark.parametrize("make,field", [(m, f) for _, m, f in INVALID], ids=[n for n, _, _ in INVALID])
def test_invalid_request(pb, server, make, field):
    request = make(pb)
    with pytest.raises(grpc.RpcError) as error:
        collect(stub_of(pb, server.channel).GenerateAligned(request, timeout=30))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    details = error.value.details()
    assert details.startswith(field + ": "), f"the field path should lead: {details}"
    # The field as data too: google.rpc.BadRequest in the status details, read by grpcio-status.
    assert bad_request_of(error.value) == [(field, details[len(field) + 2:])]


def bad_request_of(error):
    """[(field, description)] of the google.rpc.BadRequest in a call's rich status; None without details."""
    status = rpc_status.from_call(error)
    if status is None:
        return None
    assert status.code == error.code().value[0] and status.message == error.details()
    violations = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations += [(v.field, v.description) for v in bad_request.field_violations]
    return violations


def retry_delay_of(error):
    """The google.rpc.RetryInfo delay in seconds of a call's rich status; None without one."""
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else []:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            return retry.retry_delay.ToTimedelta().total_seconds()
    return None


def _corrupted(pb, request_spec, text, bad):
    """The request's wire bytes with `text` replaced by the same-length bytes `bad`, which are not UTF-8."""
    wire = to_proto(pb, request_spec).SerializeToString()
    assert wire.count(text.encode()) == 1 and len(bad) == len(text.encode())
    return wire.replace(text.encode(), bad)


# Bytes protobuf refuses: gRPC's own parse would answer UNIMPLEMENTED with no message.
UNPARSEABLE = [
    ("prompt_not_utf8", lambda pb: _corrupted(pb, {"prompt": "Hello there", "mode": "vanilla"}, "Hello", b"\xffello"),
     "prompt: is not valid UTF-8"),
    ("content_not_utf8", lambda pb: _corrupted(pb, spec("vanilla"), "rainy", b"rain\xc0"),
     "messages[0].content: is not valid UTF-8"),
    ("principle_not_utf8", lambda pb: _corrupted(pb, spec("pad", principles=["humor"]), "humor", b"hu\xed\xa0\x80"),
     "preference.principles[0].text: is not valid UTF-8"),
    ("stop_not_utf8", lambda pb: _corrupted(pb, spec("vanilla", stop=["END", "xyz"]), "xyz", b"x\xf8z"),
     "decoding.stop[1]: is not valid UTF-8"),
    ("garbage", lambda pb: b"\xff\xff\xff\xff", "request: not a valid pad.v1.GenerateAlignedRequest"),
]


@pytest.mark.parametrize("make,message", [(m, e) for _, m, e in UNPARSEABLE], ids=[n for n, _, _ in UNPARSEABLE])
def test_unparseable_request_names_the_field(pb, server, make, message):
    raw = server.channel.unary_stream("/pad.v1.PadService/GenerateAligned")  # bytes in, bytes out
    with pytest.raises(grpc.RpcError) as error:
        list(raw(make(pb), timeout=30))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    assert error.value.details().startswith(message), error.value.details()
    field = message.split(": ")[0]
    expected = None if field == "request" else [(field, "is not valid UTF-8")]  # "request": the whole, no field
    assert bad_request_of(error.value) == expected


def test_limit_flags_must_fit_the_context(model_dir):
    with pytest.raises(RuntimeError, match=r"--max_prompt_tokens=5000: must be in \[1, --max_seq_len\)"):
        Server(model_dir, "--max_seq_len=4096", "--max_prompt_tokens=5000")


def test_an_unset_max_new_tokens_defaults_within_the_limit(pb, model_dir):
    """The default (128) never exceeds --max_new_tokens: a request that leaves it unset is served."""
    s = Server(model_dir, "--max_new_tokens=8", "--max_seq_len=512")
    try:
        request = to_proto(pb, spec("vanilla"))
        request.decoding.ClearField("max_new_tokens")
        request.decoding.ignore_eos = True
        _, final, _ = collect(stub_of(pb, s.channel).GenerateAligned(request, timeout=60))
        assert final.usage.generated_tokens == 8 and final.finish_reason == pb[0].FINISH_REASON_LENGTH
    finally:
        s.stop_and_check()


def test_invalid_requests_are_counted(server):
    assert server.metric("pad_requests_total", status="invalid_argument") >= len(INVALID) + len(UNPARSEABLE), \
        server.metrics_text()


# --- 6. Health, reflection and ListModels ------------------------------------------------------------------------

def test_health_serving(server):
    assert server.health() == health_pb2.HealthCheckResponse.SERVING
    status, body = server.http("/healthz")
    assert status == 200
    status, body = server.http("/readyz")
    assert status == 200, body
    assert server.metric("pad_ready") == 1


def test_reflection_lists_services(server):
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    answers = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                             timeout=10))
    names = {s.name for s in answers[0].list_services_response.service}
    assert "pad.v1.PadService" in names
    assert "grpc.health.v1.Health" in names


def test_list_models(pb, server, model_dir):
    answer = stub_of(pb, server.channel).ListModels(pb[0].ListModelsRequest(), timeout=10)
    assert answer.policy.rstrip("/") == str(model_dir).rstrip("/")
    assert [m.name for m in answer.reward_models] == ["default"]
    assert answer.reward_models[0].shares_policy_backbone
    assert answer.limits.max_prompt_tokens == 256
    assert answer.limits.max_request_bytes == 4 << 20  # gRPC's default, now set explicitly


# --- 7. Metrics: promtool accepts them, Prometheus scrapes them ---------------------------------------------------

def test_metrics_pass_promtool(pb, server):
    generate(pb, server.channel, spec("vanilla", max_new_tokens=4), timeout=60)
    text = server.metrics_text()
    for name in ("pad_requests_total", "pad_requests_running", "pad_requests_waiting", "pad_kv_cache_slots_used",
                 "pad_kv_cache_tokens", "pad_kv_cache_bytes", "pad_kv_cache_usage_ratio", "pad_ready",
                 "pad_kv_cache_blocks", "pad_kv_cache_blocks_used", "pad_kv_cache_blocks_cached",
                 "pad_preemptions_total", "pad_prefix_cache_hit_tokens_total", "pad_prefill_tokens_total",
                 "pad_generated_tokens_total",
                 "pad_time_to_first_token_seconds"):
        assert f"# TYPE {name} " in text, name
    assert shutil.which("promtool"), "promtool is missing (apt-get install prometheus)"
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert server.metric("pad_generated_tokens_total", mode="vanilla") >= 4
    assert server.metric("pad_time_to_first_token_seconds_count") >= 1
    # The default PRM shares the policy's backbone, hence its cache: the capacity is --kv_slots, not twice it.
    assert server.metric("pad_kv_cache_slots") == 40
    assert wait_for(lambda: server.metric("pad_batch_size") == 0), "an idle server reports batch size 0"


def test_prometheus_scrapes_metrics(pb, server, tmp_path):
    generate(pb, server.channel, spec("vanilla", max_new_tokens=4), timeout=60)
    assert shutil.which("prometheus"), "prometheus is missing (apt-get install prometheus)"
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: pad\n"
                      f"    static_configs:\n      - targets: ['127.0.0.1:{server.http_port}']\n")
    port = free_port()
    log = open(tmp_path / "prometheus.log", "w")
    prometheus = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                   f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        def query(expression):
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    answer = json.loads(r.read())
            except OSError:
                return []
            return answer["data"]["result"] if answer.get("status") == "success" else []

        result = wait_for(lambda: query("pad_requests_total"), interval=0.5)
        assert result, f"up={query('up')}\n" + (tmp_path / "prometheus.log").read_text()[-3000:]
        assert {r["metric"]["job"] for r in result} == {"pad"}
        assert any(r["metric"].get("status") == "ok" and float(r["value"][1]) >= 1 for r in result), result
        up = query("up")
        assert up and up[0]["value"][1] == "1", up
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        log.close()


# --- 4. A full queue answers RESOURCE_EXHAUSTED -------------------------------------------------------------------

def test_queue_overflow(pb, model_dir):
    s = Server(model_dir, "--kv_slots=2", "--max_waiting=1", "--shutdown_grace_s=5", "--max_request_bytes=65536")
    try:
        stub = stub_of(pb, s.channel)
        calls, outcomes = [], [None] * 5
        began = time.monotonic()

        def run(i):
            try:
                first = next(calls[i])
                outcomes[i] = ("message", time.monotonic() - began, first)
                for _ in calls[i]:
                    pass
            except grpc.RpcError as e:
                if outcomes[i] is None:
                    outcomes[i] = (e.code(), time.monotonic() - began, e.details(), retry_delay_of(e))

        for _ in range(5):
            calls.append(stub.GenerateAligned(to_proto(pb, spec("vanilla", max_new_tokens=400)), timeout=120))
        threads = [threading.Thread(target=run, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        # Refused at once, not after waiting for a slot: nothing frees one until the calls are cancelled below.
        assert wait_for(lambda: any(o and o[0] == grpc.StatusCode.RESOURCE_EXHAUSTED for o in outcomes)), outcomes
        assert wait_for(lambda: any(o and o[0] == "message" for o in outcomes)), outcomes
        tokens = s.generated_tokens()
        for call in calls:
            call.cancel()
        for t in threads:
            t.join(timeout=30)
        exhausted = [o for o in outcomes if o and o[0] == grpc.StatusCode.RESOURCE_EXHAUSTED]
        # At most two run (one slot each) and one waits, so at least two are refused, all by the queue: none
        # is admitted past the free slots and then failed.
        assert 2 <= len(exhausted) <= 4, outcomes
        assert all(o[2].startswith("the queue is full") for o in exhausted), outcomes
        assert all(o[3] == 1.0 for o in exhausted), outcomes  # google.rpc.RetryInfo: back off for a second
        assert s.metric("pad_requests_total", status="resource_exhausted") == len(exhausted)
        s.assert_idle_soon(tokens, most_tokens=3 * 64)  # of the 3 * 400 asked for
        assert s.metric("pad_requests_waiting") == 0
        text, final, _ = generate(pb, s.channel, spec("vanilla", max_new_tokens=4), timeout=60)
        assert final.finish_reason == pb[0].FINISH_REASON_LENGTH and text
        # A request that could never fit the cache is refused at once, naming what it needs and why.
        weighted = spec("pad", principles=["humor", "harmless", "concise"], composition="weighted")
        with pytest.raises(grpc.RpcError) as error:
            collect(stub.GenerateAligned(to_proto(pb, weighted), timeout=30))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.value.details().startswith("preference.principles: WEIGHTED composition of 3 principles "
                                                "needs 4 KV cache slots"), error.value.details()
        # Too large a request is RESOURCE_EXHAUSTED too, told apart from a full queue by its message.
        limit = stub.ListModels(pb[0].ListModelsRequest(), timeout=30).limits.max_request_bytes
        assert limit == 65536
        with pytest.raises(grpc.RpcError) as error:
            collect(stub.GenerateAligned(to_proto(pb, {"prompt": "word " * 20000, "mode": "vanilla"}), timeout=30))
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in error.value.details() and "queue" not in error.value.details()
        assert retry_delay_of(error.value) is None  # the same request would be refused again
    finally:
        s.stop_and_check()


# --- 8. Bearer token and TLS --------------------------------------------------------------------------------------

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def auth_server(model_dir, tmp_path_factory):
    token_file = tmp_path_factory.mktemp("auth") / "token"
    token_file.write_text(TOKEN + "\n")
    s = Server(model_dir, f"--auth_token_file={token_file}")
    yield s
    s.stop_and_check()


@pytest.mark.parametrize("metadata", [None, (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)],
                         ids=["none", "wrong", "no_bearer_prefix"])
def test_auth_refuses_without_token(pb, auth_server, metadata):
    stub = stub_of(pb, auth_server.channel)
    with pytest.raises(grpc.RpcError) as error:
        stub.ListModels(pb[0].ListModelsRequest(), metadata=metadata, timeout=10)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as error:
        collect(stub.GenerateAligned(to_proto(pb, spec("vanilla", max_new_tokens=4)), metadata=metadata, timeout=30))
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_health_and_reflection_need_no_token(auth_server):
    """Kubelet probes call health without a token; reflection tells only the public schema. (libgrpc++'s
    reflection plugin registers itself when linked, so it cannot be switched off by a flag.)"""
    assert auth_server.health() == health_pb2.HealthCheckResponse.SERVING
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    answers = list(reflection_pb2_grpc.ServerReflectionStub(auth_server.channel).ServerReflectionInfo(
        iter([request]), timeout=10))
    assert "pad.v1.PadService" in {s.name for s in answers[0].list_services_response.service}


def test_auth_accepts_token(pb, auth_server):
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    stub = stub_of(pb, auth_server.channel)
    assert stub.ListModels(pb[0].ListModelsRequest(), metadata=metadata, timeout=10).policy
    text, final, _ = generate(pb, auth_server.channel, spec("vanilla", max_new_tokens=4), metadata=metadata,
                              timeout=60)
    assert final.usage.generated_tokens == 4 and text
    assert auth_server.health() == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    assert shutil.which("openssl"), "openssl is missing"
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "1",
                    "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    return directory / "cert.pem", directory / "key.pem"


def test_tls(pb, model_dir, certificate):
    cert, key = certificate
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    s = Server(model_dir, f"--tls_cert={cert}", f"--tls_key={key}", credentials=credentials)
    try:
        text, final, _ = generate(pb, s.channel, spec("vanilla", max_new_tokens=4), timeout=60)
        assert final.usage.generated_tokens == 4 and text
        with grpc.insecure_channel(s.address) as plain:
            with pytest.raises(grpc.RpcError) as error:
                stub_of(pb, plain).ListModels(pb[0].ListModelsRequest(), timeout=5)
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        s.stop_and_check()


# --- 9. SIGTERM drains in-flight streams and refuses new ones ----------------------------------------------------

def test_sigterm_drains_streams(pb, model_dir):
    s = Server(model_dir, "--shutdown_grace_s=60")
    stub = stub_of(pb, s.channel)
    calls = [stub.GenerateAligned(to_proto(pb, spec(mode, max_new_tokens=40, principles=["humor"])), timeout=120)
             for mode in ("pad", "vanilla")]
    firsts = [next(c) for c in calls]
    results = [None, None]

    def finish(i):
        try:
            text, final, _ = collect(calls[i])
            results[i] = (firsts[i].text + text, final)
        except grpc.RpcError as e:
            results[i] = e

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    s.terminate()

    def health():
        try:
            return s.health(timeout=10)
        except grpc.RpcError as e:
            return e.code()
    draining = (health_pb2.HealthCheckResponse.NOT_SERVING, grpc.StatusCode.UNAVAILABLE)
    assert wait_for(lambda: health() in draining), health()
    # A load balancer stops routing here while the streams finish.
    assert wait_for(lambda: s.http("/readyz")[0] == 503)
    with pytest.raises(grpc.RpcError) as error:
        generate(pb, s.new_channel(), spec("vanilla", max_new_tokens=4), timeout=10)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE, error.value.details()
    for t in threads:
        t.join(timeout=PATIENCE)
    for i, r in enumerate(results):
        assert not isinstance(r, grpc.RpcError), f"stream {i}: {r.code()} {r.details()}"
        text, final = r
        assert final is not None and final.finish_reason == pb[0].FINISH_REASON_LENGTH, final
        assert final.usage.generated_tokens == 40 and text
    s.stop_and_check()

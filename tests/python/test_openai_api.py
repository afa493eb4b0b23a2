"""Black-box tests of the OpenAI-compatible HTTP API (/v1/chat/completions, /v1/models): the real pad_server,
driven by the official `openai` Python package, and answers checked against the same requests over gRPC."""
import http.client
import json
import socket
import threading
import time

import openai
import pytest

from conftest import ROOT
from server_fixture import PATIENCE, Server, collect, stub_of, to_proto, wait_for

DEMO_PRM = ROOT / "prm" / "SmolLM2-135M-PAD-demo"
MODEL = "SmolLM2-135M-Instruct"
QUESTION = [{"role": "user", "content": "What is a good way to spend a rainy afternoon?"}]
TOKEN = "open-sesame"


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """The demo PRM (so PAD changes tokens) beside the identity one, and a bearer token."""
    token_file = tmp_path_factory.mktemp("openai") / "token"
    token_file.write_text(TOKEN)
    s = Server(model_dir, "--kv_slots=12", f"--reward_models=demo=:{DEMO_PRM},identity",
               f"--auth_token_file={token_file}", "--max_request_bytes=65536",
               metadata=(("authorization", f"Bearer {TOKEN}"),))
    yield s
    s.stop_and_check()


def client_of(server, api_key=TOKEN):
    # No retries: a 429 or 503 must reach the test, not be retried away.
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.http_port}/v1", api_key=api_key, max_retries=0,
                         timeout=PATIENCE)


def ask(server, stream, pad=None, **fields):
    """(text, finish_reason, usage, chunks) of one chat completion through the openai client."""
    request = {"model": MODEL, "messages": QUESTION, "max_tokens": 16, "temperature": 0, **fields}
    if pad is not None:
        request["extra_body"] = {"pad": pad}
    client = client_of(server)
    if not stream:
        completion = client.chat.completions.create(**request)
        choice = completion.choices[0]
        assert choice.message.role == "assistant"
        return choice.message.content, choice.finish_reason, completion.usage, [completion]
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **request))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1, chunks
    assert chunks[0].choices[0].delta.role == "assistant"
    assert not chunks[-1].choices and chunks[-1].usage is not None, chunks[-1]
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert all(c.model == MODEL and c.object == "chat.completion.chunk" for c in chunks)
    return text, finish[0], chunks[-1].usage, chunks


def grpc_answer(pb, server, **spec):
    text, final, _ = collect(stub_of(pb, server.channel).GenerateAligned(
        to_proto(pb, {"messages": QUESTION, "max_new_tokens": 16, **spec}), timeout=120,
        metadata=server.metadata))
    return text, final


# --- Answers equal gRPC's for the same request ----------------------------------------------------------------

SAME_REQUESTS = {
    "vanilla": ({}, {"mode": "vanilla"}),
    "pad": ({"principles": ["humorous"]}, {"mode": "pad", "principles": ["humorous"]}),
    "pad_identity_beta": ({"principles": ["concise"], "reward_model": "identity", "beta": 2.0, "top_k": 5},
                          {"mode": "pad", "principles": ["concise"], "reward_model": "identity", "beta": 2.0,
                           "top_k": 5}),
    "weighted": ({"principles": ["humorous", "harmless"], "weights": [0.7, 0.3], "composition": "weighted"},
                 {"mode": "pad", "principles": ["humorous", "harmless"], "weights": [0.7, 0.3],
                  "composition": "weighted"}),
    "preference_prompt": ({"principles": ["humorous"], "mode": "preference_prompt"},
                          {"mode": "preference_prompt", "principles": ["humorous"]}),
    "genarm": ({"principles": ["humorous"], "mode": "genarm", "beta": 0.5},
               {"mode": "genarm", "principles": ["humorous"], "beta": 0.5}),
}


@pytest.mark.parametrize("name", SAME_REQUESTS)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_answer_equals_grpc(pb, server, name, stream):
    pad, spec = SAME_REQUESTS[name]
    text, finish, usage, _ = ask(server, stream, pad=pad or None)
    expected, final = grpc_answer(pb, server, **spec)
    assert text == expected and text
    assert finish == {pb[0].FINISH_REASON_STOP: "stop", pb[0].FINISH_REASON_LENGTH: "length"}[final.finish_reason]
    assert (usage.prompt_tokens, usage.completion_tokens) == (final.usage.prompt_tokens,
                                                              final.usage.generated_tokens)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_sampling_follows_the_seed(pb, server):
    """A seed makes sampling repeatable and equal to gRPC's; without one each answer draws its own."""
    fields = dict(temperature=0.9, max_tokens=24)
    seeded = [ask(server, True, seed=7, **fields)[0] for _ in range(2)]
    assert seeded[0] == seeded[1]
    assert seeded[0] == grpc_answer(pb, server, mode="vanilla", temperature=0.9, seed=7, max_new_tokens=24)[0]
    unseeded = {ask(server, False, **fields)[0] for _ in range(4)}
    assert len(unseeded) > 1, unseeded


def test_penalties_are_grpcs(pb, server):
    """OpenAI's presence and frequency penalties reach the engine: the answer is gRPC's with the same values,
    and not the unpenalized one."""
    penalties = dict(presence_penalty=0.5, frequency_penalty=1.0)
    text = ask(server, False, max_tokens=48, **penalties)[0]
    assert text == grpc_answer(pb, server, mode="vanilla", max_new_tokens=48, **penalties)[0]
    assert text != grpc_answer(pb, server, mode="vanilla", max_new_tokens=48)[0]


def test_stop_strings(pb, server):
    text, finish, _, _ = ask(server, True, stop=[" the", "."], max_tokens=64)
    expected, final = grpc_answer(pb, server, mode="vanilla", stop=[" the", "."], max_new_tokens=64)
    assert text == expected and finish == "stop" and final.finish_reason == pb[0].FINISH_REASON_STOP
    assert " the" not in text and "." not in text


def test_diagnostics_show_pad_at_work(server):
    """pad.diagnostics: each token with its reward and the candidates it was chosen from; the demo PRM changes
    some of the policy's top choices, and the chosen token is always among the candidates."""
    pad = {"principles": ["humorous"], "diagnostics": True, "ignore_eos": True}
    _, _, _, chunks = ask(server, True, pad=pad, max_tokens=32)
    tokens = [t for c in chunks for t in (c.model_extra or {}).get("pad", {}).get("tokens", [])]
    assert len(tokens) == 32
    for t in tokens:
        assert t["id"] in t["candidates"] and len(t["candidates"]) == 10
        assert len(t["rewards"]) == len(t["scores"]) == len(t["policy_logits"]) == 10
        best = max(range(10), key=lambda i: t["scores"][i])
        assert t["candidates"][best] == t["id"]
        assert t["changed_top_choice"] == (t["id"] != t["candidates"][0])
        assert len(t["candidate_texts"]) == 10
        if t["text"]:  # a whole character: the text streamed is the chosen candidate's
            assert t["candidate_texts"][t["candidates"].index(t["id"])] == t["text"]
    assert any(t["changed_top_choice"] for t in tokens)
    whole = client_of(server).chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=32, temperature=0,
        extra_body={"pad": pad})
    assert [t["id"] for t in whole.model_extra["pad"]["tokens"]] == [t["id"] for t in tokens]
    assert "".join(t["text"] for t in tokens) == whole.choices[0].message.content


def test_models(server):
    models = client_of(server).models.list().data
    assert [m.id for m in models] == [MODEL]
    pad = models[0].model_extra["pad"]
    assert pad["reward_models"] == [{"name": "demo", "has_adapter": True, "shares_policy_backbone": True},
                                    {"name": "identity", "has_adapter": False, "shares_policy_backbone": True}]
    assert pad["limits"]["max_top_k"] >= 10
    # Any client may list models: nothing of the server's file system is shown.
    status, text, _ = raw_request(server, "GET", "/v1/models", None)
    assert status == 200 and str(ROOT) not in text and "/models/" not in text and "prm" not in text.lower()
    # The SDKs' models.retrieve, and an unknown id in OpenAI's error format.
    assert client_of(server).models.retrieve(MODEL).model_dump() == models[0].model_dump()
    with pytest.raises(openai.NotFoundError) as error:
        client_of(server).models.retrieve("gpt-4o")
    assert error.value.body["message"].startswith('model: "gpt-4o" is not served here')
    assert error.value.body["code"] == "model_not_found"


def test_message_content_parts_and_developer_role(pb, server):
    """Content as a list of text parts, and the "developer" role (OpenAI's new name for system), render as a
    plain string and a system message do."""
    parts = [{"role": "developer", "content": [{"type": "text", "text": "Answer "}, {"type": "text", "text": "briefly."}]},
             {"role": "user", "content": [{"type": "text", "text": QUESTION[0]["content"]}]}]
    text = client_of(server).chat.completions.create(model=MODEL, messages=parts, max_tokens=16,
                                                     temperature=0).choices[0].message.content
    plain = [{"role": "system", "content": "Answer briefly."}, QUESTION[0]]
    expected, _, _ = collect(stub_of(pb, server.channel).GenerateAligned(
        to_proto(pb, {"messages": plain, "mode": "vanilla", "max_new_tokens": 16}), timeout=120,
        metadata=server.metadata))
    assert text == expected


# --- Errors: OpenAI's format, the field named, the right status ------------------------------------------------

ERRORS = {
    "n": ({"n": 2}, 400, "n"),
    "top_p": ({"top_p": 0.5}, 400, "top_p"),
    "logprobs": ({"logprobs": True}, 400, "logprobs"),
    "tools": ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, 400, "tools"),
    "presence_penalty": ({"presence_penalty": 2.5}, 400, "presence_penalty"),
    "unknown_field": ({"extra_body": {"frobnicate": 1}}, 400, "frobnicate"),
    "temperature": ({"temperature": 3}, 400, "temperature"),
    "max_tokens": ({"max_tokens": 0}, 400, "max_tokens"),
    "max_tokens_too_many": ({"max_tokens": 100000}, 400, "max_tokens"),
    "max_completion_tokens": ({"max_tokens": None, "max_completion_tokens": 100000}, 400, "max_completion_tokens"),
    "both_limits": ({"max_completion_tokens": 8}, 400, "max_tokens"),
    "stream_options": ({"stream_options": {"include_usage": True}}, 400, "stream_options"),
    "stop_type": ({"stop": 5}, 400, "stop"),
    "no_messages": ({"messages": []}, 400, "messages"),
    "role": ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "messages[0].role"),
    "image_part": ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
                   400, "messages[0].content[0].type"),
    "tool_calls": ({"messages": [{"role": "assistant", "content": "x", "tool_calls": []}]}, 400,
                   "messages[0].tool_calls"),
    "pad_top_k": ({"extra_body": {"pad": {"principles": ["humor"], "top_k": 0}}}, 400, "pad.top_k"),
    "pad_top_k_too_large": ({"extra_body": {"pad": {"principles": ["humor"], "top_k": 5000}}}, 400, "pad.top_k"),
    "pad_beta": ({"extra_body": {"pad": {"principles": ["humor"], "beta": "high"}}}, 400, "pad.beta"),
    "pad_without_principles": ({"extra_body": {"pad": {"mode": "pad"}}}, 400, "pad.principles"),
    "pad_mode": ({"extra_body": {"pad": {"mode": "best"}}}, 400, "pad.mode"),
    "pad_weights": ({"extra_body": {"pad": {"principles": ["a", "b"], "weights": [1]}}}, 400, "pad.weights"),
    "pad_reward_model": ({"extra_body": {"pad": {"principles": ["a"], "reward_model": "nope"}}}, 400,
                         "pad.reward_model"),
    "pad_unknown": ({"extra_body": {"pad": {"principle": "humor"}}}, 400, "pad.principle"),
    "model": ({"model": "gpt-4o"}, 404, "model"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_errors_name_the_field(server, case):
    fields, status, param = ERRORS[case]
    request = {"model": MODEL, "messages": QUESTION, "max_tokens": 8, **fields}
    if request["max_tokens"] is None:
        del request["max_tokens"]
    before = server.metric("pad_requests_total", protocol="http")
    with pytest.raises(openai.APIStatusError) as error:
        client_of(server).chat.completions.create(**request)
    assert error.value.status_code == status, error.value.body
    assert error.value.body["param"] == param, error.value.body
    assert error.value.body["message"].startswith(param + ": "), error.value.body
    assert error.value.body["type"] == "invalid_request_error"
    if status == 404:
        assert error.value.body["code"] == "model_not_found"
    assert server.metric("pad_requests_total", protocol="http") == before + 1


def test_bad_json_and_large_bodies(server):
    status, body, _ = raw_request(server, "POST", "/v1/chat/completions", b"{not json")
    error = json.loads(body)["error"]
    assert status == 400 and error["message"].startswith("the request body is not valid JSON: "), error
    assert error["param"] is None and error["type"] == "invalid_request_error"
    status, _, _ = raw_request(server, "POST", "/v1/chat/completions", b" " * 70000)
    assert status == 413
    status, body, _ = raw_request(server, "GET", "/v1/completions", None)
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"


def test_bearer_token(server):
    with pytest.raises(openai.AuthenticationError) as error:
        client_of(server, api_key="wrong").chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4)
    assert error.value.status_code == 401 and error.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client_of(server, api_key="wrong").models.list()
    body = json.dumps({"model": MODEL, "messages": QUESTION, "max_tokens": 4})
    assert raw_request(server, "POST", "/v1/chat/completions", body, {"Authorization": ""})[0] == 401
    assert raw_request(server, "POST", "/v1/chat/completions", body, {"Authorization": TOKEN})[0] == 401
    # The probes and metrics stay open to the kubelet and Prometheus.
    assert server.http("/healthz")[0] == 200 and server.http("/metrics")[0] == 200


def raw_request(server, method, path, body, headers=None):
    """(status, body, headers) over a plain HTTP connection."""
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
    connection.request(method, path, body=body, headers={"Authorization": f"Bearer {TOKEN}",
                                                         "Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data.decode(), dict(response.getheaders())


def test_sse_wire_format(server):
    body = json.dumps({"model": MODEL, "messages": QUESTION, "max_tokens": 4, "stream": True})
    status, text, headers = raw_request(server, "POST", "/v1/chat/completions", body)
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    events = text.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    for event in events[:-2]:
        assert event.startswith("data: {") and "\n" not in event
        assert "usage" not in json.loads(event[len("data: "):])  # only with stream_options.include_usage


# --- Disconnects, overload, metrics ----------------------------------------------------------------------------

def test_disconnect_mid_stream_frees_the_slot(server):
    cancelled = server.metric("pad_requests_total", protocol="http", status="cancelled")
    stream = client_of(server).chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=400,
                                                       stream=True, extra_body={"pad": {"principles": ["humor"]}})
    for _ in range(3):
        next(stream)
    assert server.metric("pad_requests_running") == 1 and server.metric("pad_kv_cache_slots_used") == 2
    tokens = server.generated_tokens()
    stream.close()
    server.assert_idle_soon(tokens, most_tokens=64)  # of the 400 asked for
    assert wait_for(lambda: server.metric("pad_requests_total", protocol="http", status="cancelled")
                    == cancelled + 1)


def test_disconnect_while_waiting_for_a_whole_answer(server):
    """A client that gives up on a non-streamed answer cancels it too: the worker watches the connection."""
    body = json.dumps({"model": MODEL, "messages": QUESTION, "max_tokens": 400}).encode()
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        assert wait_for(lambda: server.metric("pad_requests_running") == 1)
        tokens = server.generated_tokens()
    server.assert_idle_soon(tokens, most_tokens=64)  # of the 400 asked for


def test_queue_full_is_429_and_draining_is_503(model_dir):
    s = Server(model_dir, "--kv_slots=1", "--max_waiting=1", "--shutdown_grace_s=3")
    try:
        client = client_of(s, api_key="unused")
        # Sampled answers (OpenAI's default temperature 1) may end early at end-of-sequence; these must not.
        endless = {"pad": {"ignore_eos": True}}
        long = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=400, stream=True,
                                              extra_body=endless)
        next(long)
        waiting = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=400, stream=True,
                                                 extra_body=endless)
        assert wait_for(lambda: s.metric("pad_requests_waiting") == 1)
        with pytest.raises(openai.RateLimitError) as error:
            client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4)
        assert error.value.status_code == 429 and error.value.body["message"].startswith("the queue is full")
        assert error.value.response.headers["retry-after"] == "1"
        assert s.metric("pad_requests_total", protocol="http", status="resource_exhausted") == 1
        # SIGTERM: the running stream finishes (here, cut by the grace period), new requests get 503.
        s.terminate()
        assert wait_for(lambda: s.http("/readyz")[0] == 503)
        with pytest.raises(openai.InternalServerError) as error:
            client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4)
        assert error.value.status_code == 503 and "shutting down" in error.value.body["message"]
        assert error.value.response.headers["retry-after"] == "1"
        for stream in (long, waiting):
            with pytest.raises(openai.APIError) as error:
                for _ in stream:
                    pass
            assert "shutting down" in str(error.value)
    finally:
        code = s.stop()
    assert code == 0


def test_both_front_doors_are_counted(pb, server):
    before = {p: server.metric("pad_requests_total", protocol=p, status="ok") for p in ("grpc", "http")}
    ask(server, True, max_tokens=2)
    grpc_answer(pb, server, mode="vanilla", max_new_tokens=2)
    assert wait_for(lambda: {p: server.metric("pad_requests_total", protocol=p, status="ok") for p in ("grpc", "http")}
                    == {p: before[p] + 1 for p in before})


def test_concurrent_streams_equal_alone(server):
    """Eight streams at once, PAD and vanilla mixed, each equal to its answer alone."""
    pads = [None, {"principles": ["humorous"]}, {"principles": ["concise"]}, {"principles": ["harmless"]}] * 2
    alone = [ask(server, False, pad=p)[0] for p in pads[:4]]
    results = [None] * len(pads)

    def run(i):
        results[i] = ask(server, True, pad=pads[i])[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(pads))]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=PATIENCE)
    assert results == alone * 2, time.monotonic() - began

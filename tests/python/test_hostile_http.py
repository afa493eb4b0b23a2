"""Hostile clients against the OpenAI-compatible HTTP API of the real pad_server, started as
./scripts/serve.sh starts it (no token): each input gets a clear 4xx that quotes at most a short prefix of
what the client sent, and the server stays healthy and answers a normal request after each."""
import http.client
import json
import socket
import threading
import urllib.request

import pytest

from server_fixture import PATIENCE, Server, free_port, wait_for

MODEL = "SmolLM2-135M-Instruct"
QUESTION = [{"role": "user", "content": "Name a color."}]
# An error message quotes at most 64 bytes of a client's value; the rest of a message is ours.
MAX_MESSAGE = 400


@pytest.fixture(scope="module")
def server(model_dir):
    s = Server(model_dir, "--kv_slots=4")
    yield s
    s.stop_and_check()


def post(server, body, headers=None):
    """(status, parsed JSON or text) of POST /v1/chat/completions with a Content-Length."""
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=PATIENCE)
    connection.request("POST", "/v1/chat/completions", body=body,
                       headers={"Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    data = response.read().decode(errors="replace")
    connection.close()
    try:
        return response.status, json.loads(data)
    except json.JSONDecodeError:
        return response.status, data


def assert_healthy(server):
    # Patient: behind idle connections, a request waits for a worker until their read timeouts (5 s).
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/healthz", timeout=PATIENCE) as response:
        assert response.status == 200
    status, answer = post(server, json.dumps({"model": MODEL, "messages": QUESTION, "max_tokens": 2,
                                              "temperature": 0}))
    assert status == 200 and answer["usage"]["completion_tokens"] == 2, answer


def nested(depth, leaf='"text"'):
    return "[" * depth + leaf + "]" * depth


@pytest.mark.parametrize("depth", [65, 60_000, 200_000])
def test_deep_nesting_is_refused_while_parsing(server, depth):
    """The issue's 400 KB body, 200,000 arrays deep, used to overflow a worker's stack when its error message
    dumped the value; now any document deeper than 64 is refused as it is read."""
    body = ('{"model": "%s", "messages": [{"role": "user", "content": [{"type": %s}]}]}'
            % (MODEL, nested(depth)))
    status, answer = post(server, body)
    assert status == 400, answer
    assert answer["error"]["message"] == "the request body is not valid JSON: it nests deeper than 64"
    assert_healthy(server)


def test_nesting_within_the_bound_gets_a_short_message(server):
    """Under the bound, the unsupported part type is named by its type, not echoed."""
    body = ('{"model": "%s", "messages": [{"role": "user", "content": [{"type": %s}]}]}'
            % (MODEL, nested(50)))
    status, answer = post(server, body)
    assert status == 400
    assert answer["error"]["message"] == "messages[0].content[0].type: an array is not supported; only text is"
    assert answer["error"]["param"] == "messages[0].content[0].type"


@pytest.mark.parametrize("field", ["model", "composition", "mode", "key", "pad_key", "type"])
def test_errors_quote_a_short_prefix_of_long_values(server, field):
    long = "\u00e9" + "x" * 200_000 + '"\n<script>'
    request = {"model": MODEL, "messages": QUESTION}
    if field == "model":
        request["model"] = long
    elif field in ("composition", "mode"):
        request["pad"] = {"principles": ["concise"], field: long}
    elif field == "key":
        request[long] = 1
    elif field == "pad_key":
        request["pad"] = {long: 1}
    else:
        request["messages"] = [{"role": "user", "content": [{"type": long}]}]
    status, answer = post(server, json.dumps(request))
    assert status in (400, 404), answer
    message = answer["error"]["message"]
    assert len(message) < MAX_MESSAGE and "x" * 65 not in message and "<script>" not in message, message
    assert f"({len(long.encode())} bytes)" in message, message  # says how long the value was
    assert_healthy(server)


def test_a_truncated_string_is_not_echoed(server):
    """nlohmann's parse error ends with the token it read last: a 1 MB unterminated string must not come back."""
    status, answer = post(server, '{"model": "' + "y" * 1_000_000)
    assert status == 400
    assert answer["error"]["message"].startswith("the request body is not valid JSON: ")
    assert len(answer["error"]["message"]) < MAX_MESSAGE and "yyyy" not in answer["error"]["message"]
    assert_healthy(server)


def test_chunked_bodies_are_refused_unread(server):
    """A chunked body used to bypass --max_request_bytes (32 MiB accepted); now it is refused, 411, from
    its headers, and the 32 MiB that follow are never buffered."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        head = s.recv(4096).decode()
    assert head.startswith("HTTP/1.1 411 "), head
    assert "Connection: close" in head
    assert_healthy(server)


def test_probes_answer_while_every_api_worker_is_held(model_dir):
    """Clients that trickle a request line hold an API worker each for as long as they trickle; the probe
    listener's own workers answer /healthz, /readyz and /metrics meanwhile, which a kubelet then sees."""
    probe_port = free_port()
    s = Server(model_dir, "--kv_slots=1", "--http_threads=2", f"--probe_listen=127.0.0.1:{probe_port}")
    stop = threading.Event()
    held = [socket.create_connection(("127.0.0.1", s.http_port), timeout=PATIENCE) for _ in range(2)]

    def trickle():
        while not stop.wait(0.5):
            for connection in held:
                connection.sendall(b"G")  # within every read timeout, never a whole line

    trickler = threading.Thread(target=trickle)
    trickler.start()
    api_answer = []

    def api_healthz():
        url = f"http://127.0.0.1:{s.http_port}/healthz"
        with urllib.request.urlopen(url, timeout=PATIENCE) as response:
            api_answer.append(response.status)

    api_probe = threading.Thread(target=api_healthz)
    try:
        api_probe.start()
        for path, expected in (("/healthz", "ok"), ("/readyz", "ready")):
            with urllib.request.urlopen(f"http://127.0.0.1:{probe_port}{path}", timeout=PATIENCE) as response:
                assert response.status == 200 and response.read().decode() == expected
        with urllib.request.urlopen(f"http://127.0.0.1:{probe_port}/metrics", timeout=PATIENCE) as response:
            assert "\npad_ready 1" in response.read().decode()
        assert not api_answer, "the API port answered while both its workers were held: the test proves nothing"
    finally:
        stop.set()
        trickler.join()
        for connection in held:
            connection.close()
        api_probe.join(timeout=PATIENCE)
        s.stop_and_check()
    assert api_answer == [200]  # once the trickling clients left


# --- A corpus of hostile bodies: each a clear 4xx naming what is wrong, and the server healthy after ----------

BASE = {"model": MODEL, "messages": QUESTION}


def body_with(**fields):
    return json.dumps({**BASE, **fields})


# (body, status, the error's param or None, a part of its message)
HOSTILE_BODIES = {
    "max_tokens_huge": (body_with(max_tokens=10**30), 400, "max_tokens", "must be an integer"),
    "max_tokens_past_int64": (body_with(max_tokens=2**64 + 1), 400, "max_tokens", ""),
    "max_tokens_negative": (body_with(max_tokens=-5), 400, "max_tokens", "is not in [1, "),
    "seed_past_uint64": (body_with(seed=2**70), 400, "seed", ""),
    "top_k_negative": (body_with(pad={"principles": ["concise"], "top_k": -1}), 400, "pad.top_k", ""),
    "temperature_infinite": ('{"model": "%s", "messages": %s, "temperature": 1e999}' % (MODEL, json.dumps(QUESTION)),
                             400, None, "not valid JSON"),
    # nlohmann's message quotes the number it could not hold: found by openai_request_fuzz at -max_len 1 MB.
    "number_of_5000_digits": ('{"model": "%s", "messages": %s, "temperature": %s}' % (
        MODEL, json.dumps(QUESTION), "9" * 5000), 400, None, "not valid JSON"),
    "nan_literal": ('{"model": "%s", "messages": %s, "temperature": NaN}' % (MODEL, json.dumps(QUESTION)),
                    400, None, "not valid JSON"),
    "lone_surrogate": ('{"model": "%s", "messages": [{"role": "user", "content": "\\ud800"}]}' % MODEL,
                       400, None, "not valid JSON"),
    "invalid_utf8": (b'{"model": "' + MODEL.encode() + b'", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
                     400, None, "not valid JSON"),
    "huge_array": (body_with(stop=["x"] * 100_000), 400, "stop", ""),
    "huge_principles": (body_with(pad={"principles": ["p"] * 100_000}), 400, "pad.principles", ""),
    "empty_body": ("", 400, None, "not valid JSON"),
    "not_an_object": ("[1, 2, 3]", 400, None, "not a JSON object"),
}
# A wrong type for every field the API reads.
WRONG_TYPES = {
    "model": 5, "messages": "hi", "stream": "yes", "stream_options": [1], "max_tokens": "ten",
    "max_completion_tokens": 1.5, "temperature": "hot", "presence_penalty": [], "frequency_penalty": {},
    "seed": "s", "stop": 5, "user": 7, "pad": "humorous",
}
for field, value in WRONG_TYPES.items():
    HOSTILE_BODIES[f"wrong_type_{field}"] = (body_with(**{field: value}), 400, field, "")
for field, value in {"principles": "humorous", "weights": "w", "composition": 1, "mode": [], "beta": "b",
                     "top_k": 2.5, "reward_model": 3, "policy_sees_guideline": "no", "ignore_eos": 1,
                     "diagnostics": "on"}.items():
    HOSTILE_BODIES[f"wrong_type_pad_{field}"] = (body_with(pad={"principles": ["concise"], field: value}), 400,
                                                 f"pad.{field}", "")
HOSTILE_BODIES["wrong_type_message_role"] = (body_with(messages=[{"role": 1, "content": "x"}]), 400,
                                             "messages[0].role", "must be a string")
HOSTILE_BODIES["wrong_type_message_content"] = (body_with(messages=[{"role": "user", "content": 1}]), 400,
                                                "messages[0].content", "")


@pytest.mark.parametrize("case", list(HOSTILE_BODIES))
def test_hostile_bodies(server, case):
    body, status, param, part = HOSTILE_BODIES[case]
    got, answer = post(server, body)
    assert got == status, (case, answer)
    assert isinstance(answer, dict) and part in answer["error"]["message"], answer
    assert len(answer["error"]["message"]) < MAX_MESSAGE, answer
    if param is not None:
        assert answer["error"]["param"] == param, answer
    assert server.http("/healthz")[0] == 200


def test_duplicate_keys_take_the_last(server):
    """JSON leaves duplicate keys to the reader; like Python's json, the last one wins."""
    body = '{"model": "nope", "model": "%s", "messages": %s, "max_tokens": 1, "max_tokens": 2}' % (
        MODEL, json.dumps(QUESTION))
    status, answer = post(server, body)
    assert status == 200 and answer["usage"]["completion_tokens"] == 2, answer


def test_headers_too_large_are_refused(server):
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=PATIENCE) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        head = s.recv(4096).decode(errors="replace")
    assert head.startswith("HTTP/1.1 400 "), head
    assert_healthy(server)


def test_many_idle_connections_do_not_stop_the_server(server):
    """More idle connections than workers: each is dropped after the read timeout, and a request waiting
    behind them is served."""
    idle = [socket.create_connection(("127.0.0.1", server.http_port), timeout=PATIENCE) for _ in range(100)]
    try:
        assert_healthy(server)
    finally:
        for connection in idle:
            connection.close()
    assert_healthy(server)

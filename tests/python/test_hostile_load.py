"""64 normal streams (32 gRPC, 32 OpenAI HTTP) beside 32 hostile connections to the same real pad_server:
silent sockets, slow-loris headers, garbage bytes and bad bodies on the HTTP port, garbage on the gRPC port,
each reopened whenever the server closes it. Every normal stream's answer must equal the same request run
alone, and the probe listener must answer kubelet's probes throughout (no three probes in a row over the
1 s timeout, which is when Kubernetes would restart the pod)."""
import http.client
import json
import random
import socket
import threading
import time

import grpc

from server_fixture import PATIENCE, Server, collect, free_port, run_concurrently, stub_of, to_proto, wait_for

MODEL = "SmolLM2-135M-Instruct"
TOKENS = 12
QUESTIONS = ["Name a color.", "What is 2 + 2?", "Say hello in French.", "Name a planet.",
             "What do bees make?", "Give me a fruit.", "What is the opposite of hot?", "Name an ocean."]
STREAMS_PER_DOOR = 32
HOSTILE = 32
PROBE_TIMEOUT = 1.0  # kubelet's timeoutSeconds in deploy/


def grpc_answer(pb, channel, question):
    spec = {"messages": [{"role": "user", "content": question}], "mode": "vanilla", "max_new_tokens": TOKENS,
            "ignore_eos": True, "temperature": 0.0}
    text, final, _ = collect(stub_of(pb, channel).GenerateAligned(to_proto(pb, spec), timeout=PATIENCE))
    assert final.usage.generated_tokens == TOKENS
    return text


def http_answer(port, question):
    """The streamed answer of POST /v1/chat/completions, its chunks joined."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
    body = {"model": MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": TOKENS,
            "temperature": 0, "stream": True, "pad": {"ignore_eos": True}}
    connection.request("POST", "/v1/chat/completions", body=json.dumps(body),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200, response.read()
    text = ""
    for line in response.read().decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            chunk = json.loads(line[len("data: "):])
            assert "error" not in chunk, chunk
            text += chunk["choices"][0]["delta"].get("content") or "" if chunk["choices"] else ""
    connection.close()
    return text


class Hostile(threading.Thread):
    """One hostile connection of `kind`, reopened whenever the server closes it, until `stop` is set."""

    def __init__(self, kind, http_port, grpc_port, stop, seed):
        super().__init__(daemon=True)
        self.kind, self.http_port, self.grpc_port, self.stop = kind, http_port, grpc_port, stop
        self.random = random.Random(seed)
        self.connections = 0

    def run(self):
        while not self.stop.is_set():
            port = self.grpc_port if self.kind == "grpc_garbage" else self.http_port
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    self.connections += 1
                    getattr(self, self.kind)(s)
            except OSError:
                pass  # closed by the server: open another
            self.stop.wait(0.05)

    def hold(self, s, first=b""):
        """Sends `first`, then holds the socket open (reading whatever comes) until it is closed."""
        s.sendall(first)
        s.settimeout(0.5)
        while not self.stop.is_set():
            try:
                if s.recv(4096) == b"":
                    return
            except socket.timeout:
                pass

    def silent(self, s):
        self.hold(s)

    def slowloris(self, s):
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        while not self.stop.is_set():
            s.sendall(b"X-a: b\r\n")
            self.stop.wait(1.0)

    def garbage(self, s):
        self.hold(s, bytes(self.random.getrandbits(8) for _ in range(self.random.randint(1, 4096))))

    def bad_body(self, s):
        bodies = [b"[" * 100_000, b'{"model": "' + b"x" * 200_000 + b'"}', b'{"messages": NaN}', b"\xff\xfe" * 1000]
        body = self.random.choice(bodies)
        self.hold(s, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def grpc_garbage(self, s):
        self.hold(s, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(self.random.getrandbits(8) for _ in range(512)))


def test_normal_streams_beside_hostile_connections(pb, model_dir):
    probe_port = free_port()
    server = Server(model_dir, "--kv_slots=64", "--max_seq_len=256", "--max_prompt_tokens=128",
                    f"--probe_listen=127.0.0.1:{probe_port}", "--reward_models=")
    try:
        alone = {q: grpc_answer(pb, server.channel, q) for q in QUESTIONS}
        for q in QUESTIONS[:2]:
            assert http_answer(server.http_port, q) == alone[q]

        stop = threading.Event()
        kinds = ["silent", "slowloris", "garbage", "bad_body", "grpc_garbage"]
        hostiles = [Hostile(kinds[i % len(kinds)], server.http_port, server.port, stop, seed=i)
                    for i in range(HOSTILE)]
        probes = []  # (seconds, status or the error)

        def probe_loop():
            while not stop.is_set():
                for path in ("/healthz", "/readyz"):
                    began = time.monotonic()
                    try:
                        connection = http.client.HTTPConnection("127.0.0.1", probe_port, timeout=PATIENCE)
                        connection.request("GET", path)
                        status = connection.getresponse().status
                        connection.close()
                    except OSError as e:
                        status = repr(e)
                    probes.append((time.monotonic() - began, status))
                stop.wait(0.2)

        for h in hostiles:
            h.start()
        prober = threading.Thread(target=probe_loop, daemon=True)
        prober.start()
        assert wait_for(lambda: all(h.connections > 0 for h in hostiles))

        questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(2 * STREAMS_PER_DOOR)]
        answers = run_concurrently(
            [lambda q=q: grpc_answer(pb, server.new_channel(), q) for q in questions[:STREAMS_PER_DOOR]] +
            [lambda q=q: http_answer(server.http_port, q) for q in questions[STREAMS_PER_DOOR:]])
        stop.set()
        for h in hostiles:
            h.join(timeout=30)
        prober.join(timeout=PATIENCE)

        for i, (question, answer) in enumerate(zip(questions, answers)):
            door = "grpc" if i < STREAMS_PER_DOOR else "http"
            assert answer == alone[question], f"stream {i} ({door}, {question!r}): {answer!r}"
        failed = [p for p in probes if p[1] != 200]
        assert probes and not failed, failed
        slow = [seconds > PROBE_TIMEOUT for seconds, _ in probes]
        assert not any(all(slow[i:i + 3]) for i in range(len(slow) - 2)), \
            f"three probes in a row over {PROBE_TIMEOUT} s: {[round(s, 2) for s, _ in probes]}"
        # Everything is released, and the server still serves.
        assert wait_for(lambda: server.metric("pad_requests_running") == 0)
        assert grpc_answer(pb, server.channel, QUESTIONS[0]) == alone[QUESTIONS[0]]
    finally:
        server.stop_and_check()

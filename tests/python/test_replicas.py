"""Scale-out, black-box: three pad_server replicas behind Debian's HAProxy, started by the test.

- As behind a Kubernetes ClusterIP Service (an L4 balancer that picks a replica per connection: HAProxy in
  TCP mode), a client that keeps one gRPC channel or one HTTP keep-alive connection for the whole run
  reaches every replica, because the server ends connections after --max_connection_age_s; with the age
  off, it stays on the replica it first reached.
- Behind an L7 proxy (HAProxy in HTTP mode, HTTP/2 to the gRPC replicas, leastconn, health checks on each
  replica's /readyz), concurrent streams spread evenly, answers equal those of one replica alone, a replica
  killed mid-run loses only its own streams (each an error), and a draining replica finishes its streams
  while the proxy sends it no new ones.
- A client that balances itself over every replica's address (pad_client, as over a headless Service) goes
  round robin and retries a call refused before its first token on another replica.
Each replica's share is read from its own /metrics."""
import json
import http.client
import threading
import time
import urllib.error

import grpc
import pytest

from haproxy_fixture import HAPROXY, Haproxy, Replicas, l7_config, tcp_config
from pad_client import Final, PadClient
from server_fixture import PATIENCE, collect, free_port, run_concurrently, stub_of, to_proto, wait_for

# HAProxy comes with the project's setup (scripts/common.sh), like kubectl and promtool: missing, the tests fail.
pytestmark = pytest.mark.usefixtures("haproxy_installed")


@pytest.fixture(scope="module")
def haproxy_installed():
    if HAPROXY is None:
        pytest.fail("haproxy is missing; run ./scripts/setup.sh")

MODEL = "SmolLM2-135M-Instruct"
QUESTIONS = ["Name a color.", "What is 2 + 2?", "Say hello in French.", "Name a planet.", "What do bees make?",
             "Give me a fruit."]


def grpc_answer(pb, channel, question, tokens=4, timeout=PATIENCE):
    spec = {"messages": [{"role": "user", "content": question}], "mode": "vanilla", "max_new_tokens": tokens,
            "ignore_eos": True, "temperature": 0.0}
    text, final, _ = collect(stub_of(pb, channel).GenerateAligned(to_proto(pb, spec), timeout=timeout))
    assert final.usage.generated_tokens == tokens
    return text


def http_answer(connection, question, tokens=4):
    """A whole answer over `connection` (http.client reopens it when the server closed it)."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": tokens,
            "temperature": 0, "pad": {"ignore_eos": True}}
    connection.request("POST", "/v1/chat/completions", body=json.dumps(body),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    answer = json.loads(response.read())
    assert response.status == 200, answer
    return answer["choices"][0]["message"]["content"]


# --- 1. Long-lived clients spread over replicas ----------------------------------------------------------------

@pytest.mark.parametrize("age", [1, 0], ids=["age_1s", "age_off"])
def test_a_long_lived_client_reaches_every_replica(pb, model_dir, tmp_path, age):
    replicas = Replicas(model_dir, 3, f"--max_connection_age_s={age}")
    grpc_port, http_port = free_port(), free_port()
    proxy = Haproxy(tcp_config(replicas, grpc_port, http_port), tmp_path, [grpc_port, http_port])
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=PATIENCE)
    try:
        # One channel and one keep-alive connection for the whole run, a request every 0.1 s.
        deadline = time.monotonic() + (PATIENCE if age else 5)
        while time.monotonic() < deadline:
            grpc_answer(pb, channel, QUESTIONS[0], tokens=1)
            http_answer(connection, QUESTIONS[0], tokens=1)
            if age and all(replicas.requests("grpc")) and all(replicas.requests("http")):
                break
            time.sleep(0.1)
        grpc_share, http_share = replicas.requests("grpc"), replicas.requests("http")
        if age:
            assert all(grpc_share) and all(http_share), (grpc_share, http_share)
        else:  # the control: without an age, every request goes where the first connection went
            assert sorted(grpc_share)[:2] == [0, 0] and sorted(http_share)[:2] == [0, 0], (grpc_share, http_share)
    finally:
        channel.close()
        connection.close()
        proxy.stop()
        replicas.stop()


# --- 2. Per-request balancing through an L7 proxy --------------------------------------------------------------

@pytest.fixture
def l7(pb, model_dir, tmp_path):
    replicas = Replicas(model_dir, 3, "--shutdown_grace_s=120")
    grpc_port, http_port = free_port(), free_port()
    proxy = Haproxy(l7_config(replicas, grpc_port, http_port), tmp_path, [grpc_port, http_port])
    yield replicas, grpc_port, http_port
    proxy.stop()
    replicas.stop()


def test_streams_spread_evenly_and_answer_as_one_replica(pb, l7):
    replicas, grpc_port, http_port = l7
    direct = replicas.servers[0]
    alone = {q: grpc_answer(pb, direct.channel, q, tokens=8) for q in QUESTIONS}
    before = {p: replicas.requests(p) for p in ("grpc", "http")}
    n = 30
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(n)]
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")  # one client connection for all the streams
    grpc_results = run_concurrently([lambda q=q: grpc_answer(pb, channel, q, tokens=8) for q in questions])
    http_results = run_concurrently(
        [lambda q=q: http_answer(http.client.HTTPConnection("127.0.0.1", http_port, timeout=PATIENCE), q, 8)
         for q in questions])
    channel.close()
    for results in (grpc_results, http_results):
        for i, (q, got) in enumerate(zip(questions, results)):
            assert got == alone[q], f"stream {i} ({q!r}): {got!r}"
    for protocol in ("grpc", "http"):
        share = [after - b for after, b in zip(replicas.requests(protocol), before[protocol])]
        assert sum(share) == n, share
        assert all(abs(s - n / 3) <= 0.2 * n / 3 for s in share), f"{protocol}: {share} is not within 20%"


def test_a_killed_replica_loses_only_its_own_streams(pb, l7):
    replicas, grpc_port, _ = l7
    n, tokens = 12, 120
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    victim = replicas.servers[0]
    held = []

    def kill_when_all_run():
        running = lambda: [s.metric("pad_requests_running") for s in replicas.servers]  # noqa: E731
        assert wait_for(lambda: sum(running()) == n)
        held.append(running()[0])
        victim.process.kill()

    killer = threading.Thread(target=kill_when_all_run)
    killer.start()
    results = run_concurrently([lambda q=q: grpc_answer(pb, channel, q, tokens=tokens)
                                for q in [QUESTIONS[i % len(QUESTIONS)] for i in range(n)]])
    killer.join()
    lost = [r for r in results if isinstance(r, Exception)]
    assert held and held[0] >= 1 and len(lost) == held[0], (held, lost)  # exactly the victim's streams
    # An error, never a hang or a short answer taken for a whole one. HAProxy ends a cut stream without
    # trailers, which gRPC reads as UNKNOWN "Stream removed"; a client connected to the replica itself reads
    # UNAVAILABLE.
    assert all(isinstance(r, grpc.RpcError) and r.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN)
               for r in lost), [(r.code(), r.details()) if isinstance(r, grpc.RpcError) else r for r in lost]
    # New requests go to the survivors.
    assert wait_for(lambda: _answers(pb, channel))
    for _ in range(6):
        grpc_answer(pb, channel, QUESTIONS[0], tokens=2)
    channel.close()


def _answers(pb, channel):
    try:
        grpc_answer(pb, channel, QUESTIONS[0], tokens=1, timeout=30)
        return True
    except grpc.RpcError:
        return False


def test_a_draining_replica_finishes_its_streams_and_gets_no_new_ones(pb, l7):
    replicas, grpc_port, _ = l7
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    draining = replicas.servers[1]
    n, tokens = 9, 80
    results = [None]

    def streams():
        results[0] = run_concurrently([lambda q=q: grpc_answer(pb, channel, q, tokens=tokens)
                                       for q in [QUESTIONS[i % len(QUESTIONS)] for i in range(n)]])

    runner = threading.Thread(target=streams)
    runner.start()
    assert wait_for(lambda: sum(s.metric("pad_requests_running") for s in replicas.servers) == n)
    held = draining.metric("pad_requests_running")
    draining.terminate()  # SIGTERM: /readyz turns 503, the proxy's check takes it out of the rotation
    assert wait_for(lambda: _not_ready(replicas.probe_ports[1]))
    time.sleep(1.0)  # five health-check intervals
    finished_before = draining.metric("pad_requests_total", protocol="grpc")
    for _ in range(6):
        grpc_answer(pb, channel, QUESTIONS[0], tokens=2)
    runner.join(timeout=PATIENCE)
    assert all(not isinstance(r, Exception) for r in results[0]), results[0]  # its streams finished
    assert held >= 1
    if draining.process.poll() is None:  # still draining: nothing new reached it
        try:
            assert draining.metric("pad_requests_total", protocol="grpc") - finished_before <= held
        except urllib.error.URLError:  # it finished draining and exited between the two calls
            assert draining.process.wait(timeout=PATIENCE) == 0
    assert draining.process.wait(timeout=PATIENCE) == 0
    channel.close()


def _not_ready(probe_port):
    try:
        connection = http.client.HTTPConnection("127.0.0.1", probe_port, timeout=5)
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 503
    except OSError:
        return True


# --- 3. A client that balances itself (a headless Service) ------------------------------------------------------

def test_the_python_client_balances_and_retries_over_replicas(pb, model_dir):
    """pad_client's channel over every replica's address (what a headless Service's DNS name resolves to):
    calls go round robin, and one refused UNAVAILABLE before its first token (a replica draining, or killed)
    is retried on another, so no call fails."""
    replicas = Replicas(model_dir, 3, "--shutdown_grace_s=120")
    question = [{"role": "user", "content": QUESTIONS[0]}]
    try:
        with PadClient("ipv4:" + ",".join(s.address for s in replicas.servers)) as client:
            def ask():
                events = list(client.generate_aligned(question, mode="vanilla", max_new_tokens=1, timeout=PATIENCE))
                assert isinstance(events[-1], Final)

            # Until every subchannel is connected, round_robin picks among those that are.
            assert wait_for(lambda: ask() or all(replicas.requests("grpc")))
            before = replicas.requests("grpc")
            for _ in range(9):
                ask()
            assert [a - b for a, b in zip(replicas.requests("grpc"), before)] == [3, 3, 3]

            # Replica 0 drains, held open by a long stream of its own; replica 2 is killed.
            held = stub_of(pb, replicas.servers[0].channel).GenerateAligned(
                to_proto(pb, {"messages": question, "mode": "vanilla", "max_new_tokens": 200, "ignore_eos": True}),
                timeout=PATIENCE)
            next(held)
            replicas.servers[0].terminate()
            assert wait_for(lambda: _not_ready(replicas.probe_ports[0]))
            replicas.servers[2].process.kill()
            replicas.servers[2].process.wait()
            before = replicas.servers[1].metric("pad_requests_total", protocol="grpc", status="ok")
            for _ in range(9):
                ask()  # every one answered, by the one replica left
            assert replicas.servers[1].metric("pad_requests_total", protocol="grpc", status="ok") - before == 9
            refused = replicas.servers[0].metric("pad_requests_total", protocol="grpc", status="unavailable")
            assert refused >= 1, "the draining replica was never tried, so retrying was not shown"
            held.cancel()
    finally:
        replicas.stop()

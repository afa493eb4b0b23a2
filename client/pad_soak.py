"""Soak and overload run against a real pad_server (SmolLM2 with the demo PRM), started here so that its memory
can be watched. Prints a table and writes a JSON report; exits 1 when a check fails.

  Soak: --streams concurrent streams for --seconds, modes mixed (vanilla, PAD with one principle, PAD WEIGHTED
  with three), 20% cancelled at a random point, 10% with a deadline that expires mid-stream, 20% with stop
  strings. Checks: no status other than the one each request's kind expects, health SERVING at every sample,
  RSS growth after the first minute (or the first sixth of a shorter run) under --max_rss_growth, the running
  and KV-slot gauges back to 0 at the end, and a fresh greedy request answering token for token as before.
  Burst: --burst requests sent at once. Checks: every one answered (OK or RESOURCE_EXHAUSTED), the refusals
  within 2 s, the server's peak RSS during the burst bounded, health SERVING after, gauges back to 0.

    ~/.cache/pad/venv/bin/python client/pad_soak.py --seconds 600 --streams 64 --burst 1000 --out soak.json
"""
import argparse
import concurrent.futures
import json
import pathlib
import random
import sys
import threading
import time

import grpc
from grpc_health.v1 import health_pb2

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "client" / "python"))
from pad_client import Delta, build_request  # noqa: E402
from pad_client.v1 import pad_pb2_grpc  # noqa: E402
from pad_server_process import PadServerProcess  # noqa: E402

PROMPTS = ["What is a good way to spend a rainy afternoon?", "Tell me about owls.", "How do plants make food?",
           "Write a short poem about the sea.", "Explain what a database index is.", "Define serendipity."]
KINDS = (("vanilla", {"mode": "vanilla"}),
         ("pad", {"mode": "pad", "principles": ["humorous"]}),
         ("weighted", {"mode": "pad", "principles": ["humorous", "concise", "harmless"], "weights": [0.5, 0.3, 0.2],
                       "composition": "weighted"}))
FRESH = {"mode": "pad", "principles": ["concise"], "max_new_tokens": 24}


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def serving(server):
    try:
        return server.health() == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def idle(server, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.metric("pad_requests_running") == 0 and server.metric("pad_kv_cache_slots_used") == 0:
            return True
        time.sleep(0.2)
    return False


def fresh_answer(server):
    events = server.client.generate_aligned([{"role": "user", "content": PROMPTS[0]}], timeout=600, **FRESH)
    return "".join(event.text for event in events if isinstance(event, Delta))


def one_request(server, rng):
    """Runs one soak request; returns (kind, behaviour, status name, expected). On the raw stub, not
    PadClient: a cancelled call must end in its CANCELLED status, which leaving PadClient's loop hides."""
    name, fields = rng.choice(KINDS)
    behaviour = rng.choices(["complete", "cancel", "deadline"], weights=[70, 20, 10])[0]
    stop = ["."] if rng.random() < 0.2 else []
    request = build_request([{"role": "user", "content": rng.choice(PROMPTS)}], temperature=0.7,
                            seed=rng.randrange(1 << 30),
                            max_new_tokens=rng.randint(8, 64) if behaviour == "complete" else 400, stop=stop,
                            **fields)
    timeout = rng.uniform(0.3, 1.5) if behaviour == "deadline" else 120
    call = pad_pb2_grpc.PadServiceStub(server.channel).GenerateAligned(request, timeout=timeout)
    cancel_after = rng.randint(1, 20)
    status = "OK"
    try:
        for i, _ in enumerate(call):
            if behaviour == "cancel" and i + 1 >= cancel_after:
                call.cancel()
    except grpc.RpcError as e:
        status = e.code().name
    expected = {"complete": {"OK"}, "cancel": {"CANCELLED", "OK"}, "deadline": {"DEADLINE_EXCEEDED", "OK"}}[behaviour]
    return name, behaviour, status, status in expected


def soak(server, args, report):
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.seconds
    outcomes, lock = [], threading.Lock()
    samples = []  # (seconds since start, rss KiB, serving)
    started = time.monotonic()
    done = threading.Event()

    def worker(seed):
        local = random.Random(seed)
        while time.monotonic() < deadline:
            result = one_request(server, local)
            with lock:
                outcomes.append(result)

    def monitor():
        while not done.is_set():
            samples.append((time.monotonic() - started, rss_kib(server.process.pid), serving(server)))
            done.wait(1.0)

    watcher = threading.Thread(target=monitor)
    watcher.start()
    with concurrent.futures.ThreadPoolExecutor(args.streams) as pool:
        list(pool.map(worker, [rng.randrange(1 << 30) for _ in range(args.streams)]))
    done.set()
    watcher.join()
    warm = min(60.0, args.seconds / 6)
    after_warm = [s for s in samples if s[0] >= warm]
    base = after_warm[0][1] if after_warm else samples[0][1]
    growth = (samples[-1][1] - base) / base
    unexpected = [o for o in outcomes if not o[3]]
    counts = {}
    for name, behaviour, status, _ in outcomes:
        key = f"{name}/{behaviour}/{status}"
        counts[key] = counts.get(key, 0) + 1
    report["soak"] = {
        "requests": len(outcomes), "by_kind_behaviour_status": dict(sorted(counts.items())),
        "unexpected": [list(o[:3]) for o in unexpected[:20]], "unexpected_count": len(unexpected),
        "health_failures": sum(1 for s in samples if not s[2]), "samples": len(samples),
        "rss_mib_after_warmup": round(base / 1024, 1), "rss_mib_end": round(samples[-1][1] / 1024, 1),
        "rss_growth": round(growth, 4), "idle_after": idle(server),
    }
    soak_report = report["soak"]
    return [("soak: no unexpected status", soak_report["unexpected_count"] == 0),
            ("soak: SERVING at every sample", soak_report["health_failures"] == 0),
            (f"soak: RSS growth after warm-up < {args.max_rss_growth:.0%}", growth < args.max_rss_growth),
            ("soak: gauges back to 0", soak_report["idle_after"])]


def burst(server, args, report):
    """Every call sent before any is read, on the raw stub (PadClient starts a call only when read)."""
    request = build_request([{"role": "user", "content": PROMPTS[1]}], mode="vanilla", max_new_tokens=4)
    stub = pad_pb2_grpc.PadServiceStub(server.channel)
    before = rss_kib(server.process.pid)
    peak = [before]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(server.process.pid))
            stop.wait(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    began = time.monotonic()
    ended = [None] * args.burst  # when each call's status arrived, whoever reads its messages later
    calls = []
    for i in range(args.burst):
        calls.append(stub.GenerateAligned(request, timeout=120))
        calls[-1].add_done_callback(lambda _, i=i: ended.__setitem__(i, time.monotonic() - began))

    def finish(call):
        try:
            for _ in call:
                pass
            return "OK"
        except grpc.RpcError as e:
            return e.code().name

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        results = list(zip(pool.map(finish, calls), ended))
    stop.set()
    watcher.join()
    statuses = {}
    for status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    refused = [t for s, t in results if s == "RESOURCE_EXHAUSTED"]
    report["burst"] = {"requests": args.burst, "statuses": statuses,
                       "slowest_refusal_s": round(max(refused), 3) if refused else None,
                       "rss_mib_before": round(before / 1024, 1), "rss_mib_peak": round(peak[0] / 1024, 1),
                       "serving_after": serving(server), "idle_after": idle(server)}
    b = report["burst"]
    return [("burst: only OK and RESOURCE_EXHAUSTED", set(statuses) <= {"OK", "RESOURCE_EXHAUSTED"}),
            ("burst: the excess refused within 2 s", not refused or max(refused) < 2.0),
            ("burst: peak RSS within +25%", peak[0] < before * 1.25),
            ("burst: SERVING after, gauges back to 0", b["serving_after"] and b["idle_after"])]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--kv_slots", type=int, default=32)
    parser.add_argument("--max_waiting", type=int, default=64)
    parser.add_argument("--max_rss_growth", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prm", default=str(ROOT / "prm" / "SmolLM2-135M-PAD-demo"))
    parser.add_argument("--out", help="JSON report")
    args = parser.parse_args()

    report = {"args": vars(args)}
    flags = (f"--kv_slots={args.kv_slots}", "--max_seq_len=1024", f"--max_waiting={args.max_waiting}",
             f"--reward_models=demo=:{args.prm}")
    with PadServerProcess(*flags, env={"OMP_NUM_THREADS": "2"}) as server:
        first = fresh_answer(server)
        checks = soak(server, args, report)
        checks.append(("soak: a fresh request answers as before", fresh_answer(server) == first))
        checks += burst(server, args, report)
        code = server.stop()
    checks.append(("the server exits 0 on SIGTERM", code == 0))
    report["checks"] = {name: ok for name, ok in checks}
    report["pass"] = all(ok for _, ok in checks)
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(report, indent=1))
    soak_report, burst_report = report["soak"], report["burst"]
    print(f"soak: {soak_report['requests']} requests in {args.seconds:.0f} s over {args.streams} streams; "
          f"RSS {soak_report['rss_mib_after_warmup']} -> {soak_report['rss_mib_end']} MiB "
          f"({soak_report['rss_growth']:+.1%}); burst of {args.burst}: {burst_report['statuses']}, slowest refusal "
          f"{burst_report['slowest_refusal_s']} s, RSS {burst_report['rss_mib_before']} -> peak "
          f"{burst_report['rss_mib_peak']} MiB")
    print("| check | result |\n|---|---|")
    for name, ok in checks:
        print(f"| {name} | {'pass' if ok else 'FAIL'} |")
    sys.exit(0 if report["pass"] else 1)


if __name__ == "__main__":
    main()

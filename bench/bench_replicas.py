"""Replicas behind an L7 proxy: aggregate tokens/s, time to first token (p50, p99), inter-token latency (p99)
and each replica's share of the requests, at 1, 2 and 3 pad_server replicas behind HAProxy (HTTP/2 to the
replicas, leastconn, health checks on /readyz; tests/python/haproxy_fixture.py), on this machine.

    ~/.cache/pad/venv/bin/python bench/bench_replicas.py [--streams 12] [--requests 48] [--tokens 32]

Every replica runs on the same host, so with few cores the total cannot grow with replicas (each replica
gets cores / replicas LibTorch threads, as a pod would get a CPU limit): what this measures is how evenly the
proxy spreads streams and what that does to the tail. Prints a Markdown table; record it in bench/RESULTS.md.
"""
import argparse
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import grpc

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from conftest import MODEL  # noqa: E402
from haproxy_fixture import HAPROXY, Haproxy, Replicas, l7_config  # noqa: E402
from server_fixture import free_port, load_stubs, stub_of, to_proto  # noqa: E402

QUESTIONS = ["Explain how a bicycle stays upright.", "Write a short poem about the sea.",
             "What are three uses of vinegar at home?", "Describe the water cycle.",
             "Give tips for a job interview.", "Why is the sky blue?"]


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def isa():
    flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    return "AVX-512" + (" + AVX512_BF16" if "avx512_bf16" in flags else "") if "avx512f" in flags else "AVX2"


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def run_load(pb, address, streams, requests, tokens):
    """`requests` streams, `streams` at a time, over one channel; (seconds, tokens, TTFTs, inter-token gaps)."""
    channel = grpc.insecure_channel(address)
    stub = stub_of(pb, channel)
    ttfts, gaps, generated, lock, next_index = [], [], [0], threading.Lock(), [0]

    def worker():
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= requests:
                return
            spec = {"messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}], "mode": "vanilla",
                    "max_new_tokens": tokens, "ignore_eos": True, "temperature": 0.0}
            began = last = time.monotonic()
            first, count, local_gaps = None, 0, []
            for message in stub.GenerateAligned(to_proto(pb, spec), timeout=600):
                now = time.monotonic()
                if message.text:
                    if first is None:
                        first = now - began
                    else:
                        local_gaps.append(now - last)
                    last = now
                if message.HasField("final"):
                    count = message.final.usage.generated_tokens
            with lock:
                ttfts.append(first)
                gaps.extend(local_gaps)
                generated[0] += count

    began = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - began
    channel.close()
    return seconds, generated[0], ttfts, gaps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", default="1,2,3")
    parser.add_argument("--streams", type=int, default=12, help="concurrent streams through the proxy")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per request")
    args = parser.parse_args()
    if HAPROXY is None:
        sys.exit("haproxy is not installed (scripts/common.sh installs it)")
    cores = os.cpu_count()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench_replicas_"))
    pb = load_stubs(work)
    print(f"Machine: {cpu_name()}, {cores} cores ({isa()}); SmolLM2-135M-Instruct float32, VANILLA, greedy; "
          f"{args.streams} concurrent streams, {args.requests} requests of {args.tokens} new tokens, through "
          f"HAProxy {subprocess.run([HAPROXY, '-v'], capture_output=True, text=True).stdout.split()[2]} "
          f"(HTTP/2, leastconn); {time.strftime('%Y-%m-%d')}.\n")
    print("| replicas | threads each | tokens/s | TTFT p50 s | TTFT p99 s | ITL p50 ms | ITL p99 ms "
          "| requests per replica | largest deviation from even |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in (int(x) for x in args.replicas.split(",")):
        threads = max(1, cores // n)
        replicas = Replicas(MODEL, n, "--kv_slots=16", env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        grpc_port, http_port = free_port(), free_port()
        proxy = Haproxy(l7_config(replicas, grpc_port, http_port), work, [grpc_port])
        try:
            address = f"127.0.0.1:{grpc_port}"
            run_load(pb, address, n, n, 4)  # warm-up: one request per replica
            before = replicas.requests("grpc")
            seconds, tokens, ttfts, gaps = run_load(pb, address, args.streams, args.requests, args.tokens)
            share = [a - b for a, b in zip(replicas.requests("grpc"), before)]
            even = args.requests / n
            deviation = max(abs(s - even) / even for s in share)
            print(f"| {n} | {threads} | {tokens / seconds:.1f} | {statistics.median(ttfts):.2f} | "
                  f"{percentile(ttfts, 0.99):.2f} | {1e3 * statistics.median(gaps):.0f} | "
                  f"{1e3 * percentile(gaps, 0.99):.0f} | {' / '.join(str(int(s)) for s in share)} | "
                  f"{100 * deviation:.0f}% |", flush=True)
        finally:
            proxy.stop()
            replicas.stop()


if __name__ == "__main__":
    main()

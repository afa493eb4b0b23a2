"""KV cache capacity and prefix caching (issue 29), against real pad_server processes; prints tables.

1. Capacity. At one fixed KV memory (--kv_cache_mib) and --max_seq_len=4096, PAD requests (demo PRM, its
   backbone shared with the policy: two sequences each) with realistic lengths drawn reproducibly (prompts of
   20 to 400 tokens, answers of 16 to 256, end-of-sequence ignored), all submitted at once:
   - "dense slots": blocks of --max_seq_len tokens, so each sequence holds a whole slot, as the cache did
     before it was paged;
   - "paged": blocks of 16 tokens (the CPU default), taken as sequences grow.
   The most requests running at once (pad_requests_running, polled), preemptions, and aggregate tokens/s.
   Then both at equal concurrency (--kv_slots of what the dense cache holds), where tokens/s should be equal.
2. Prefix cache. An 8-turn chat, each turn resending the history: time to first token of the last turn, with
   and without --prefix_cache. Then 32 PAD requests with one principle, one after another: prompt tokens
   computed (pad_prefill_tokens_total) and read from the cache.

    ~/.cache/pad/venv/bin/python bench/bench_capacity.py [--requests 48] [--kv_cache_mib 720] [--only prefix]
"""
import argparse
import pathlib
import platform
import re
import sys
import threading
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "client" / "python"))
from pad_client import Delta, Final, PadClient  # noqa: E402
from pad_server_process import PadServerProcess  # noqa: E402

WORDS = ("river mountain lantern harvest engine library window orchard signal garden bridge compass "
         "thunder meadow circuit journal anchor canvas pepper saddle").split()
QUESTIONS = ["Summarise the notes above.", "What should I do next?", "Explain the main idea simply.",
             "List the key points.", "Write a short reply to this."]


def cpu_name():
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def isa():
    flags = re.search(r"^flags\s*:(.*)$", pathlib.Path("/proc/cpuinfo").read_text(), re.M).group(1).split()
    return "avx512_bf16" if "avx512_bf16" in flags else "avx512" if "avx512f" in flags else \
        "avx2" if "avx2" in flags else "none"


def request_mix(n, seed):
    """n PAD requests: prompts of about 20-400 tokens of filler words, answers of 16-256 tokens."""
    rng = np.random.default_rng(seed)
    mix = []
    for i in range(n):
        words = int(rng.integers(15, 300))
        notes = " ".join(rng.choice(WORDS, size=words))
        mix.append(dict(messages=[{"role": "user", "content": f"Notes {i}: {notes}\n\n{QUESTIONS[i % 5]}"}],
                        principles=["concise"], max_new_tokens=int(rng.integers(16, 257)), ignore_eos=True))
    return mix


def run_mix(flags, mix):
    """Submits every request of `mix` at once; returns (most running, preemptions, tokens, seconds)."""
    with PadServerProcess(*flags, "--max_waiting=256", env={"OMP_NUM_THREADS": "2"}) as server:
        client = PadClient(server.address)
        tokens = [0] * len(mix)
        errors = []

        def one(i):
            try:
                for event in client.generate_aligned(timeout=1800, **mix[i]):
                    if isinstance(event, Final):
                        tokens[i] = event.usage.generated_tokens
            except Exception as e:  # noqa: BLE001  (reported below)
                errors.append(repr(e))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(mix))]
        start = time.monotonic()
        for t in threads:
            t.start()
        most = 0
        while any(t.is_alive() for t in threads):
            most = max(most, int(server.metric("pad_requests_running")))
            time.sleep(0.2)
        seconds = time.monotonic() - start
        preemptions = int(server.metric("pad_preemptions_total"))
        client.close()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed: {errors[:3]}")
    return most, preemptions, sum(tokens), seconds


def chat_turns(flags, turns):
    """TTFT of each turn of a chat whose history grows; answers are fixed text so both runs see the same."""
    with PadServerProcess(*flags, env={"OMP_NUM_THREADS": "2"}) as server:
        client = PadClient(server.address)
        messages, times = [], []
        for turn in range(turns):
            question = f"Turn {turn}: " + " ".join(WORDS[(turn * 3 + j) % len(WORDS)] for j in range(60))
            messages.append({"role": "user", "content": question})
            start = time.monotonic()
            first = None
            for event in client.generate_aligned(messages, mode="vanilla", max_new_tokens=48, ignore_eos=True,
                                                 return_tokens=True, timeout=600):
                if first is None and isinstance(event, Delta) and event.tokens:
                    first = time.monotonic() - start
            times.append(first)
            messages.append({"role": "assistant", "content": "Noted. " + " ".join(WORDS[:40])})
        client.close()
        return times


def principle_requests(flags, n):
    with PadServerProcess(*flags, env={"OMP_NUM_THREADS": "2"}) as server:
        client = PadClient(server.address)
        for i in range(n):
            for _ in client.generate_aligned([{"role": "user", "content": f"Question {i}: {QUESTIONS[i % 5]}"}],
                                             principles=["Be helpful, harmless and humorous; answer briefly."],
                                             max_new_tokens=4, ignore_eos=True, timeout=600):
                pass
        computed = server.metric("pad_prefill_tokens_total")
        cached = server.metric("pad_prefix_cache_hit_tokens_total")
        client.close()
        return int(computed), int(cached)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--kv_cache_mib", type=int, default=720,
                        help="KV memory of both configurations (SmolLM2 float32: 45 KiB a token; 720 MiB is "
                             "four 4,096-token slots)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--prm", default=str(ROOT / "prm" / "SmolLM2-135M-PAD-demo"))
    parser.add_argument("--only", choices=["capacity", "prefix"], help="run one of the two parts")
    args = parser.parse_args()
    print(f"host: {cpu_name()}, {isa()}, 2 threads; SmolLM2-135M-Instruct float32, demo PRM (shared backbone)\n")

    mix = request_mix(args.requests, args.seed)
    common = [f"--reward_models=demo=:{args.prm}", "--max_seq_len=4096", "--max_prompt_tokens=1024",
              f"--kv_cache_mib={args.kv_cache_mib}", "--max_batch_tokens=512"]
    dense = common + ["--kv_block_size=4096", "--kv_slots=128"]
    paged = common + ["--kv_slots=128"]
    if args.only != "prefix":
        capacity(args, mix, dense, paged)
    if args.only != "capacity":
        prefix(args)


def capacity(args, mix, dense, paged):
    rows = []
    for name, flags in (("dense slots", dense), ("paged", paged)):
        most, preemptions, tokens, seconds = run_mix(flags, mix)
        rows.append((name, most, preemptions, tokens / seconds))
    equal = rows[0][1] * 2  # sequences: the dense cache's concurrency, each PAD request two
    for name, flags in (("dense slots", dense), ("paged", paged)):
        limited = [f for f in flags if not f.startswith("--kv_slots")] + [f"--kv_slots={equal}"]
        most, preemptions, tokens, seconds = run_mix(limited, mix)
        rows.append((f"{name}, --kv_slots={equal}", most, preemptions, tokens / seconds))
    print(f"{args.requests} PAD requests at once, KV memory {args.kv_cache_mib} MiB, --max_seq_len=4096\n")
    print("| cache | most PAD requests running | preemptions | tokens/s |")
    print("|---|---:|---:|---:|")
    for name, most, preemptions, rate in rows:
        print(f"| {name} | {most} | {preemptions} | {rate:.1f} |")


def prefix(args):
    print("\nPrefix cache\n")
    print("| measurement | --prefix_cache | --noprefix_cache |")
    print("|---|---:|---:|")
    small = ["--reward_models=demo=:" + args.prm, "--kv_slots=32", "--max_seq_len=4096", "--max_prompt_tokens=2048"]
    on = chat_turns(small, 8)
    off = chat_turns(small + ["--noprefix_cache"], 8)
    print(f"| 8-turn chat: TTFT of the last turn | {on[-1] * 1000:.0f} ms | {off[-1] * 1000:.0f} ms |")
    computed_on, cached_on = principle_requests(small, 32)
    computed_off, cached_off = principle_requests(small + ["--noprefix_cache"], 32)
    print(f"| 32 PAD requests, one principle: prompt tokens computed | {computed_on} | {computed_off} |")
    print(f"| ... read from the prefix cache | {cached_on} | {cached_off} |")


if __name__ == "__main__":
    main()

"""Fair scheduling under a burst of long prompts (issue 8), against a real pad_server per setting.

8 PAD streams decode (--stream_tokens tokens each, end-of-sequence ignored); once each has produced a few
tokens, 8 requests with ~1,500-token prompts arrive at once. For each --max_batch_tokens setting, a table
row: the running streams' inter-token latency (p50, p99, max) while the arrivals are prefilled, the arrivals'
time to first token, and aggregate tokens/s over that window. Each setting runs alone, in turn, --runs times.

    ~/.cache/pad/venv/bin/python bench/bench_chunked_prefill.py --settings 0,2048,256
"""
import argparse
import pathlib
import sys
import threading
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "client" / "python"))
from pad_client import Delta, Final  # noqa: E402
from pad_server_process import PadServerProcess  # noqa: E402

STREAM_PROMPTS = ["Tell me about owls.", "How do plants make food?", "Write a short poem about the sea.",
                  "Explain what a database index is.", "Define serendipity.", "Describe a thunderstorm.",
                  "What is a good way to spend a rainy afternoon?", "How do bridges stay up?"]
LONG_SENTENCE = "The committee reviewed every section of the annual report on coastal erosion and its causes. "


def stream(client, request, times, usage):
    """Consumes one answer's stream (`request`: generate_aligned's arguments), appending the arrival time of
    each token."""
    for event in client.generate_aligned(timeout=600, ignore_eos=True, return_tokens=True, **request):
        now = time.monotonic()
        if isinstance(event, Delta):
            times.extend([now] * len(event.tokens))
        elif isinstance(event, Final):
            usage.append(event.usage)


def run(setting, args):
    flags = [f"--kv_slots={args.kv_slots}", f"--max_batch_tokens={setting}", "--max_waiting=64",
             f"--reward_models=demo=:{args.prm}", "--max_seq_len=2048"]
    with PadServerProcess(*flags, env={"OMP_NUM_THREADS": "2"}) as server:
        long_prompt = LONG_SENTENCE * (args.long_tokens // 17)
        streams = [dict(messages=[{"role": "user", "content": p}], principles=["humorous"],
                        max_new_tokens=args.stream_tokens) for p in STREAM_PROMPTS]
        arrivals = [dict(messages=[{"role": "user", "content": f"{i}. {long_prompt} Summarise it."}],
                         principles=["concise"], max_new_tokens=8) for i in range(8)]
        stream_times = [[] for _ in streams]
        threads, usage = [], []
        for request, times in zip(streams, stream_times):
            thread = threading.Thread(target=stream, args=(server.client, request, times, []))
            thread.start()
            threads.append(thread)
        while min(len(t) for t in stream_times) < 5:  # every stream decoding
            time.sleep(0.01)
        burst_start = time.monotonic()
        arrival_times = [[] for _ in arrivals]
        for request, times in zip(arrivals, arrival_times):
            thread = threading.Thread(target=stream, args=(server.client, request, times, usage))
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        window_end = max(times[0] for times in arrival_times)  # the last arrival's first token
        gaps = [b - a for times in stream_times for a, b in zip(times, times[1:]) if burst_start <= b <= window_end]
        tokens = sum(burst_start <= t <= window_end for times in stream_times + arrival_times for t in times)
        return {"setting": setting, "prompt_tokens": int(np.median([u.prompt_tokens for u in usage])),
                "itl_p50_ms": 1e3 * float(np.percentile(gaps, 50)) if gaps else float("nan"),
                "itl_p99_ms": 1e3 * float(np.percentile(gaps, 99)) if gaps else float("nan"),
                "itl_max_ms": 1e3 * max(gaps) if gaps else float("nan"),
                "ttft_median_s": float(np.median([t[0] - burst_start for t in arrival_times])),
                "ttft_max_s": max(t[0] - burst_start for t in arrival_times),
                "tokens_per_s": tokens / (window_end - burst_start)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--settings", default="0,2048,256", help="--max_batch_tokens values; 0 = unchunked")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--long_tokens", type=int, default=1500, help="about this many tokens per arrival")
    parser.add_argument("--stream_tokens", type=int, default=400)
    parser.add_argument("--kv_slots", type=int, default=40)
    parser.add_argument("--prm", default=str(ROOT / "prm" / "SmolLM2-135M-PAD-demo"))
    args = parser.parse_args()
    settings = [int(s) for s in args.settings.split(",")]
    rows = [run(setting, args) for _ in range(args.runs) for setting in settings]
    print(f"8 PAD streams decoding; 8 PAD requests of {rows[0]['prompt_tokens']} prompt tokens arrive at once; "
          f"measured from the burst to the last arrival's first token\n")
    print("| --max_batch_tokens | streams' ITL p50 ms | p99 ms | max ms | arrivals' TTFT median s | max s | "
          "tokens/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        name = "0 (whole prompts)" if r["setting"] == 0 else str(r["setting"])
        print(f"| {name} | {r['itl_p50_ms']:.0f} | {r['itl_p99_ms']:.0f} | {r['itl_max_ms']:.0f} | "
              f"{r['ttft_median_s']:.1f} | {r['ttft_max_s']:.1f} | {r['tokens_per_s']:.1f} |")


if __name__ == "__main__":
    main()

"""Does an idle pad_server spin, and how do two servers share the machine's cores? (issue 11)

For each OpenMP wait policy (libgomp's environment variables): one float32 server's CPU use while idle after a request, its tokens/s for one
stream alone, then the tokens/s of each of two servers streaming at the same time. Prints a table.

    ~/.cache/pad/venv/bin/python bench/bench_cpu_sharing.py [--new_tokens 64] [--idle_seconds 10]
"""
import argparse
import concurrent.futures
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_vs_llamacpp as side_by_side  # noqa: E402  (its server process and streaming client)

# The environments compared: libgomp's default (a thread that runs out of work spins up to 300,000 times
# before it sleeps), shorter spins, and a passive wait (sleep at once). libgomp reads them when it loads, so
# they must be in the server's environment, not set by the server.
POLICIES = {"default": {}, "GOMP_SPINCOUNT=30000": {"GOMP_SPINCOUNT": "30000"},
            "GOMP_SPINCOUNT=3000": {"GOMP_SPINCOUNT": "3000"},
            "OMP_WAIT_POLICY=passive": {"OMP_WAIT_POLICY": "passive"}}


def cpu_seconds(pid):
    """User + system CPU seconds of a process and all its threads."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tokens_per_second(config, server, prompt, new_tokens):
    start = time.monotonic()
    tokens, _, _ = side_by_side.complete(server.port, config.body(prompt, new_tokens))
    return tokens / (time.monotonic() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--idle_seconds", type=float, default=10)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    args.pad_server = side_by_side.ROOT / "build" / "server" / "pad_server"
    args.model_dir = side_by_side.ROOT / "models" / side_by_side.MODEL_NAME
    config = side_by_side.Config(f"ours:{args.dtype}", args)
    prompts = side_by_side.PROMPTS
    rows = []
    with tempfile.TemporaryDirectory() as log_dir:
        for name, env in POLICIES.items():
            side_by_side.wait_for_idle(0.7)
            saved = dict(os.environ)
            os.environ.update(env)
            try:
                first = side_by_side.ServerProcess(config, pathlib.Path(log_dir))
                tokens_per_second(config, first, prompts[0], 8)  # warm-up
                before = cpu_seconds(first.process.pid)
                time.sleep(args.idle_seconds)
                idle = (cpu_seconds(first.process.pid) - before) / args.idle_seconds
                alone = tokens_per_second(config, first, prompts[1], args.new_tokens)
                second = side_by_side.ServerProcess(config, pathlib.Path(log_dir))
                tokens_per_second(config, second, prompts[0], 8)
                with concurrent.futures.ThreadPoolExecutor(2) as pool:
                    shared = list(pool.map(lambda s: tokens_per_second(config, s, prompts[2], args.new_tokens),
                                           [first, second]))
                first.stop()
                second.stop()
            finally:
                os.environ.clear()
                os.environ.update(saved)
            rows.append(f"| {name} | {100 * idle:.1f}% | {alone:.1f} | {shared[0]:.1f} + {shared[1]:.1f} = "
                        f"{sum(shared):.1f} |")
    print(f"{side_by_side.machine()}; pad_server --dtype={args.dtype}, {args.threads} OpenMP threads each; "
          f"{args.new_tokens} greedy tokens per stream\n")
    print("| OpenMP wait | idle server's CPU | tokens/s, one server alone | tokens/s, two servers at once |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

"""Our pad_server beside llama.cpp's llama-server on the same weights and the same workload (issue 11).

Both servers are driven by the same client over OpenAI's streaming `POST /v1/chat/completions`: 16 fixed
prompts of 48-59 tokens, --new_tokens greedy tokens each, end of sequence ignored, each prompt once at
every concurrency level (N streams at a time). Level "Na" is N streams with arrivals: 3 x 16 requests, N at a
time, answers of 32-95 tokens (for --new_tokens 64), so that new prompts keep arriving while the other streams
decode, the case where a prefill can stall them. A cell is aggregate tokens/s: generated tokens over the wall
time from the first request sent to the last one finished; beside it, time to first token and the gaps
between a stream's tokens (inter-token latency) at p50 and p99 over every request and gap of the cell. Each
configuration gets its own server, alone;
configurations alternate, ours and theirs, and the whole sequence runs --repeats times. llama.cpp and its
GGUFs (converted by its own convert_hf_to_gguf.py) come from bench/llamacpp/build.sh.

    bench/llamacpp/build.sh
    ~/.cache/pad/venv/bin/python bench/bench_vs_llamacpp.py             # the table, about 30 minutes
    ~/.cache/pad/venv/bin/python bench/bench_vs_llamacpp.py --quick     # a smoke run
    ... --configs ours:float32,llama:f32,ours:int8,llama:q8_0           # ours:DTYPE is pad_server --dtype
                                                                        # (int8: --quantization=int8)
    ... --isa avx2     # what an AVX2 CPU runs, on an AVX-512 one: ours with every library capped (as
                       # scripts/test.sh caps them), llama.cpp built without AVX-512 (build.sh with LLAMA_ISA=avx2)
"""
import argparse
import concurrent.futures
import http.client
import importlib.metadata
import json
import os
import pathlib
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
LLAMA_HOME = pathlib.Path(os.environ.get("PAD_HOME", pathlib.Path.home() / ".cache" / "pad")) / "llamacpp"
MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_CONFIGS = "ours:float32,llama:f32,ours:bfloat16,llama:bf16,ours:int8,llama:q8_0"
# --isa avx2: our kernels, LibTorch's, MKL's and oneDNN's instruction sets, capped (docs/testing.md).
AVX2_CAPS = {"PAD_CPU_CAPABILITY": "avx2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "ONEDNN_MAX_CPU_ISA": "AVX2"}
# Both servers get this many tokens of KV cache per stream (llama.cpp splits -c among its -np slots).
CONTEXT_PER_STREAM = 256

PROMPTS = [
    "I am planning a two-week trip through Japan in early spring with my partner, who loves food and quiet "
    "gardens while I prefer hiking. Which cities and regions would you suggest, how should we split our "
    "days between them, and is the rail pass worth buying for a route like that?",
    "My sourdough bread keeps coming out dense and flat even though the starter bubbles nicely and doubles "
    "within six hours. I bake at high hydration in a cast iron pot. What are the most likely causes, and "
    "what should I change first to get a more open crumb and a better rise?",
    "Can you explain how a heat pump manages to move more energy into a house than the electricity it "
    "consumes, why its efficiency drops when the outdoor air gets very cold, and what a homeowner in a "
    "snowy climate should look for when choosing one for an older building?",
    "Our small team keeps arguing about whether to write automated tests before or after the code. Some "
    "say test-driven development slows them down, others say it saves time later. What are the real "
    "trade-offs, and how could we try both approaches on a project fairly?",
    "I have been offered two jobs: one pays twenty percent more at a large bank, the other is at a young "
    "climate startup with stock options and a much shorter commute. I am thirty and have no children. "
    "Which questions should I ask myself and each company before I decide?",
    "Why does the Moon always show the same face to the Earth, was that always the case in the distant "
    "past, and will the same thing eventually happen to the Earth so that one side faces the Moon forever? "
    "Please explain tidal locking in plain words without heavy mathematics.",
    "My grandmother is turning ninety next month and the family wants to make a short book of memories "
    "for her. About twenty relatives will contribute. How should we collect the stories and photos, "
    "organise them, and get a few printed copies made without a large budget?",
    "What actually happens inside a computer when I type a web address and press enter? I would like a "
    "step by step story from the keyboard to the page on my screen, covering names, addresses, "
    "connections and rendering, at the level of a curious high school student.",
    "I keep a small vegetable garden on a balcony that gets about five hours of afternoon sun. Last "
    "summer the tomatoes cracked and the lettuce bolted quickly. Which vegetables and herbs would do "
    "better in that spot, and how should I water and feed the pots through the season?",
    "Could you compare learning the piano and the guitar for an adult beginner with about thirty minutes "
    "a day to practise? I enjoy both classical music and folk songs, and I would like to play with "
    "friends eventually. Which would you recommend, and how should I structure the first months?",
    "Our town council wants to reduce traffic near a primary school where parents park on the pavement "
    "every morning. Suggest some measures that have worked elsewhere, explain the costs and the likely "
    "objections from residents, and say how we could measure whether they helped.",
    "I am reading about the history of the printing press. How did Gutenberg's invention spread across "
    "Europe so quickly in the fifteenth century, what did early printers publish most, and how did "
    "cheaper books change religion, science and everyday life in the following century?",
    "What are the main differences between index funds, actively managed funds and buying individual "
    "shares for someone who wants to invest a small amount every month for twenty years? Please explain "
    "fees, risk and taxes simply, and mention the most common mistakes beginners make.",
    "My cat has started scratching the sofa and waking me at four in the morning since we moved to a "
    "new flat three weeks ago. She is six years old and was calm before. What could explain the change, "
    "and what can I try at home before paying for a visit to the vet?",
    "Explain how vaccines train the immune system, why some need booster doses while others protect for "
    "decades, and how researchers decide whether a new vaccine is safe enough to approve. Please keep "
    "it accurate but understandable for someone without any biology background at all.",
    "I want to run my first half marathon in four months. I can currently jog five kilometres in about "
    "thirty minutes, three times a week, and I sometimes get a sore knee. How should I build up my "
    "training, what should I eat, and how do I avoid making the knee worse?",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Config:
    """One table row: which server, at which weight type, and how to start it and ask it."""

    def __init__(self, spec, args):
        self.kind, _, self.dtype = spec.partition(":")
        if self.kind not in ("ours", "llama") or not self.dtype:
            raise SystemExit(f"--configs: {spec!r} is not ours:DTYPE or llama:GGUF_TYPE")
        self.spec = spec
        self.label = (f"ours {self.dtype} (VANILLA)" if self.kind == "ours"
                      else f"llama.cpp {self.dtype.upper()} GGUF")
        self.args = args

    def command(self, port):
        slots = len(PROMPTS)  # every request of a level admitted at once, as llama-server -np 16
        if self.kind == "ours":
            # ours:int8 is int8 weights as Q8_0's, float32 activations (--quantization=int8).
            weights = (["--dtype=float32", "--quantization=int8"] if self.dtype == "int8"
                       else [f"--dtype={self.dtype}"])
            return [str(self.args.pad_server), f"--policy={self.args.model_dir}", *weights,
                    "--reward_models=identity",  # the policy's own backbone, no adapter: nothing extra loaded
                    f"--http_listen=127.0.0.1:{port}", f"--listen=127.0.0.1:{free_port()}",
                    f"--kv_slots={slots}", f"--max_waiting={len(PROMPTS)}",
                    f"--max_seq_len={CONTEXT_PER_STREAM}", "--noprefix_cache", *self.args.ours_flags.split()]
        gguf = self.args.llama_home / "models" / f"{MODEL_NAME}-{self.dtype}.gguf"
        if not gguf.exists():
            raise SystemExit(f"{gguf} is missing: run bench/llamacpp/build.sh")
        return [str(llama_server(self.args)), "-m", str(gguf),
                "-np", str(slots), "-cb", "-t", str(self.args.threads), "-c", str(slots * CONTEXT_PER_STREAM),
                "--host", "127.0.0.1", "--port", str(port), "--alias", MODEL_NAME, "--no-webui"]

    def ready_path(self):
        return "/readyz" if self.kind == "ours" else "/health"

    def body(self, prompt, new_tokens):
        body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": prompt}],
                "max_tokens": new_tokens, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}}
        if self.kind == "ours":
            body["pad"] = {"mode": "vanilla", "ignore_eos": True}
        else:
            # Neither reuses a cached prompt (ours runs with --noprefix_cache): both prefill every prompt.
            body.update(ignore_eos=True, cache_prompt=False)
        return body


class ServerProcess:
    """The configuration's server on a free loopback port, ready when the constructor returns."""

    def __init__(self, config, log_dir, timeout=300):
        self.port = free_port()
        self.log_path = log_dir / f"{config.spec.replace(':', '-')}.log"
        self.log = open(self.log_path, "ab")
        env = dict(os.environ, OMP_NUM_THREADS=str(config.args.threads))
        if config.kind == "ours" and config.args.isa == "avx2":
            env.update(AVX2_CAPS)
        self.process = subprocess.Popen(config.command(self.port), stdout=self.log, stderr=subprocess.STDOUT,
                                        cwd=ROOT, env=env)
        deadline = time.monotonic() + timeout
        while not self._ready(config.ready_path()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{config.spec} did not become ready; log: {self.log_path}\n"
                                   + self.log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.5)

    def _ready(self, path):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", path)
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def complete(port, body):
    """Streams one chat completion: (completion tokens, prompt tokens, seconds to first content, the gaps in
    seconds between content chunks)."""
    start = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.read()[:500]!r}")
    first, usage, arrivals = None, None, []
    for line in response:
        if not line.startswith(b"data: "):
            continue
        data = line[6:].strip()
        if data == b"[DONE]":
            break
        chunk = json.loads(data)
        if "error" in chunk:
            raise RuntimeError(f"stream failed: {chunk['error']}")
        if any(c.get("delta", {}).get("content") for c in chunk.get("choices", [])):
            arrivals.append(time.monotonic())
            if first is None:
                first = arrivals[-1] - start
        # Tokens are counted from the last chunk's usage (stream_options.include_usage, which both
        # servers support): llama.cpp may put several tokens in one content chunk.
        usage = chunk.get("usage") or usage
    connection.close()
    if usage is None:
        raise RuntimeError("the stream ended without usage")
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    return usage["completion_tokens"], usage["prompt_tokens"], first or time.monotonic() - start, gaps


def answer_lengths(level, new_tokens):
    """Tokens of each request at a level: every prompt once at new_tokens, or with arrivals ("16a") every
    prompt three times at lengths spread over [new_tokens / 2, 3 * new_tokens / 2)."""
    if not level.endswith("a"):
        return [new_tokens] * len(PROMPTS)
    return [new_tokens // 2 + (i * 37) % new_tokens for i in range(3 * len(PROMPTS))]


def measure(config, port, level, new_tokens):
    """The level's requests, its number of streams at a time: (generated tokens, wall seconds, per-request
    results)."""
    lengths = answer_lengths(level, new_tokens)
    bodies = [config.body(PROMPTS[i % len(PROMPTS)], n) for i, n in enumerate(lengths)]
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(int(level.rstrip("a"))) as pool:
        results = list(pool.map(lambda body: complete(port, body), bodies))
    wall = time.monotonic() - start
    short = [(r[0], n) for r, n in zip(results, lengths) if r[0] != n]
    if short:
        raise RuntimeError(f"answers of (tokens, asked) {short}: end of sequence was not ignored")
    return sum(r[0] for r in results), wall, results


def level_name(level):
    streams = int(level.rstrip("a"))
    return f"{streams} stream{'s' if streams > 1 else ''}" + (" + arrivals" if level.endswith("a") else "")


def wait_for_idle(max_load):
    """Timings on a few shared cores mean nothing while something else runs: wait for a quiet machine."""
    while (load := os.getloadavg()[0]) >= max_load:
        print(f"  waiting for an idle machine: 1-minute load average {load:.2f} >= {max_load}", flush=True)
        time.sleep(10)


def machine():
    info = {}
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    flags = info.get("Flags", "").split()
    isa = "AVX-512" if "avx512f" in flags else "AVX2, no AVX-512" if "avx2" in flags else "no AVX2"
    memory_kib = int(open("/proc/meminfo").readline().split()[1])
    return (f"{info.get('Model name', platform.processor())}, {os.cpu_count()} cores ({isa}), "
            f"{memory_kib / 2**20:.0f} GiB")


def percentile(values, q):
    """The q-th percentile (0-100) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def llama_server(args):
    """llama-server of the build for --isa: build/ (the host's own instructions) or build-avx2/."""
    return args.llama_home / ("build-avx2" if args.isa == "avx2" else "build") / "bin" / "llama-server"


def llama_version(args):
    sdists = sorted(p.name.removeprefix("llama_cpp_python-") for p in args.llama_home.glob("llama_cpp_python-*")
                    if p.is_dir())
    binary = llama_server(args)
    if not binary.exists():
        return "not built"
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
    line = next((s for s in (out.stdout + out.stderr).splitlines() if s.startswith("version:")), "?")
    return f"llama-server {line.removeprefix('version: ')}, vendored in llama-cpp-python {', '.join(sdists)}"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=DEFAULT_CONFIGS,
                        help="in order; ours:DTYPE (pad_server --dtype) or llama:GGUF_TYPE (f32, bf16, q8_0)")
    parser.add_argument("--levels", default="1,4,16,16a",
                        help="concurrent streams, comma-separated; Na: N streams with arrivals")
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2,
                        help="llama-server -t, and OMP_NUM_THREADS for both")
    parser.add_argument("--max_load", type=float, default=0.7,
                        help="a configuration starts once the 1-minute load average is below this")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: levels 1,2, 8 tokens, 1 repeat, no wait for an idle machine")
    parser.add_argument("--pad_server", type=pathlib.Path, default=ROOT / "build" / "server" / "pad_server")
    parser.add_argument("--model_dir", type=pathlib.Path, default=ROOT / "models" / MODEL_NAME)
    parser.add_argument("--llama_home", type=pathlib.Path, default=LLAMA_HOME)
    parser.add_argument("--ours_flags", default="", help="more pad_server flags, space-separated")
    parser.add_argument("--isa", choices=("native", "avx2"), default="native",
                        help="avx2: run what an AVX2 CPU runs (ours capped, llama.cpp's AVX2 build)")
    args = parser.parse_args()
    if args.quick:
        args.levels, args.new_tokens, args.repeats, args.max_load = "1,2a", 8, 1, float("inf")
    args.levels = args.levels.split(",")
    configs = [Config(spec, args) for spec in args.configs.split(",")]
    log_dir = pathlib.Path(tempfile.mkdtemp(prefix="bench_vs_llamacpp."))
    print(f"server logs: {log_dir}", flush=True)

    tokens_per_s = {c.spec: {n: [] for n in args.levels} for c in configs}
    latencies = {c.spec: {n: ([], []) for n in args.levels} for c in configs}  # (TTFTs, gaps), every repeat
    for repeat in range(args.repeats):
        for config in configs:
            wait_for_idle(args.max_load)
            print(f"run {repeat + 1}: {config.label} (load {os.getloadavg()[0]:.2f})", flush=True)
            server = ServerProcess(config, log_dir)
            try:
                complete(server.port, config.body(PROMPTS[0], args.new_tokens))  # warm-up
                for streams in args.levels:
                    tokens, wall, results = measure(config, server.port, streams, args.new_tokens)
                    tokens_per_s[config.spec][streams].append(tokens / wall)
                    ttfts, gaps = latencies[config.spec][streams]
                    ttfts += [r[2] for r in results]
                    gaps += [g for r in results for g in r[3]]
                    prompt = sum(r[1] for r in results) / len(results)
                    ttft = percentile([r[2] for r in results], 50)
                    itl = [g for r in results for g in r[3]]
                    print(f"  {level_name(streams):>17}: {tokens} tokens in {wall:6.1f} s "
                          f"= {tokens / wall:6.1f} tokens/s; prompt {prompt:.0f} tokens, TTFT p50 {ttft:.2f} s, "
                          f"ITL p50 {percentile(itl, 50) * 1e3:.0f} ms p99 {percentile(itl, 99) * 1e3:.0f} ms",
                          flush=True)
            finally:
                server.stop()

    torch = importlib.metadata.version("torch")
    capped = " Both run as on an AVX2 CPU (--isa avx2)." if args.isa == "avx2" else ""
    print(f"\nMachine: {machine()}; Linux {platform.release()}. pad_server: LibTorch {torch} (the torch "
          f"wheel). llama.cpp: {llama_version(args)}.{capped}")
    print(f"Workload: {len(PROMPTS)} prompts of 48-59 tokens (+ the chat template), {args.new_tokens} greedy "
          f"tokens each (with arrivals: each prompt 3 times, {args.new_tokens // 2}-"
          f"{args.new_tokens // 2 + args.new_tokens - 1} tokens), end of sequence ignored, streamed; aggregate "
          f"tokens/s at each number of concurrent streams, run {' / run '.join(str(r + 1) for r in range(args.repeats))}.\n")
    headers = [level_name(n) for n in args.levels]
    print("| configuration | " + " | ".join(headers) + " |")
    print("|---" * (len(headers) + 1) + "|")
    for config in configs:
        cells = [" / ".join(f"{v:.1f}" for v in tokens_per_s[config.spec][n]) for n in args.levels]
        print(f"| {config.label} | " + " | ".join(cells) + " |")
    print("\nLatency, every run together: time to first token p50 / p99 (s), then the gaps between a stream's "
          "tokens p50 / p99 (ms).\n")
    print("| configuration | " + " | ".join(f"{h}: TTFT s | {h}: ITL ms" for h in headers) + " |")
    print("|---" * (2 * len(headers) + 1) + "|")
    for config in configs:
        cells = []
        for n in args.levels:
            ttfts, gaps = latencies[config.spec][n]
            cells.append(f"{percentile(ttfts, 50):.2f} / {percentile(ttfts, 99):.2f}")
            cells.append(f"{percentile(gaps, 50) * 1e3:.0f} / {percentile(gaps, 99) * 1e3:.0f}" if gaps else "-")
        print(f"| {config.label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())

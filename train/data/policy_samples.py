"""Sampling the SmolLM2 policy through a pad_server started here, with a cache beside the output, and the
samples as answers to train on."""
import json
import pathlib
import sys
import time

from pair_format import Answer, cap_words_keep_lines, trim_to_sentence, words

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))
sys.path.insert(0, str(ROOT / "client" / "python"))
import generation  # noqa: E402  (whole answers through pad_client)
from pad_server_process import PadServerProcess  # noqa: E402


SERVER = ROOT / "build" / "server" / "pad_server"
POLICY = "models/SmolLM2-135M-Instruct"
SERVER_FLAGS = ["--kv_slots=16", "--max_seq_len=1024", "--reward_models=default"]


def sample_key(prompt, principle, seed, params):
    """What makes a cached sample reusable: the request, and the policy that answered it. Records from before
    principles and dtypes were recorded are VANILLA samples in bfloat16."""
    return json.dumps([prompt, principle, seed, params["temperature"], params["top_k"], params["max_new_tokens"],
                       params["policy"], params.get("dtype", "bfloat16")])


def sample_policy(requests, params, samples, cache_path, args, label):
    """{(prompt, principle): [sample record per seed]} for `requests`, a list of (prompt, principle or None):
    VANILLA without a principle, PREFERENCE_PROMPT with one, so the policy answers as PAD's policy does.
    Samples come from the cache file when it has them, else from a pad_server started here (and stopped
    before returning). The cache is rewritten sorted, so it is stable."""
    cache = {}
    if cache_path.exists():
        with open(cache_path, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                cache[sample_key(record["prompt"], record.get("principle"), record["seed"], record)] = record
    todo = [(p, principle, s) for p, principle in requests for s in range(samples)
            if sample_key(p, principle, s, params) not in cache]
    if todo:
        print(f"{label}: sampling {len(todo)} answers from the policy ({len(cache)} cached)", file=sys.stderr)
        started = time.monotonic()
        with PadServerProcess(f"--dtype={params['dtype']}", *SERVER_FLAGS, policy=POLICY,
                              env={"OMP_NUM_THREADS": str(args.server_threads)}) as server, \
                open(cache_path, "a", encoding="utf-8") as out:
            rpc = [dict(prompt=prompt, mode="preference_prompt" if principle else "vanilla",
                        principles=[principle] if principle else [], top_k=params["top_k"],
                        temperature=params["temperature"], seed=seed, max_new_tokens=params["max_new_tokens"])
                   for prompt, principle, seed in todo]
            for (prompt, principle, seed), answer in zip(todo, generation.answer_all(server.client, rpc,
                                                                                     args.concurrency)):
                record = dict(params, prompt=prompt, seed=seed, text=answer["text"],
                              finish_reason=answer["finish_reason"])
                if principle:
                    record["principle"] = principle
                cache[sample_key(prompt, principle, seed, record)] = record
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            rate = len(todo) / (time.monotonic() - started)
            print(f"{label}: {len(todo)} samples, {rate:.2f}/s", file=sys.stderr, flush=True)
    records = sorted(cache.values(), key=lambda r: sample_key(r["prompt"], r.get("principle"), r["seed"], r))
    with open(cache_path, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return {(p, principle): [cache[sample_key(p, principle, s, params)] for s in range(samples)]
            for p, principle in requests}


LENGTH_REASONS = ("length", "FINISH_REASON_LENGTH")


def sample_answer(record, max_words, trim=False):
    """A policy sample as an Answer: capped at `max_words`; with `trim`, a sample the token limit cut drops its
    unfinished last sentence."""
    text = record["text"].strip()
    finished = record["finish_reason"] not in LENGTH_REASONS
    if trim and not finished:
        text = trim_to_sentence(text)
    capped = cap_words_keep_lines(text, max_words)
    return Answer(capped, finished and len(words(text)) <= max_words)

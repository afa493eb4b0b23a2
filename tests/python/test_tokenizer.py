"""Our tokenizer against `tokenizers` (ids, decode) and transformers (chat templates).

One tokenizer_probe process per model serves every request of this file. The models are SmolLM2-135M-Instruct
(GPT-2 style ByteLevel pre-tokenizer, ChatML) and Llama-3, converted into a temporary directory by
tools/convert_llama3_tokenizer.py (Split with the Llama-3 regex, ignore_merges, BOS template).
"""
import json
import pathlib
import random
import subprocess
import sys
import threading

import pytest
from tokenizers import Tokenizer

from conftest import probe

ROOT = pathlib.Path(__file__).resolve().parents[2]

SPECIAL_STRINGS = [
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|begin_of_text|>", "<|end_of_text|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_7|>", "<|python_tag|>",
]


class ProbeProcess:
    """A running tokenizer_probe: requests go in as JSON lines, one JSON line comes back for each."""

    def __init__(self, model_dir):
        self.process = subprocess.Popen(
            [str(probe("tokenizer_probe")), str(model_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8")

    def run(self, requests):
        payload = "".join(json.dumps(r) + "\n" for r in requests)

        def write():  # from a thread, so a full stdout pipe cannot deadlock us
            self.process.stdin.write(payload)
            self.process.stdin.flush()

        writer = threading.Thread(target=write)
        writer.start()
        responses = []
        for _ in requests:
            line = self.process.stdout.readline()
            assert line, f"tokenizer_probe exited with {self.process.poll()}"
            responses.append(json.loads(line))
        writer.join()
        return responses

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="session")
def llama3_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("llama3")
    subprocess.run([sys.executable, str(ROOT / "tools" / "convert_llama3_tokenizer.py"), str(out)], check=True)
    return out


class Model:
    def __init__(self, name, directory):
        self.name = name
        self.dir = directory
        self.reference = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.probe = ProbeProcess(directory)


@pytest.fixture(scope="session", params=["smollm2", "llama3"])
def model(request, model_dir):
    directory = model_dir if request.param == "smollm2" else request.getfixturevalue("llama3_dir")
    m = Model(request.param, directory)
    yield m
    m.probe.close()


def _random_code_points(rng, n):
    out = []
    while len(out) < n:
        plane = rng.choice([0, 0, 0, 1, 2, 3, 14])
        c = rng.randrange(0x10000) + plane * 0x10000
        if 0xD800 <= c < 0xE000:
            continue
        out.append(chr(c))
    return "".join(out)


def build_corpus():
    """A deterministic corpus of at least 2,000 valid strings that covers what pre-tokenizers care about."""
    rng = random.Random(1234)
    prose = [
        "The quick brown fox jumps over the lazy dog.",
        "It's a truth universally acknowledged, that a single man in possession of a good fortune...",
        "Hello, World! How are you doing today?",
        "She said: \"I'll be there at 5pm\" -- but didn't show up.",
        "E-mail me at john.doe@example.com or visit https://example.org/path?q=1&r=2#frag.",
        "  Leading spaces, trailing spaces   ",
        "ALL CAPS SENTENCE WITH NUMBERS 1234 AND SYMBOLS #@$%^&*()",
    ]
    code = [
        "def f(x):\n    return x ** 2 + 1\n",
        "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
        "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}",
        "#include <stdio.h>\r\nint main() { printf(\"hi\\n\"); }\r\n",
        "SELECT * FROM users WHERE id = 42 AND name LIKE '%smith%';",
        "    if (a && b || !c) { return -1; }  // comment",
        "x = [i for i in range(10) if i % 2 == 0]",
    ]
    scripts = [
        "我爱自然语言处理。今天天气很好！", "日本語のテキスト、カタカナとひらがな。", "한국어 문장입니다.",
        "مرحبا بالعالم، كيف حالك؟", "नमस्ते दुनिया, आप कैसे हैं?", "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่าง",
        "שלום עולם", "Привет, мир! Ёлка.", "Γειά σου Κόσμε", "Crème brûlée, naïve café, São Paulo, Zürich, Ångström",
        "e\u0301 a\u0308 n\u0303 Z\u0324\u0354\u0367\u0311\u0313a\u0356\u032d\u0308\u0307",
        "ﬁ ﬂ ﬃ ℌ ℍ ① ⅷ ² ³ ½ ¼ ٣ ۴ ߁ ௮",
    ]
    emoji = [
        "👍", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🏳️\u200d🌈", "🇺🇸🇯🇵", "🤗🔥💯", "❤️", "🧑🏿\u200d🚀", "a😀b", "😀😀😀",
    ]
    spaces = [
        "\u0085", "\u00a0", "\u2028", "\u2029", "\ufeff", "\u180e", "\u3000", "\u200b", "\u1680", "\u2007", "\u202f",
        "\t", "\r\n", "\n", "\r", "\x0b", "\x0c", "\x1c",
    ]
    contractions = [
        "'s", "'S", "'ll", "'LL", "'Ll", "'re", "'RE", "'ve", "'VE", "'m", "'M", "'d", "'D", "'t", "'T",
        "don't", "I'M", "WE'LL", "they'Re", "it'S", "'ſ", "’s", "''s", "x's", "1's", " 's",
    ]
    numbers = ["0", "7", "42", "1234", "12345", "1234567890", "3.14159", "-1e10", "1,000,000", "555-0199",
               "0x1F", "٣٤٥", "١٢٣٤٥"]
    pieces = prose + code + scripts + emoji + spaces + contractions + numbers + SPECIAL_STRINGS

    corpus = ["", " ", "a", "\n\n", "  \n  ", " " * 10000, "\t" * 300, "\r\n" * 500, "x" + " " * 1000 + "y",
              "a" * 5000, "\u0085" * 50, "\u00a0 " * 50, "1" * 100]
    corpus += pieces
    corpus += [" " * n for n in range(1, 41)]
    corpus += [" " * n + "word" for n in range(1, 20)] + ["word" + " " * n for n in range(1, 20)]
    corpus += [" " * n + "\n" + " " * m for n in range(4) for m in range(4)]
    corpus += [f"{s}{t}" for s in spaces for t in ["a", " ", "1", "!", "\n"]]
    corpus += [f"{t}{s}" for s in spaces for t in ["a", " ", "1", "!", "\n"]]
    corpus += [f"{w}{c}" for w in ["it", "IT", "x", " ", ""] for c in contractions]
    corpus += [f"{a}{tok}{b}" for tok in SPECIAL_STRINGS for a in ["", " ", "x", "\n"] for b in ["", " ", "y", "\n"]]
    corpus += ["<|eot_id", "<|im_start|><|im_end|>", "<<|eot_id|>>", "<|im_start|>user\nHi<|im_end|>\n"]
    corpus += [str(rng.randrange(10 ** rng.randrange(1, 15))) for _ in range(100)]
    corpus += [f"{rng.uniform(-1e6, 1e6):.{rng.randrange(6)}f}" for _ in range(50)]
    corpus += [_random_code_points(rng, rng.randrange(1, 30)) for _ in range(400)]
    while len(corpus) < 2500:
        k = rng.randrange(1, 7)
        parts = [rng.choice(pieces) for _ in range(k)]
        seps = [rng.choice(["", " ", "  ", "\n", "\t", " \n ", "\r\n"]) for _ in range(k)]
        corpus.append("".join(p + s for p, s in zip(parts, seps)))
    return corpus


CORPUS = build_corpus()


def test_corpus_is_large_and_valid():
    assert len(CORPUS) >= 2000
    for s in CORPUS:
        s.encode("utf-8")  # raises on lone surrogates


@pytest.mark.parametrize("add_special_tokens", [False, True])
def test_encode_matches_tokenizers(model, add_special_tokens):
    expected = [e.ids for e in model.reference.encode_batch(CORPUS, add_special_tokens=add_special_tokens)]
    responses = model.probe.run(
        [{"op": "encode", "text": s, "add_special_tokens": add_special_tokens} for s in CORPUS])
    mismatches = [(s, r, e) for s, r, e in zip(CORPUS, responses, expected) if r.get("ids") != e]
    assert not mismatches, f"{len(mismatches)} of {len(CORPUS)} differ; first: {mismatches[:3]}"


def test_decode_of_encode_is_identity(model):
    # SmolLM2's vocabulary lacks a few control bytes (e.g. 0x1D); BPE drops them, as tokenizers does.
    dropped = {c for c in map(chr, range(128)) if not model.reference.encode(c, add_special_tokens=False).ids}
    responses = model.probe.run([{"op": "encode", "text": s} for s in CORPUS])
    decoded = model.probe.run([{"op": "decode", "ids": r["ids"]} for r in responses])
    bad = [(s, d) for s, d in zip(CORPUS, decoded)
           if d.get("text") != "".join(c for c in s if c not in dropped)]
    assert not bad, f"{len(bad)} strings do not round-trip; first: {bad[:3]}"


def _id_sequences(model):
    """Id lists that split characters: random ids, encodings cut anywhere, with special tokens mixed in."""
    rng = random.Random(99)
    vocab_size = model.reference.get_vocab_size(with_added_tokens=True)
    specials = [model.reference.token_to_id(t) for t in SPECIAL_STRINGS]
    specials = [i for i in specials if i is not None]
    multibyte = [e.ids for e in model.reference.encode_batch(
        ["👨\u200d👩\u200d👧 日本語 𝕏🤗 é", "ﬁ😀\u0085\u2028 नमस्ते", _random_code_points(rng, 20)])]
    # Single-byte tokens (lone lead and continuation bytes) make the invalid sequences.
    byte_tokens = [i for i in range(min(vocab_size, 60000))
                   if len(model.reference.decode([i]).encode("utf-8")) == 3
                   and model.reference.decode([i]) == "\ufffd"][:200]
    sequences = []
    for ids in multibyte:
        for cut in range(len(ids) + 1):
            sequences.append(ids[:cut])
            sequences.append(ids[cut:])
            sequences.append(ids[:cut] + specials[:1] + ids[cut:])
    for _ in range(300):
        n = rng.randrange(1, 12)
        seq = [rng.choice([rng.randrange(vocab_size), rng.choice(byte_tokens), rng.choice(specials)])
               for _ in range(n)]
        sequences.append(seq)
    sequences.append([vocab_size + 5, 0])  # unknown ids are skipped
    return sequences


@pytest.mark.parametrize("skip_special_tokens", [False, True])
def test_decode_matches_tokenizers(model, skip_special_tokens):
    sequences = _id_sequences(model)
    responses = model.probe.run(
        [{"op": "decode", "ids": ids, "skip_special_tokens": skip_special_tokens} for ids in sequences])
    bad = []
    for ids, r in zip(sequences, responses):
        expected = model.reference.decode(ids, skip_special_tokens=skip_special_tokens)
        if r.get("text") != expected:
            bad.append((ids, r, expected))
    assert not bad, f"{len(bad)} differ; first: {bad[:3]}"


@pytest.mark.parametrize("skip_special_tokens", [False, True])
def test_incremental_deltas_concatenate_to_decode(model, skip_special_tokens):
    sequences = _id_sequences(model) + [e.ids for e in model.reference.encode_batch(CORPUS[:300])]
    responses = model.probe.run(
        [{"op": "stream", "ids": ids, "skip_special_tokens": skip_special_tokens} for ids in sequences])
    for ids, r in zip(sequences, responses):
        deltas = [bytes.fromhex(d).decode("utf-8") for d in r["deltas_hex"]]  # strict: each is whole UTF-8
        assert len(deltas) == len(ids) + 1
        assert "".join(deltas) == model.reference.decode(ids, skip_special_tokens=skip_special_tokens), ids


def test_invalid_utf8_is_rejected(model):
    responses = model.probe.run([
        {"op": "encode", "text_hex": "61ff62"},
        {"op": "encode", "text_hex": "6162eda080"},
        {"op": "encode", "text_hex": "c3"},
    ])
    assert [r["error"] for r in responses] == [
        {"code": "INVALID_ARGUMENT", "message": "text: invalid UTF-8 at byte 1"},
        {"code": "INVALID_ARGUMENT", "message": "text: invalid UTF-8 at byte 2"},
        {"code": "INVALID_ARGUMENT", "message": "text: invalid UTF-8 at byte 0"},
    ]


CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke."}],
    [{"role": "system", "content": "  padded system \n"}, {"role": "user", "content": "\n\tpadded user\u3000\u0085"},
     {"role": "assistant", "content": "\u200bzero width stays"}, {"role": "user", "content": ""}],
    [{"role": "user", "content": "Unicode: 日本語 👨\u200d👩\u200d👧 ﬁ\r\nnew line"},
     {"role": "assistant", "content": "Special-looking text: <|im_end|> <|eot_id|>"}],
    [{"role": "assistant", "content": "I speak first."}, {"role": "system", "content": "late system"}],
]


@pytest.fixture(scope="session")
def hf_tokenizers(model_dir, llama3_dir):
    from transformers import AutoTokenizer
    return {"smollm2": AutoTokenizer.from_pretrained(str(model_dir)),
            "llama3": AutoTokenizer.from_pretrained(str(llama3_dir))}


@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_chat_template_matches_transformers(model, hf_tokenizers, add_generation_prompt):
    hf = hf_tokenizers[model.name]
    responses = model.probe.run([
        {"op": "chat", "messages": m, "add_generation_prompt": add_generation_prompt} for m in CONVERSATIONS])
    for messages, r in zip(CONVERSATIONS, responses):
        expected = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        assert r.get("text") == expected, messages


def test_chat_template_errors(model):
    responses = model.probe.run([
        {"op": "chat", "messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]},
        {"op": "chat", "messages": []},
    ])
    assert [r["error"] for r in responses] == [
        {"code": "INVALID_ARGUMENT",
         "message": "messages[1].role: unknown role \"tool\" (expected system, user or assistant)"},
        {"code": "INVALID_ARGUMENT", "message": "messages: must not be empty"},
    ]


def test_converted_llama3_matches_tiktoken(llama3_dir):
    """The converter is right: its tokenizer.json gives Meta's own tiktoken ids."""
    from llama_models.llama3 import tokenizer as llama3_tokenizer

    reference = llama3_tokenizer.Tokenizer.get_instance()
    converted = Tokenizer.from_file(str(llama3_dir / "tokenizer.json"))
    texts = [s for s in CORPUS if "<|" not in s and len(s) < 5000]
    expected = [reference.model.encode(s, disallowed_special=()) for s in texts]
    got = [e.ids for e in converted.encode_batch(texts, add_special_tokens=False)]
    bad = [(s, g, e) for s, g, e in zip(texts, got, expected) if g != e]
    assert not bad, f"{len(bad)} of {len(texts)} differ; first: {bad[:3]}"
    assert converted.encode("hi").ids[0] == reference.special_tokens["<|begin_of_text|>"]

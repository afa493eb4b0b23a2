"""Preference pairs for training a PRM: the JSONL format, its validation, and the prompt the server renders.

One pair per line: {"principle", "prompt" | "messages", "chosen", "rejected", "source"}, and optionally
"chosen_finished" / "rejected_finished" (default true). `prompt` is the user's instruction as plain text;
`messages` a chat ([{"role", "content"}], the last one from the user). An answer that is not finished is the
start of a longer one that a length limit cut: training gives it no end-of-sequence token, so the PRM does
not learn that answers end where the sampler stopped.
Neither holds the guideline text: `render_prompt` adds it exactly as pad_server does at decode time
(lib/decode/pad_decoder.cc), so the PRM is trained on the contexts it will score.
"""
import json
import pathlib

GUIDELINE = ("[Guidelines] Your task is to generate response by considering the following principle. "
             "[Principles] {principles} [Instruction] {instruction}")
ROLES = ("system", "user", "assistant")
FIELDS = ("principle", "prompt", "messages", "chosen", "rejected", "source", "chosen_finished", "rejected_finished")


class PairError(ValueError):
    """A line of a pairs file that is not a valid preference pair; the message names file, line and field."""


def guideline_text(principles, instruction):
    """The guideline in front of the instruction; several principles are joined with " and " (DESIGN.md 1)."""
    return GUIDELINE.format(principles=" and ".join(principles), instruction=instruction)


def _check_text(where, pair, field):
    value = pair.get(field)
    if not isinstance(value, str) or not value.strip():
        raise PairError(f"{where}: {field}: must be a non-empty string")


def validate_pair(pair, where):
    """Raises PairError naming `where` (file:line) and the field when `pair` is not a valid pair."""
    if not isinstance(pair, dict):
        raise PairError(f"{where}: must be a JSON object")
    for field in ("principle", "chosen", "rejected", "source"):
        _check_text(where, pair, field)
    if ("prompt" in pair) == ("messages" in pair):
        raise PairError(f"{where}: prompt: exactly one of prompt and messages must be given")
    if "prompt" in pair:
        _check_text(where, pair, "prompt")
    else:
        messages = pair["messages"]
        if not isinstance(messages, list) or not messages:
            raise PairError(f"{where}: messages: must be a non-empty list")
        for i, message in enumerate(messages):
            if (not isinstance(message, dict) or message.get("role") not in ROLES or
                    not isinstance(message.get("content"), str)):
                raise PairError(f"{where}: messages[{i}]: must be {{\"role\": system|user|assistant, "
                                f"\"content\": string}}")
        if messages[-1]["role"] != "user":
            raise PairError(f"{where}: messages: the last message must be the user's")
    if pair["chosen"] == pair["rejected"]:
        raise PairError(f"{where}: rejected: equals chosen")
    for field in ("chosen_finished", "rejected_finished"):
        if not isinstance(pair.get(field, True), bool):
            raise PairError(f"{where}: {field}: must be true or false")
    unknown = set(pair) - set(FIELDS)
    if unknown:
        raise PairError(f"{where}: {sorted(unknown)[0]}: unknown field")


def load_pairs(path):
    """All pairs of a JSONL file, validated; a bad line raises PairError("FILE:LINE: FIELD: why")."""
    path = pathlib.Path(path)
    pairs = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                pair = json.loads(line)
            except json.JSONDecodeError as e:
                raise PairError(f"{where}: not JSON: {e.msg}") from None
            validate_pair(pair, where)
            pairs.append(pair)
    if not pairs:
        raise PairError(f"{path}: holds no pairs")
    return pairs


def messages_of(pair):
    """The chat a pair's prompt stands for."""
    return [dict(m) for m in pair["messages"]] if "messages" in pair else [{"role": "user",
                                                                            "content": pair["prompt"]}]


def render_prompt(tokenizer, principles, prompt=None, messages=None):
    """The text the server's PAD and PREFERENCE_PROMPT contexts hold: the guideline wraps the last user message,
    then the model's chat template with the assistant's turn opened. principles=None renders the vanilla
    context (no guideline)."""
    messages = [dict(m) for m in messages] if messages is not None else [{"role": "user", "content": prompt}]
    if principles is not None:
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[last_user]["content"] = guideline_text(principles, messages[last_user]["content"])
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def tokenizer_input(tokenizer, text):
    """`text` such that tokenizer(text) gives the ids of apply_chat_template(tokenize=True).

    A template that writes the BOS token itself (Llama-3) would get a second one from a tokenizer that also
    adds it; TRL tokenizes prompts with add_special_tokens on, so the template's copy is left out here.
    """
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and tokenizer("", add_special_tokens=True)["input_ids"][:1] == [
            tokenizer.bos_token_id]:
        return text[len(bos):]
    return text


def prompt_ids(tokenizer, principles, pair):
    """The ids the PRM sees before the answer: what pad_server's PRM row holds for this pair's request."""
    text = render_prompt(tokenizer, principles, messages=messages_of(pair))
    return tokenizer(tokenizer_input(tokenizer, text))["input_ids"]


def dpo_rows(tokenizer, pairs):
    """TRL's non-conversational preference format: prompt text (guideline and template applied), chosen and
    rejected answers (TRL appends the end-of-sequence token; train_prm.py takes it off an unfinished one),
    and whether each is finished."""
    return [{
        "prompt": tokenizer_input(tokenizer, render_prompt(tokenizer, [p["principle"]], messages=messages_of(p))),
        "chosen": p["chosen"].strip(),
        "rejected": p["rejected"].strip(),
        "chosen_finished": p.get("chosen_finished", True),
        "rejected_finished": p.get("rejected_finished", True),
    } for p in pairs]

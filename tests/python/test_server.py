"""Black-box tests of pad_server: the real binary over loopback, driven by grpcio, checked against the library's
own output (build/tests/pad_probe), promtool/Prometheus, grpc health and reflection, and openssl certificates."""
import json
import math
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from conftest import probe
from server_fixture import Server, free_port, load_stubs, wait_for

QUESTION = [{"role": "user", "content": "What is a good way to spend a rainy afternoon?"}]


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """(pad_pb2, pad_pb2_grpc), generated from proto/pad/v1/pad.proto."""
    return load_stubs(tmp_path_factory.mktemp("stubs"))


@pytest.fixture(scope="module")
def server(model_dir):
    """The shared server: room for 16 concurrent PAD streams, small prompt limit for the error table."""
    s = Server(model_dir, "--kv_slots=40", "--max_prompt_tokens=256", "--shutdown_grace_s=10")
    yield s
    s.stop_and_check()


def stub_of(pb, channel):
    return pb[1].PadServiceStub(channel)


def to_proto(pb, spec):
    """The GenerateAlignedRequest for a request in pad_probe's JSON form."""
    pad_pb2 = pb[0]
    modes = {"pad": pad_pb2.DECODING_MODE_PAD, "vanilla": pad_pb2.DECODING_MODE_VANILLA,
             "preference_prompt": pad_pb2.DECODING_MODE_PREFERENCE_PROMPT}
    weights = spec.get("weights", [])
    principles = [pad_pb2.Principle(text=t, weight=weights[i]) if i < len(weights) else pad_pb2.Principle(text=t)
                  for i, t in enumerate(spec.get("principles", []))]
    preference = pad_pb2.Preference(
        principles=principles, reward_model=spec.get("reward_model", ""),
        composition=(pad_pb2.COMPOSITION_WEIGHTED if spec.get("composition") == "weighted"
                     else pad_pb2.COMPOSITION_PROMPT))
    if "policy_sees_guideline" in spec:
        preference.policy_sees_guideline = spec["policy_sees_guideline"]
    decoding = pad_pb2.DecodingParams(mode=modes[spec.get("mode", "pad")], temperature=spec.get("temperature", 0.0),
                                      seed=spec.get("seed", 0), stop=spec.get("stop", []),
                                      ignore_eos=spec.get("ignore_eos", False))
    for field in ("top_k", "beta", "max_new_tokens"):
        if field in spec:
            setattr(decoding, field, spec[field])
    return pad_pb2.GenerateAlignedRequest(
        prompt=spec.get("prompt", ""),
        messages=[pad_pb2.ChatMessage(role=m["role"], content=m["content"]) for m in spec.get("messages", [])],
        preference=preference, decoding=decoding)


def library_results(model_dir, specs):
    """pad_probe's answers for specs, decoded one at a time, with the server's default (identity) PRM."""
    request = {"command": "generate", "policy": str(model_dir), "dtype": "float32",
               "reward_models": [{"name": "default"}], "requests": specs, "batched": False}
    result = subprocess.run([probe("pad_probe")], input=json.dumps(request), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)["results"]
    for r in results:
        assert "error" not in r, r
    return results


def collect(responses):
    """(text, final, number of messages) of a finished stream."""
    text, final, count = "", None, 0
    for message in responses:
        count += 1
        assert final is None, "a message after the final one"
        text += message.text
        if message.HasField("final"):
            final = message.final
    return text, final, count


def generate(pb, channel, spec, **kwargs):
    return collect(stub_of(pb, channel).GenerateAligned(to_proto(pb, spec), **kwargs))


def spec(mode, max_new_tokens=16, **fields):
    return {"messages": QUESTION, "mode": mode, "max_new_tokens": max_new_tokens, "ignore_eos": True,
            "temperature": 0.0, **fields}


# --- 1. Streams equal the library's output ---------------------------------------------------------------------

PARITY = {
    "vanilla": spec("vanilla"),
    "pad": spec("pad", principles=["humor"]),
    "weighted": spec("pad", principles=["humor", "harmless"], weights=[0.7, 0.3], composition="weighted"),
}


@pytest.fixture(scope="module")
def parity_library(model_dir):
    return dict(zip(PARITY, library_results(model_dir, list(PARITY.values()))))


@pytest.mark.parametrize("name", list(PARITY))
def test_stream_equals_library(pb, server, parity_library, name):
    text, final, count = generate(pb, server.channel, PARITY[name], timeout=120)
    expected = parity_library[name]
    assert expected["finish_reason"] == "length"
    assert text == expected["text"]
    assert count >= 2, "the answer should stream in pieces"
    assert final is not None
    assert final.finish_reason == pb[0].FINISH_REASON_LENGTH
    assert final.usage.generated_tokens == PARITY[name]["max_new_tokens"]
    assert final.usage.prompt_tokens == expected["prompt_tokens"]

"""The Python client package (client/python, pad-client): its committed stubs are what protoc makes of today's
proto; it builds as a wheel and, installed alone into a fresh directory and run in its own interpreter, streams
the same answers as grpcio's raw stubs, synchronously and with asyncio, against the real server."""
import filecmp
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from server_fixture import Server, collect, stub_of, to_proto, wait_for

CLIENT = ROOT / "client" / "python"
TOKEN = "client-token"
QUESTION = [{"role": "user", "content": "What is a good way to spend a rainy afternoon?"}]

# Run by the installed package's own interpreter; prints one JSON object.
SCRIPT = r"""
import asyncio, json, sys
import grpc
from pad_client import AsyncPadClient, Delta, Final, PadClient

target, token, messages = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
out = {"module": __import__("pad_client").__file__}
with PadClient(target, token=token) as client:
    events = list(client.generate_aligned(messages, principles=["humorous"], max_new_tokens=16, return_tokens=True))
    out["text"] = "".join(e.text for e in events if isinstance(e, Delta))
    out["tokens"] = sum(len(e.tokens) for e in events if isinstance(e, Delta))
    final = events[-1]
    out["final"] = [type(final).__name__, final.finish_reason, final.usage.generated_tokens]
    out["reward_models"] = [m.name for m in client.list_models().reward_models]
    for event in client.generate_aligned(messages, mode="vanilla", max_new_tokens=400, ignore_eos=True):
        break  # leaving the loop cancels the request
    try:
        list(client.generate_aligned(messages, principles=["humorous"], top_k=0))
    except grpc.RpcError as error:
        out["error"] = [error.code().name, error.details()]
    with PadClient(target) as anonymous:
        try:
            anonymous.list_models()
        except grpc.RpcError as error:
            out["no_token"] = error.code().name

async def main():
    async with AsyncPadClient(target, token=token) as client:
        text = ""
        async for event in client.generate_aligned(messages, principles=["humorous"], max_new_tokens=16):
            if isinstance(event, Delta):
                text += event.text
        out["async_text"] = text
        out["async_models"] = len((await client.list_models()).reward_models)

asyncio.run(main())
print(json.dumps(out))
"""


def test_committed_stubs_are_current(tmp_path):
    sys.path.insert(0, str(CLIENT))
    try:
        import generate
    finally:
        sys.path.remove(str(CLIENT))
    generate.generate(tmp_path)
    for name in generate.FILES:
        assert filecmp.cmp(tmp_path / name, CLIENT / "pad_client" / "v1" / name, shallow=False), \
            f"{name} is stale: run python client/python/generate.py"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package built as a wheel and installed, without its dependencies (the venv has them), into a fresh
    directory."""
    work = tmp_path_factory.mktemp("pad_client")
    # Built from a copy: setuptools leaves build/ and *.egg-info beside the sources.
    shutil.copytree(CLIENT, work / "src", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(work / "wheels"), str(work / "src")], check=True, timeout=300)
    wheels = list((work / "wheels").glob("pad_client-*.whl"))
    assert len(wheels) == 1, wheels
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(work / "site"),
                    str(wheels[0])], check=True, timeout=300)
    return work / "site"


def test_client_streams_what_grpc_streams(model_dir, installed, tmp_path, pb):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    server = Server(model_dir, f"--auth_token_file={token_file}", metadata=(("authorization", f"Bearer {TOKEN}"),))
    try:
        result = subprocess.run([sys.executable, "-c", SCRIPT, server.address, TOKEN, json.dumps(QUESTION)],
                                capture_output=True, text=True, timeout=300, cwd=installed.parent,
                                env={**os.environ, "PYTHONPATH": str(installed)})
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        assert out["module"].startswith(str(installed))  # the installed copy, not the source tree
        expected, final, _ = collect(stub_of(pb, server.channel).GenerateAligned(
            to_proto(pb, {"messages": QUESTION, "principles": ["humorous"], "max_new_tokens": 16}),
            timeout=120, metadata=server.metadata))
        assert out["text"] == out["async_text"] == expected and expected
        assert out["final"] == ["Final", "length" if final.usage.generated_tokens == 16 else "stop",
                                final.usage.generated_tokens]
        assert out["tokens"] == final.usage.generated_tokens
        assert out["reward_models"] == ["default"] and out["async_models"] == 1
        assert out["error"][0] == "INVALID_ARGUMENT" and out["error"][1].startswith("decoding.top_k: ")
        assert out["no_token"] == "UNAUTHENTICATED"
        assert wait_for(lambda: server.metric("pad_requests_running") == 0)
        assert server.metric("pad_requests_total", protocol="grpc", status="cancelled") == 1
    finally:
        server.stop_and_check()

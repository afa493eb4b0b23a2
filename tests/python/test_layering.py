"""The server is a thin layer over libpad's engine: none of its files may pull in ATen's headers (they are
most of a model file's compile time, and the engine's public API does not need them)."""
import json
import shlex
import subprocess

import pytest

from conftest import BUILD, ROOT


def dependencies(entry):
    """The headers one translation unit includes, by the compiler's own -M, with its exact flags."""
    args, skip = [], False
    for arg in shlex.split(entry["command"]):
        if skip:
            skip = False
        elif arg == "-o":
            skip = True
        elif arg != "-c":
            args.append(arg)
    result = subprocess.run(args + ["-M"], cwd=entry["directory"], capture_output=True, text=True, check=True)
    return result.stdout


def test_server_includes_no_aten():
    path = BUILD / "compile_commands.json"
    if not path.exists():
        pytest.fail(f"{path} is missing; run ./scripts/test.sh")
    entries = [e for e in json.loads(path.read_text())
               if e["file"].startswith(str(ROOT / "server")) and not e["file"].endswith("_test.cc")]
    assert len(entries) >= 4, [e["file"] for e in entries]
    for entry in entries:
        headers = [h for h in dependencies(entry).split() if "/ATen/" in h]
        assert not headers, f"{entry['file']} includes {headers[:3]}"

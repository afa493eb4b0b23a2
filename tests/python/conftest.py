"""Shared fixtures: where the build, the small model and the probe programs are."""
import pathlib
import sys

import pytest

# The Python client (pad_client) and the server launcher (pad_server_process) of every test.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "client" / "python"))
from pad_server_process import BUILD, MODEL, ROOT  # noqa: E402,F401  (re-exported to the tests)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cpu_dependent: numbers that depend on the CPU's instruction set (logits, greedy answers); "
        "scripts/test.sh runs these again capped to AVX2 on an AVX-512 host (docs/testing.md)")


def probe(name):
    """Path of a built probe program under build/tests/."""
    path = BUILD / "tests" / name
    if not path.exists():
        pytest.fail(f"{path} is not built; run ./scripts/test.sh")
    return path


@pytest.fixture(scope="session")
def model_dir():
    if not (MODEL / "config.json").exists():
        pytest.fail(f"{MODEL} is missing; run ./scripts/setup.sh")
    return MODEL


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """(pad_pb2, pad_pb2_grpc), generated from proto/pad/v1/pad.proto."""
    from server_fixture import load_stubs  # noqa: E402  (server_fixture imports this module)
    return load_stubs(tmp_path_factory.mktemp("stubs"))

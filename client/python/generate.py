"""Regenerates pad_client/v1/ from proto/pad/v1/pad.proto with grpc_tools.protoc (the stubs are committed, so
that the package installs without protoc; tests/python/test_python_client.py checks they are current).

    python client/python/generate.py [OUT_DIR]
"""
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = pathlib.Path(__file__).resolve().parent / "pad_client" / "v1"
FILES = ["pad_pb2.py", "pad_pb2.pyi", "pad_pb2_grpc.py"]


def generate(out_dir):
    """Writes FILES into out_dir, importing each other as pad_client.v1 instead of protoc's pad.v1."""
    out_dir = pathlib.Path(out_dir)
    with tempfile.TemporaryDirectory() as work:
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "proto"), f"--python_out={work}",
                        f"--pyi_out={work}", f"--grpc_python_out={work}", "pad/v1/pad.proto"], check=True)
        for name in FILES:
            text = (pathlib.Path(work) / "pad" / "v1" / name).read_text()
            (out_dir / name).write_text(text.replace("from pad.v1 import", "from pad_client.v1 import"))


if __name__ == "__main__":
    generate(sys.argv[1] if len(sys.argv) > 1 else PACKAGE)

"""The checkout's own pad_server binary as a child process on free loopback ports: the one launcher that the
tests, the benchmarks, the evaluation and the training data all use to start, wait for and stop it.

    from pad_server_process import PadServerProcess
    with PadServerProcess("--kv_slots=8", "--reward_models=demo=:prm/SmolLM2-135M-PAD-demo") as server:
        for event in server.client.generate_aligned(prompt="Tell me about owls", principles=["concise"]):
            ...

Not part of the pad-client package (pyproject.toml ships only pad_client): it runs a build of this repository.
It sits beside pad_client so that the one sys.path entry a script needs for the client, client/python, gives
it the launcher too.
"""
import functools
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import grpc

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("PAD_BUILD", ROOT / "build"))
SERVER_BINARY = BUILD / "server" / "pad_server"
MODEL = pathlib.Path(os.environ.get("PAD_MODEL", ROOT / "models" / "SmolLM2-135M-Instruct"))

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exit_on_sigterm():
    """Makes SIGTERM exit this process through Python's cleanup (SystemExit), so that a `with
    PadServerProcess(...)` block stops its pad_server rather than leaving it running when the script is killed.
    Python runs the handler when the main thread next runs an instruction: a main thread blocked for minutes
    in one C call (time.sleep(600)) exits only after it, since the signal may have gone to another thread."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


class PadServerProcess:
    """One pad_server process, SERVING when the constructor returns (else it is stopped and RuntimeError says
    why, with its log): gRPC on `address` (`port`), HTTP (/metrics, /healthz, /readyz) on `http_port`.

    `flags` follow --policy=`policy` and the listen addresses, so a flag given twice takes the later value (as
    abseil parses them). `env` is added to this process's environment for it (e.g. OMP_NUM_THREADS); relative
    paths in flags are relative to `cwd` (None: this process's). stdout and stderr go to `output` (a file
    descriptor or file) or, by default, to a temporary file that logs() reads. `credentials`
    (grpc.ssl_channel_credentials) for a server started with --tls_cert. A context manager; stop() on exit.
    """

    def __init__(self, *flags, policy=MODEL, env=None, cwd=ROOT, output=None, credentials=None, ready_timeout=300):
        if not SERVER_BINARY.exists():
            raise RuntimeError(f"{SERVER_BINARY} is not built; run ./scripts/test.sh")
        self.port, self.http_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.credentials = credentials
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [str(SERVER_BINARY), f"--policy={policy}", f"--listen={self.address}",
             f"--http_listen=127.0.0.1:{self.http_port}", *flags],
            stdout=self.log if output is None else output, stderr=subprocess.STDOUT, cwd=cwd,
            env=dict(os.environ, **(env or {})))
        self.channel = self.new_channel()
        try:
            self.wait_serving(ready_timeout)
        except BaseException:
            self.stop()
            raise

    def new_channel(self):
        """A raw gRPC channel to the server (health checks, grpcio's own stubs)."""
        if self.credentials is not None:
            return grpc.secure_channel(self.address, self.credentials)
        return grpc.insecure_channel(self.address)

    @functools.cached_property
    def client(self):
        """A pad_client.PadClient on the server, made on first use: the tests load stubs of their own for the
        same proto, and a pad_client out of step with it should fail only what uses it."""
        from pad_client import PadClient  # noqa: PLC0415
        return PadClient(self.address, credentials=self.credentials)

    def logs(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def health(self, service="", metadata=None, timeout=2.0):
        """The gRPC health service's status for `service` ("": the whole server)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415  (grpcio-health-checking)
        stub = health_pb2_grpc.HealthStub(self.channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout,
                          metadata=metadata).status

    def wait_serving(self, timeout):
        from grpc_health.v1 import health_pb2  # noqa: PLC0415
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pad_server exited with {self.process.returncode}:\n{self.logs()}")
            try:
                if self.health() == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"pad_server not SERVING after {timeout} s:\n{self.logs()}")

    def http(self, path):
        """(status, body) of GET path on the HTTP port."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics_text(self):
        status, body = self.http("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}: {body}")
        return body

    def metric(self, name, **labels):
        """The sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
        total = 0.0
        for line in self.metrics_text().splitlines():
            if line.startswith("#"):
                continue
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
            if not m or m.group(1) != name:
                continue
            have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(m.group(3))
        return total

    def terminate(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout=30):
        """SIGTERM, then the exit code (None if it had to be killed after `timeout` seconds)."""
        self.terminate()
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None
        if "client" in self.__dict__:
            self.client.close()
        self.channel.close()
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        self.log.close()
        return False

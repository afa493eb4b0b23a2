"""pad_server replicas behind Debian's HAProxy, for tests/python/test_replicas.py and bench/bench_replicas.py:
the processes, and HAProxy's configuration as an L4 balancer (a replica per connection, as kube-proxy does
for a ClusterIP Service) or an L7 proxy (a replica per request)."""
import shutil
import socket
import subprocess

from server_fixture import Server, free_port, wait_for

HAPROXY = shutil.which("haproxy")
SMALL = ("--kv_slots=12", "--max_seq_len=256", "--max_prompt_tokens=128", "--reward_models=")


class Replicas:
    """`n` pad_server processes, each with a probe listener (`probe_ports`)."""

    def __init__(self, model_dir, n, *flags, env=None):
        self.probe_ports = [free_port() for _ in range(n)]
        self.servers = []
        try:
            for port in self.probe_ports:
                self.servers.append(Server(model_dir, *SMALL, f"--probe_listen=127.0.0.1:{port}", *flags, env=env))
        except Exception:
            self.stop()
            raise

    def requests(self, protocol):
        """Requests each replica has finished (any status), by protocol."""
        return [s.metric("pad_requests_total", protocol=protocol) if s.process.poll() is None else None
                for s in self.servers]

    def stop(self):
        for s in self.servers:
            if s.process.poll() is None:
                s.stop()


class Haproxy:
    """HAProxy in the foreground on `config` (its text); stopped by stop()."""

    def __init__(self, config, tmp_path, wait_ports):
        path = tmp_path / "haproxy.cfg"
        path.write_text(config)
        subprocess.run([HAPROXY, "-c", "-q", "-f", str(path)], check=True)
        self.process = subprocess.Popen([HAPROXY, "-db", "-f", str(path)], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        for port in wait_ports:
            assert wait_for(lambda: _listening(port) or self.process.poll() is not None), port
            assert self.process.poll() is None, self.process.stdout.read()

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


DEFAULTS = """
global
  maxconn 1000
defaults
  timeout connect 5s
  timeout client 600s
  timeout server 600s
  timeout tunnel 600s
"""


def tcp_config(replicas, grpc_port, http_port):
    """L4 round robin, a replica per connection, as kube-proxy does for a ClusterIP Service."""
    lines = [DEFAULTS, "frontend grpc", "  mode tcp", f"  bind 127.0.0.1:{grpc_port}", "  default_backend grpc",
             "backend grpc", "  mode tcp", "  balance roundrobin"]
    lines += [f"  server r{i} {s.address}" for i, s in enumerate(replicas.servers)]
    lines += ["frontend http", "  mode tcp", f"  bind 127.0.0.1:{http_port}", "  default_backend http",
              "backend http", "  mode tcp", "  balance roundrobin"]
    lines += [f"  server r{i} 127.0.0.1:{s.http_port}" for i, s in enumerate(replicas.servers)]
    return "\n".join(lines) + "\n"


def l7_config(replicas, grpc_port, http_port):
    """Per request: HTTP/2 both sides for gRPC, HTTP/1.1 for the OpenAI API; leastconn (streams are long and
    uneven); a replica whose /readyz fails (draining, dead) leaves the rotation within 200 ms."""
    check = "check port {probe} check-proto h1 inter 200ms fall 1 rise 2"
    lines = [DEFAULTS, "frontend grpc", "  mode http", f"  bind 127.0.0.1:{grpc_port} proto h2",
             "  default_backend grpc", "backend grpc", "  mode http", "  balance leastconn",
             "  option httpchk GET /readyz", "  http-check expect status 200"]
    lines += [f"  server r{i} {s.address} proto h2 " + check.format(probe=p)
              for i, (s, p) in enumerate(zip(replicas.servers, replicas.probe_ports))]
    lines += ["frontend http", "  mode http", f"  bind 127.0.0.1:{http_port}", "  default_backend http",
              "backend http", "  mode http", "  balance leastconn", "  option httpchk GET /readyz",
              "  http-check expect status 200"]
    lines += [f"  server r{i} 127.0.0.1:{s.http_port} " + check.format(probe=p)
              for i, (s, p) in enumerate(zip(replicas.servers, replicas.probe_ports))]
    return "\n".join(lines) + "\n"

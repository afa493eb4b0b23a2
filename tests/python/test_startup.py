"""pad_server at start-up, black-box: a missing, truncated or mismatched file, an unreadable TLS key or a port
in use ends the process with a non-zero code and one line naming the file or address, and it never reports
ready. Also mutual TLS: a client certificate from the configured CA is served, any other is refused."""
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import grpc
import pytest

from server_fixture import PATIENCE, SERVER, Server, free_port, load_stubs


def start_and_fail(model_dir, *flags, timeout=120):
    """Runs pad_server expecting it to fail; (exit code, its output, whether /readyz ever answered 200)."""
    http_port = free_port()
    args = [str(SERVER), f"--policy={model_dir}", f"--listen=127.0.0.1:{free_port()}",
            f"--http_listen=127.0.0.1:{http_port}", *flags]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready, deadline = False, time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1) as r:
                ready |= r.status == 200
        except OSError:
            pass
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
    output = process.communicate()[0]
    return process.returncode, output, ready


def error_lines(output):
    return [line for line in output.splitlines() if "pad_server:" in line and not line.startswith(
        ("pad_server: gRPC on", "pad_server: signal", "pad_server: stopped"))]


def assert_fails_naming(model_dir, flags, named):
    code, output, ready = start_and_fail(model_dir, *flags)
    assert code not in (0, None), output
    assert not ready, output
    lines = error_lines(output)
    assert len(lines) == 1 and named in lines[0], output
    return lines[0]


@pytest.fixture(scope="module")
def truncated_model(model_dir, tmp_path_factory):
    """SmolLM2 with its weights cut short: the header promises more bytes than the file has."""
    out = tmp_path_factory.mktemp("truncated")
    for name in os.listdir(model_dir):
        if name != "model.safetensors":
            os.symlink(model_dir / name, out / name)
    with open(model_dir / "model.safetensors", "rb") as src, open(out / "model.safetensors", "wb") as dst:
        dst.write(src.read(4 << 20))
    return out


def test_missing_policy(model_dir, tmp_path):
    line = assert_fails_naming(tmp_path / "nothing", [], str(tmp_path / "nothing" / "config.json"))
    assert "loading failed" in line


def test_truncated_weights(truncated_model):
    assert_fails_naming(truncated_model, [], str(truncated_model / "model.safetensors"))


def test_mismatched_adapter(model_dir, tmp_path):
    """A LoRA adapter for another model's shapes names the adapter file and the tensor."""
    import peft
    import transformers
    config = transformers.LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2)
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    peft.get_peft_model(transformers.LlamaForCausalLM(config), lora).save_pretrained(tmp_path / "adapter")
    line = assert_fails_naming(model_dir, [f"--reward_models=bad={model_dir}:{tmp_path / 'adapter'}"],
                               str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert "shape" in line


def test_unreadable_tls_key(model_dir, pki, tmp_path):
    cert, _ = pki["server"]
    assert_fails_naming(model_dir, [f"--tls_cert={cert}", f"--tls_key={tmp_path / 'missing.pem'}"],
                        str(tmp_path / "missing.pem"))


def test_tls_key_that_is_not_a_key(model_dir, pki, tmp_path):
    cert, _ = pki["server"]
    garbage = tmp_path / "key.pem"
    garbage.write_text("not a key\n")
    assert_fails_naming(model_dir, [f"--tls_cert={cert}", f"--tls_key={garbage}"], str(garbage))


@pytest.mark.parametrize("which", ["listen", "http_listen"])
def test_port_in_use(model_dir, which):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        assert_fails_naming(model_dir, [f"--{which}={address}"], address)


# --- KV caches sized from memory (--gpu_memory_fraction; on the CPU, of the host's memory) ---------------------

def smollm2_slot_bytes(model_dir, max_seq_len):
    """Keys and values of one slot in float32: 2 x layers x KV heads x tokens x head_dim x 4 bytes."""
    config = json.loads((model_dir / "config.json").read_text())
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    return 2 * config["num_hidden_layers"] * config["num_key_value_heads"] * max_seq_len * head_dim * 4


def test_memory_fraction_sizes_the_kv_cache_up_to_kv_slots(model_dir):
    # All of this machine's memory has room for far more than 3 sequences of 512 tokens: the pool is capped
    # at --kv_slots sequences at --max_seq_len, 3 x 512 / 16 blocks of 16 tokens.
    server = Server(model_dir, "--gpu_memory_fraction=1", "--kv_slots=3", "--max_seq_len=512")
    try:
        assert server.metric("pad_kv_cache_slots") == 3  # the default PRM shares the policy's cache
        assert server.metric("pad_kv_cache_blocks") == 96
        assert server.metric("pad_kv_cache_bytes") == 3 * smollm2_slot_bytes(model_dir, 512)
        ready = [line for line in server.logs().splitlines() if "pad_server: ready" in line]
        assert len(ready) == 1 and "96 blocks of 16 tokens" in ready[0] and "3 sequences of 512 tokens" in ready[0] \
            and "left for the KV caches" in ready[0], server.logs()
    finally:
        server.stop_and_check()


def test_kv_slots_without_memory_fraction(model_dir):
    server = Server(model_dir, "--kv_slots=2", "--max_seq_len=256")
    try:
        assert server.metric("pad_kv_cache_bytes") == 2 * smollm2_slot_bytes(model_dir, 256)
        assert "32 blocks of 16 tokens" in server.logs() and "(--kv_slots x --max_seq_len)" in server.logs()
    finally:
        server.stop_and_check()


def test_kv_cache_mib_sizes_the_pool_apart_from_kv_slots(model_dir):
    # 8 MiB of SmolLM2 float32 blocks (30 layers x 3 KV heads x 64 x 2 x 4 bytes = 45 KiB a token): 182
    # tokens' worth of 16-token blocks is 11 blocks; a pool smaller than one sequence at --max_seq_len fails.
    assert_fails_naming(model_dir, ["--kv_cache_mib=8", "--max_seq_len=256"],
                        "the KV cache holds 11 blocks of 16 tokens, less than one sequence of 256 tokens")
    block = smollm2_slot_bytes(model_dir, 16)
    server = Server(model_dir, "--kv_cache_mib=64", "--kv_slots=40", "--max_seq_len=256")
    try:
        assert server.metric("pad_kv_cache_blocks") == (64 << 20) // block
        assert server.metric("pad_kv_cache_slots") == 40
    finally:
        server.stop_and_check()


def test_cuda_graphs_give_each_cache_a_padding_block(model_dir):
    # The padding block that fixed-shape steps' padding rows write to is one block more than the pool.
    server = Server(model_dir, "--cuda_graphs", "--gpu_memory_fraction=1", "--kv_slots=2", "--max_seq_len=256")
    try:
        assert server.metric("pad_kv_cache_slots") == 2
        assert server.metric("pad_kv_cache_blocks") == 32
        assert server.metric("pad_kv_cache_bytes") == 2 * smollm2_slot_bytes(model_dir, 256) + \
            smollm2_slot_bytes(model_dir, 16)
    finally:
        server.stop_and_check()


def test_memory_fraction_with_no_room_fails_naming_the_numbers(model_dir):
    line = assert_fails_naming(model_dir, ["--gpu_memory_fraction=0.001"],
                               "the KV cache holds 0 blocks of 16 tokens, less than one sequence of 4096 tokens")
    assert "left for the KV caches 0.00 GiB: 0 blocks" in line, line


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan"])
def test_memory_fraction_out_of_range(model_dir, value):
    assert_fails_naming(model_dir, [f"--gpu_memory_fraction={value}"], "--gpu_memory_fraction")


@pytest.mark.parametrize("value", ["-1", "nan"])
def test_prefill_stall_ratio_below_zero(model_dir, value):
    assert_fails_naming(model_dir, [f"--prefill_stall_ratio={value}"], "--prefill_stall_ratio: must be at least 0")


# --- Mutual TLS -----------------------------------------------------------------------------------------------

def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(directory, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-days", "1",
            "-keyout", str(directory / f"{name}.key"), "-out", str(directory / f"{name}.pem"))
    return directory / f"{name}.pem", directory / f"{name}.key"


def make_signed(directory, name, ca, ca_key, extensions=""):
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.pem"
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr))
    ext = directory / f"{name}.ext"
    ext.write_text(extensions)
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "1", "-out", str(cert), "-extfile", str(ext))
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    assert shutil.which("openssl"), "openssl is missing"
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = make_ca(d, "ca")
    other_ca, other_key = make_ca(d, "other-ca")
    server = make_signed(d, "server", ca, ca_key, "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    client = make_signed(d, "client", ca, ca_key)
    stranger = make_signed(d, "stranger", other_ca, other_key)
    return {"ca": ca, "server": server, "client": client, "stranger": stranger}


@pytest.fixture(scope="module")
def mtls_server(model_dir, pki):
    (cert, key), (client_cert, client_key) = pki["server"], pki["client"]
    credentials = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes(),
                                               private_key=client_key.read_bytes(),
                                               certificate_chain=client_cert.read_bytes())
    s = Server(model_dir, f"--tls_cert={cert}", f"--tls_key={key}", f"--tls_client_ca={pki['ca']}",
               credentials=credentials)
    yield s
    s.stop_and_check()


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    return load_stubs(tmp_path_factory.mktemp("stubs"))


def list_models(pb, address, credentials):
    with grpc.secure_channel(address, credentials) as channel:
        return pb[1].PadServiceStub(channel).ListModels(pb[0].ListModelsRequest(), timeout=10)


def test_mtls_serves_a_client_of_the_ca(pb, mtls_server, pki):
    cert, key = pki["client"]
    credentials = grpc.ssl_channel_credentials(pki["ca"].read_bytes(), key.read_bytes(), cert.read_bytes())
    assert list_models(pb, mtls_server.address, credentials).policy


@pytest.mark.parametrize("client", ["stranger", None], ids=["other_ca", "no_certificate"])
def test_mtls_refuses_other_clients(pb, mtls_server, pki, client):
    if client is None:
        credentials = grpc.ssl_channel_credentials(pki["ca"].read_bytes())
    else:
        cert, key = pki[client]
        credentials = grpc.ssl_channel_credentials(pki["ca"].read_bytes(), key.read_bytes(), cert.read_bytes())
    with pytest.raises(grpc.RpcError) as error:
        list_models(pb, mtls_server.address, credentials)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE


def test_health_reads_not_serving_until_the_models_load(model_dir, tmp_path):
    """gRPC health (Check and Watch) reads NOT_SERVING from the first call until the models are loaded, then
    SERVING, then NOT_SERVING on SIGTERM; gRPC's built-in service would read SERVING as soon as the server
    listens. Loading is held at its first file: config.json is a FIFO the test writes when it is ready."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    policy = tmp_path / "policy"
    policy.mkdir()
    for name in os.listdir(model_dir):
        if name != "config.json":
            os.symlink(model_dir / name, policy / name)
    os.mkfifo(policy / "config.json")
    port, http_port = free_port(), free_port()
    process = subprocess.Popen([str(SERVER), f"--policy={policy}", "--reward_models=", f"--listen=127.0.0.1:{port}",
                                f"--http_listen=127.0.0.1:{http_port}"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = health_pb2_grpc.HealthStub(channel)
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    try:
        whole = stub.Watch(health_pb2.HealthCheckRequest(service=""), wait_for_ready=True, timeout=PATIENCE)
        api = stub.Watch(health_pb2.HealthCheckRequest(service="pad.v1.PadService"), wait_for_ready=True,
                          timeout=PATIENCE)
        assert next(whole).status == not_serving and next(api).status == not_serving
        assert stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=30).status == not_serving
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=30)
        assert error.value.code == 503
        # A service the server does not have: NOT_FOUND to Check; SERVICE_UNKNOWN to Watch, which stays open.
        with pytest.raises(grpc.RpcError) as error:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=30)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
        unknown = stub.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=PATIENCE)
        assert next(unknown).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN

        (policy / "config.json").write_text((model_dir / "config.json").read_text())  # loading goes on
        assert next(whole).status == serving and next(api).status == serving
        assert stub.Check(health_pb2.HealthCheckRequest(service="pad.v1.PadService"), timeout=30).status == serving
        process.send_signal(signal.SIGTERM)
        assert next(whole).status == not_serving and next(api).status == not_serving
        # Open watches do not hold the server up: it stops, and they end.
        assert process.wait(timeout=PATIENCE) == 0, process.stdout.read()
        for watch in (whole, api, unknown):
            with pytest.raises(grpc.RpcError):
                next(watch)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        channel.close()

"""The Kubernetes manifests (deploy/) and the Dockerfiles (docker/), checked offline: each overlay renders with
`kubectl kustomize`, every rendered object passes kubernetes-validate's strict schema for a pinned Kubernetes
version, the CPU overlay's flags start the real pad_server, and the images carry what pad_server loads."""
import copy
import re
import shlex
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from conftest import ROOT
from server_fixture import SERVER, Server

KUBERNETES = "1.30.0"
OVERLAYS = ["cpu", "gpu"]
DOCKERFILES = ["cpu", "cuda"]


def render(overlay):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is missing; run ./scripts/setup.sh")
    result = subprocess.run([kubectl, "kustomize", str(ROOT / "deploy" / "overlays" / overlay)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return {obj["kind"]: obj for obj in yaml.safe_load_all(result.stdout) if obj}


def flags_of(objects):
    """{name: value} of the overlay's pad_server flags (the ConfigMap that --flagfile reads)."""
    text = objects["ConfigMap"]["data"]["flags"]
    return dict(line.split("=", 1) for line in text.split())


def container(objects):
    return objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates(overlay):
    objects = render(overlay)
    assert set(objects) == {"ConfigMap", "Service", "Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler",
                            "ServiceMonitor"}
    for kind, obj in objects.items():
        if kind == "ServiceMonitor":  # a CRD: no schema in kubernetes-validate; checked below
            continue
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    # The flags ConfigMap is the one the Deployment mounts (kustomize appends its content hash).
    volumes = {v["name"]: v for v in objects["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["flags"]["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]


def test_strict_validation_refuses_unknown_fields():
    """Without this the validation above would prove nothing about typos."""
    deployment = copy.deepcopy(render("cpu")["Deployment"])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_flags_are_pad_server_flags_and_match_the_ports(overlay):
    objects = render(overlay)
    flags = flags_of(objects)
    help_text = subprocess.run([str(SERVER), "--helpfull"], capture_output=True, text=True, timeout=60).stdout
    for name in flags:
        assert re.search(rf"^\s+{re.escape(name)} \(", help_text, re.M), f"{name} is not a pad_server flag"
    ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    assert flags["--listen"].endswith(f":{ports['grpc']}") and flags["--http_listen"].endswith(f":{ports['http']}")
    service_ports = {p["name"]: p["targetPort"] for p in objects["Service"]["spec"]["ports"]}
    assert service_ports == {"grpc": "grpc", "http": "http"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_drain(overlay):
    objects = render(overlay)
    c = container(objects)
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] == "http" and c[probe]["timeoutSeconds"] >= 1
    # preStop, then the server's own drain, must end before the kubelet kills the pod.
    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = objects["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert int(pre_stop[1]) + float(flags_of(objects)["--shutdown_grace_s"]) + 5 <= grace


def test_gpu_overlay_asks_for_one_gpu_on_h100_nodes():
    objects = render("gpu")
    spec = objects["Deployment"]["spec"]["template"]["spec"]
    assert container(objects)["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "H100" in spec["nodeSelector"]["nvidia.com/gpu.product"]
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert flags_of(objects)["--device"] == "cuda" and flags_of(objects)["--dtype"] == "bfloat16"


def test_service_monitor_and_autoscaling_reach_a_real_metric(model_dir, tmp_path):
    """The ServiceMonitor scrapes the Service's http port; the HPA's metric is what the prometheus-adapter rule
    exposes, and the server started with the CPU overlay's own flags (paths and ports made local) serves it."""
    objects = render("cpu")
    monitor = objects["ServiceMonitor"]
    service = objects["Service"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"

    metric = objects["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"]["name"]
    adapter = yaml.safe_load((ROOT / "deploy" / "prometheus-adapter" / "rules.yaml").read_text())
    kubernetes_validate.validate(adapter, KUBERNETES, strict=True)
    rules = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    assert any(r["name"]["as"] == metric and r["seriesQuery"].startswith(metric + "{") for r in rules)

    token = tmp_path / "token"
    token.write_text("t")
    local = {"/opt/pad/models/SmolLM2-135M-Instruct": str(model_dir), "/opt/pad/prm": str(ROOT / "prm"),
             "/secrets/pad/token": str(token)}
    flags = []
    for name, value in flags_of(objects).items():
        if name in ("--listen", "--http_listen"):
            continue  # the fixture picks free ports
        for deployed, here in local.items():
            value = value.replace(deployed, here)
        flags.append(f"{name}={value}")
    server = Server(model_dir, *flags)
    try:
        assert server.metric(metric) == 0 and f"\n{metric} " in server.metrics_text()
    finally:
        server.stop_and_check()


# --- Dockerfiles ----------------------------------------------------------------------------------------------

def stages(dockerfile):
    """[(base image, [instructions])] of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "docker" / f"{dockerfile}.Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            out.append((line.split()[1], []))
        else:
            out[-1][1].append(line)
    return out


def runtime_packages(dockerfile):
    runtime = stages(dockerfile)[-1][1]
    install = next(i for i in runtime if "apt-get install" in i)
    words = shlex.split(install.split("apt-get install", 1)[1].split("&&")[0])
    return [w for w in words if not w.startswith("-")]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_builds_with_the_projects_own_setup(dockerfile):
    (build_image, build), (_, runtime) = stages(dockerfile)
    assert build_image == "debian:12"
    assert "RUN ./scripts/setup.sh" in build
    for stage in (build, runtime):
        for instruction in stage:
            if instruction.startswith("COPY ") and "--from=" not in instruction:
                for source in shlex.split(instruction)[1:-1]:
                    assert (ROOT / source).exists() or source == ".", f"{dockerfile}: COPY {source} is missing"
    assert "USER 10001" in runtime and any(i.startswith("HEALTHCHECK ") and "/healthz" in i for i in runtime)


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_runtime_image_has_every_library_pad_server_loads(dockerfile):
    """Each Debian package that holds a library pad_server links (ldd) is installed in the runtime stage, or is
    a dependency of one that is."""
    needed = set()
    for line in subprocess.run(["ldd", str(SERVER)], capture_output=True, text=True, check=True).stdout.splitlines():
        match = re.search(r"=> (/\S+)", line)
        if not match or "site-packages" in match.group(1):
            continue  # LibTorch's, copied from the wheel
        name = match.group(1).rsplit("/", 1)[1]
        owner = subprocess.run(["dpkg", "-S", f"/usr/lib/x86_64-linux-gnu/{name}"], capture_output=True, text=True)
        if owner.returncode == 0:
            needed.add(owner.stdout.split(":")[0])
    assert "libcpp-httplib0.11" in needed and "libgrpc++1.51" in needed
    installed = runtime_packages(dockerfile)
    closure = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                              "--no-breaks", "--no-replaces", "--no-enhances", *installed],
                             capture_output=True, text=True).stdout  # a package apt does not know just adds nothing
    available = set(installed) | {line.strip().split(":")[-1].strip() for line in closure.splitlines()}
    assert needed <= available, needed - available


def test_cpu_image_holds_what_the_cpu_overlay_serves():
    flags = flags_of(render("cpu"))
    copied = [shlex.split(i)[-1] for i in stages("cpu")[-1][1] if i.startswith("COPY ")]
    for path in (flags["--policy"], flags["--reward_models"].split("=:")[1].split(",")[0]):
        assert path in copied, path

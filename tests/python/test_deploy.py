"""The Kubernetes manifests (deploy/) and the Dockerfiles (docker/), checked offline: each overlay renders with
`kubectl kustomize`, every rendered object passes kubernetes-validate's strict schema for a pinned Kubernetes
version, the pod meets the "restricted" Pod Security Standard, runs pinned images and starts without a Secret,
the CPU overlay's flags start the real pad_server, and the images carry what pad_server loads."""
import base64
import copy
import re
import shlex
import shutil
import subprocess
import urllib.request

import kubernetes_validate
import pytest
import yaml

from conftest import ROOT
from server_fixture import SERVER, Server, free_port

KUBERNETES = "1.30.0"
OVERLAYS = ["cpu", "gpu"]
DOCKERFILES = ["cpu", "cuda"]
DOCKERFILE_OF_OVERLAY = {"cpu": "cpu", "gpu": "cuda"}


def kustomize(directory):
    """The objects `kubectl kustomize directory` renders, in order."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is missing; run ./scripts/setup.sh")
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


def render(overlay):
    """The overlay's objects by kind; the headless Service as "Service/headless" beside the ClusterIP one."""
    def key(obj):
        headless = obj["kind"] == "Service" and obj["spec"].get("clusterIP") == "None"
        return "Service/headless" if headless else obj["kind"]
    return {key(obj): obj for obj in kustomize(ROOT / "deploy" / "overlays" / overlay)}


def flags_of(objects):
    """{name: value} of the overlay's pad_server flags (the ConfigMap that --flagfile reads; '#' starts a
    comment line there, as in pad_server's flagfile parser)."""
    lines = objects["ConfigMap"]["data"]["flags"].splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.lstrip().startswith("#"))


def container(objects):
    return objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates(overlay):
    objects = render(overlay)
    assert set(objects) == {"ConfigMap", "Service", "Service/headless", "Deployment", "PodDisruptionBudget",
                            "HorizontalPodAutoscaler", "ServiceMonitor"}
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
    assert flags["--probe_listen"].endswith(f":{ports['probes']}")
    service_ports = {p["name"]: p["targetPort"] for p in objects["Service"]["spec"]["ports"]}
    assert service_ports == {"grpc": "grpc", "http": "http", "metrics": "probes"}
    # The headless Service: the same pods and API ports, only ready ones in its DNS answer.
    headless = objects["Service/headless"]["spec"]
    assert headless["selector"] == objects["Service"]["spec"]["selector"]
    assert {p["name"]: p["targetPort"] for p in headless["ports"]} == {"grpc": "grpc", "http": "http"}
    assert headless["publishNotReadyAddresses"] is False
    # Long-lived clients of the ClusterIP Service are moved along, well within a scale-up's time scale.
    assert 0 < float(flags["--max_connection_age_s"]) <= 600


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_drain(overlay):
    objects = render(overlay)
    c = container(objects)
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        # The probe listener's own workers: a pod busy with streams is not restarted.
        assert c[probe]["httpGet"]["port"] == "probes" and c[probe]["timeoutSeconds"] >= 1
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
    exposes, and the server started with the CPU overlay's own flagfile (paths and ports made local) serves it."""
    objects = render("cpu")
    monitor = objects["ServiceMonitor"]
    service = objects["Service"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert {"name": "metrics", "port": 9091, "targetPort": "probes", "appProtocol": "http"} in service["spec"]["ports"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"

    metric = objects["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"]["name"]
    adapter = yaml.safe_load((ROOT / "deploy" / "prometheus-adapter" / "rules.yaml").read_text())
    kubernetes_validate.validate(adapter, KUBERNETES, strict=True)
    rules = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    assert any(r["name"]["as"] == metric and r["seriesQuery"].startswith(metric + "{") for r in rules)

    # The ConfigMap as the pod reads it (--flagfile, comment lines and all), and no token file: without the
    # Secret, the pod must start.
    local = {"/opt/pad/models/SmolLM2-135M-Instruct": str(model_dir), "/opt/pad/prm": str(ROOT / "prm")}
    text = "\n".join(line for line in objects["ConfigMap"]["data"]["flags"].splitlines()
                     if not line.startswith(("--listen=", "--http_listen=", "--probe_listen=")))  # free ports
    for deployed, here in local.items():
        text = text.replace(deployed, here)
    flagfile = tmp_path / "flags"
    flagfile.write_text(text)
    probe_port = free_port()
    server = Server(model_dir, f"--flagfile={flagfile}", f"--probe_listen=127.0.0.1:{probe_port}")
    try:
        assert server.metric(metric) == 0 and f"\n{metric} " in server.metrics_text()
        # What the ServiceMonitor scrapes: the probe port.
        with urllib.request.urlopen(f"http://127.0.0.1:{probe_port}/metrics", timeout=30) as response:
            assert f"\n{metric} " in response.read().decode()
    finally:
        server.stop_and_check()


# --- Pod security, images, Secrets ---------------------------------------------------------------------------
# The "restricted" Pod Security Standard (kubernetes.io/docs/concepts/security/pod-security-standards/, its
# baseline checks included), as Kubernetes 1.30's admission applies it. Checked here in Python because no
# admission check runs offline: `kubectl apply --dry-run=client` does not run Pod Security admission.

RESTRICTED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                           "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t"}
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def restricted_violations(template):
    """What the restricted profile refuses in a pod template (metadata and spec), one line each; [] if nothing."""
    spec = template["spec"]
    pod = spec.get("securityContext", {})
    containers = [c for key in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(key, [])]
    out = [f"{key}: true" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    out += [f"volume {v['name']}: {sorted(set(v) - {'name'})}" for v in spec.get("volumes", [])
            if not set(v) - {"name"} <= RESTRICTED_VOLUME_TYPES]
    out += [f"sysctl {s['name']}" for s in pod.get("sysctls", []) if s["name"] not in SAFE_SYSCTLS]
    annotations = template.get("metadata", {}).get("annotations", {})
    out += [f"{key}: {value}" for key, value in annotations.items() if key.startswith(APPARMOR_ANNOTATION)
            and value != "runtime/default" and not value.startswith("localhost/")]
    for name, context in [("pod", pod)] + [(c["name"], c.get("securityContext", {})) for c in containers]:
        if context.get("windowsOptions", {}).get("hostProcess"):
            out.append(f"{name}: hostProcess")
        selinux = context.get("seLinuxOptions", {})
        if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            out.append(f"{name}: seLinuxOptions {selinux}")
        if context.get("appArmorProfile", {}).get("type", "RuntimeDefault") not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: appArmorProfile {context['appArmorProfile']}")
        if context.get("seccompProfile", {}).get("type", "RuntimeDefault") not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile {context['seccompProfile']}")
        if context.get("runAsNonRoot") is False or context.get("runAsUser") == 0:
            out.append(f"{name}: runs as root")
    for c in containers:
        context = c.get("securityContext", {})
        capabilities = context.get("capabilities", {})
        if context.get("privileged"):
            out.append(f"{c['name']}: privileged")
        if context.get("procMount", "Default") != "Default":
            out.append(f"{c['name']}: procMount {context['procMount']}")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            out.append(f"{c['name']}: hostPort")
        if context.get("allowPrivilegeEscalation") is not False:
            out.append(f"{c['name']}: allowPrivilegeEscalation is not false")
        if "ALL" not in capabilities.get("drop", []) or set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{c['name']}: capabilities {capabilities}")
        # Set on the pod, or on every container.
        if not (pod.get("runAsNonRoot") or context.get("runAsNonRoot")):
            out.append(f"{c['name']}: runAsNonRoot is not true")
        if "seccompProfile" not in pod and "seccompProfile" not in context:
            out.append(f"{c['name']}: no seccompProfile")
    return out


def image_user(dockerfile):
    return int(next(i.split()[1] for i in stages(dockerfile)[-1][1] if i.startswith("USER ")))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_meets_the_restricted_pod_security_standard(overlay):
    template = render(overlay)["Deployment"]["spec"]["template"]
    assert restricted_violations(template) == []
    # The uid and gid the image's files were made for (USER in its Dockerfile).
    context = template["spec"]["securityContext"]
    assert context["runAsUser"] == context["runAsGroup"] == image_user(DOCKERFILE_OF_OVERLAY[overlay]) != 0


def test_restricted_checks_catch_each_violation():
    """Without this the test above would prove nothing: each breach, made in the rendered CPU pod, is caught."""
    def first(template):
        return template["spec"]["containers"][0]

    breaches = {
        "hostPath volume": lambda t: t["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
        "no seccomp profile": lambda t: t["spec"]["securityContext"].pop("seccompProfile", None),
        "unconfined container": lambda t: first(t)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        "root container": lambda t: first(t)["securityContext"].update(runAsUser=0),
        "runAsNonRoot unset": lambda t: t["spec"]["securityContext"].pop("runAsNonRoot"),
        "privilege escalation": lambda t: first(t)["securityContext"].pop("allowPrivilegeEscalation"),
        "added capability": lambda t: first(t)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
        "privileged": lambda t: first(t)["securityContext"].update(privileged=True),
        "host network": lambda t: t["spec"].update(hostNetwork=True),
        "host port": lambda t: first(t)["ports"][0].update(hostPort=50051),
        "bare init container": lambda t: t["spec"].setdefault("initContainers", []).append(
            {"name": "init", "image": "busybox:1.36"}),
    }
    rendered = render("cpu")["Deployment"]["spec"]["template"]
    for breach, make in breaches.items():
        template = copy.deepcopy(rendered)
        make(template)
        assert restricted_violations(template), breach


def image_tag(image):
    """The tag of an image reference, '' if it has none (a registry's :port is not one)."""
    return image.rsplit("/", 1)[-1].partition("@")[0].partition(":")[2]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned_and_pulled_if_not_present(overlay):
    """An untagged image is :latest, a moving tag: nodes would run whichever build each pulled last. The pinned
    tag is the one the overlay's Dockerfile says to build."""
    objects = render(overlay)
    spec = objects["Deployment"]["spec"]["template"]["spec"]
    for c in spec["containers"] + spec.get("initContainers", []):
        assert "@sha256:" in c["image"] or image_tag(c["image"]) not in ("", "latest"), c["image"]
        assert c.get("imagePullPolicy") == "IfNotPresent", c["name"]
    dockerfile = DOCKERFILE_OF_OVERLAY[overlay]
    header = (ROOT / "docker" / f"{dockerfile}.Dockerfile").read_text()
    built = re.search(rf"docker build -f docker/{dockerfile}\.Dockerfile -t (\S+) \.", header).group(1)
    assert container(objects)["image"] == built


def token_file_of(documents):
    """Checks the pod's Secrets: one the overlay does not generate may not exist, so its volume must be optional
    (else the pod waits in ContainerCreating); and pad_server refuses to start when --auth_token_file names a
    missing file, so the flag must name a key of a generated Secret where its volume is mounted. Returns the
    flag's value (None: auth is off)."""
    objects = {obj["kind"]: obj for obj in documents}
    generated = {obj["metadata"]["name"]: obj for obj in documents if obj["kind"] == "Secret"}
    spec = objects["Deployment"]["spec"]["template"]["spec"]
    secrets = {v["name"]: v["secret"] for v in spec["volumes"] if "secret" in v}
    for name, secret in secrets.items():
        assert secret["secretName"] in generated or secret.get("optional") is True, name
    token_file = flags_of(objects).get("--auth_token_file")
    if token_file is not None:
        directory, key = token_file.rsplit("/", 1)
        mount = next((m for m in container(objects)["volumeMounts"] if m["mountPath"] == directory), None)
        assert mount is not None and mount["name"] in secrets, f"nothing mounts a Secret at {directory}"
        secret_name = secrets[mount["name"]]["secretName"]
        assert secret_name in generated, f"--auth_token_file without a generated Secret {secret_name}"
        assert key in generated[secret_name]["data"], f"Secret {secret_name} has no key {key}"
    return token_file


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_starts_without_a_secret(overlay):
    assert token_file_of(kustomize(ROOT / "deploy" / "overlays" / overlay)) is None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_documented_auth_setup_mounts_the_token(overlay, tmp_path):
    """The steps the overlay's kustomization.yaml gives to turn auth on: a file named token, its commented
    secretGenerator and the commented --auth_token_file in flags uncommented."""
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    directory = tmp_path / "deploy" / "overlays" / overlay
    (directory / "token").write_text("s3cret\n")
    kustomization = (directory / "kustomization.yaml").read_text()
    generator = re.search(r"^#secretGenerator:\n(?:#  .*\n)+", kustomization, re.M).group(0)
    uncommented = re.sub(r"^#", "", generator, flags=re.M)
    (directory / "kustomization.yaml").write_text(kustomization.replace(generator, uncommented))
    flags = (directory / "flags").read_text()
    (directory / "flags").write_text(re.sub(r"^#(?=--auth_token_file=)", "", flags, flags=re.M))

    documents = kustomize(directory)
    token_file = token_file_of(documents)
    assert token_file is not None
    secret = next(obj for obj in documents if obj["kind"] == "Secret")
    kubernetes_validate.validate(secret, KUBERNETES, strict=True)
    key = token_file.rsplit("/", 1)[1]
    assert base64.b64decode(secret["data"][key]) == b"s3cret\n"
    # The other documented way, `kubectl create secret`, must make the same Secret and key.
    assert f"kubectl create secret generic pad-server-token --from-file={key}=" in kustomization


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

"""The Kubernetes manifests (deploy/) and the Dockerfiles (docker/), checked offline: each overlay renders with
`kubectl kustomize`, every rendered object passes kubernetes-validate's strict schema for a pinned Kubernetes
version, the pod meets the "restricted" Pod Security Standard, runs pinned images and starts without a Secret,
the CPU overlay's flags start the real pad_server, and the images carry what pad_server loads."""
import base64
import copy
import json
import re
import shlex
import shutil
import subprocess
import threading
import urllib.request

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT
from server_fixture import PATIENCE, SERVER, Server, collect, free_port, stub_of, to_proto, wait_for

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


# --- The Gateway API Inference Extension (deploy/components/inference-gateway) ---------------------------------
# Its objects are custom resources, which kubernetes-validate has no schema for: deploy/schemas/ holds the
# published CRDs' constraints on the fields we use (JSON Schema; unknown fields refused, as
# `kubectl apply --validate=strict` does) and the CEL rules are checked here. The endpoint picker's
# configuration file is decoded strictly by the picker, except its plugins' parameters, which it decodes
# leniently: the schema refuses unknown keys there too, since a misspelt one would be ignored in silence.

GATEWAY_OVERLAY = ROOT / "deploy" / "overlays" / "gpu-inference-gateway"
SCHEMAS = ROOT / "deploy" / "schemas"
# What the endpoint picker of v1.5.0 accepts: its flags (pkg/epp/server/options.go, with the logging flag the
# chart passes) and plugin types (the Register calls of cmd/epp/runner/runner.go).
EPP_IMAGE = "registry.k8s.io/gateway-api-inference-extension/epp:v1.5.0"
EPP_FLAGS = {"grpc-port", "grpc-health-port", "metrics-port", "pool-name", "pool-namespace", "pool-group",
             "endpoint-selector", "endpoint-target-ports", "config-file", "config-text", "secure-serving",
             "cert-path", "enable-cert-reload", "metrics-endpoint-auth", "tracing", "health-checking",
             "ha-enable-leader-election", "refresh-metrics-interval", "metrics-staleness-threshold",
             "refresh-prometheus-metrics-interval", "enable-pprof", "zap-encoder", "v"}
EPP_PLUGIN_TYPES = {"metrics-data-source", "core-metrics-extractor", "queue-scorer", "running-requests-size-scorer",
                    "kv-cache-utilization-scorer", "prefix-cache-scorer", "lora-affinity-scorer", "max-score-picker",
                    "random-picker", "weighted-random-picker", "single-profile-handler", "utilization-detector"}


def render_by_name(directory):
    return {(obj["kind"], obj["metadata"]["name"]): obj for obj in kustomize(directory)}


def crd_violations(obj):
    """What the custom resource's CRD (deploy/schemas/) and its CEL rules refuse in obj, one line each."""
    group, version = obj["apiVersion"].split("/")
    path = SCHEMAS / group / f"{obj['kind'].lower()}_{version}.json"
    if not path.exists():
        return [f"no CRD {obj['kind']} in {obj['apiVersion']} here"]
    schema = json.loads(path.read_text())
    out = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
           for e in jsonschema.Draft202012Validator(schema).iter_errors(obj)]
    spec = obj.get("spec", {})
    if obj["kind"] == "InferencePool":
        numbers = [p.get("number") for p in spec.get("targetPorts", [])]
        if len(numbers) != len(set(numbers)):
            out.append("targetPorts: port number must be unique")
        ref = spec.get("endpointPickerRef", {})
        if ref.get("kind", "Service") == "Service" and "port" not in ref:
            out.append("endpointPickerRef: port is required when kind is 'Service'")
    if obj["kind"] == "HTTPRoute":
        for rule in spec.get("rules", []):
            for ref in rule.get("backendRefs", []):
                if ref.get("group", "") == "" and ref.get("kind", "Service") == "Service" and "port" not in ref:
                    out.append(f"backendRefs {ref['name']}: Must have port for Service reference")
            for match in rule.get("matches", []):
                path = match.get("path", {"type": "PathPrefix", "value": "/"})
                if path.get("type", "PathPrefix") != "RegularExpression" and (
                        not path.get("value", "/").startswith("/") or "//" in path.get("value", "/")):
                    out.append(f"path {path}: value must be an absolute path")
    return out


def endpoint_picker_config(objects):
    """The picker's configuration file: the ConfigMap key its --config-file names, through the volume mount."""
    deployment = objects[("Deployment", "pad-endpoint-picker")]
    spec = deployment["spec"]["template"]["spec"]
    args = dict(a[2:].split("=", 1) for a in spec["containers"][0]["args"])
    directory, key = args["config-file"].rsplit("/", 1)
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == directory)
    config_map = next(v["configMap"]["name"] for v in spec["volumes"] if v["name"] == mount["name"])
    return yaml.safe_load(objects[("ConfigMap", config_map)]["data"][key])


def config_violations(config):
    """What the picker refuses in its configuration file (its schema, and references to plugins it lacks)."""
    schema = json.loads((SCHEMAS / "inference.networking.x-k8s.io" / "endpointpickerconfig_v1alpha1.json")
                        .read_text())
    out = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
           for e in jsonschema.Draft202012Validator(schema).iter_errors(config)]
    plugins = {p.get("name", p["type"]): p["type"] for p in config.get("plugins", [])}
    out += [f"unknown plugin type {t}" for t in plugins.values() if t not in EPP_PLUGIN_TYPES]
    refs = [p["pluginRef"] for profile in config.get("schedulingProfiles", []) for p in profile.get("plugins", [])]
    refs += [ref for source in config.get("dataLayer", {}).get("sources", [])
             for ref in [source["pluginRef"]] + [e["pluginRef"] for e in source.get("extractors", [])]]
    out += [f"pluginRef {ref} names no plugin" for ref in refs if ref not in plugins]
    return out


def engine_metrics(config):
    """{what the picker reads: metric spec} of the engine it uses for our pods."""
    extractor = next(p["parameters"] for p in config["plugins"] if p["type"] == "core-metrics-extractor")
    engine = next(e for e in extractor["engineConfigs"] if e["name"] == extractor["defaultEngine"])
    return {key: engine[key] for key in ("queuedRequestsSpec", "runningRequestsSpec", "kvUsageSpec")}


def test_inference_gateway_overlay_renders_and_validates():
    objects = render_by_name(GATEWAY_OVERLAY)
    custom = {"InferencePool", "Gateway", "HTTPRoute", "ServiceMonitor"}
    assert {kind for kind, _ in objects} == custom | {"ConfigMap", "Service", "Deployment", "PodDisruptionBudget",
                                                      "HorizontalPodAutoscaler", "ServiceAccount", "Role",
                                                      "RoleBinding"}
    for (kind, name), obj in objects.items():
        if kind not in custom:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        elif kind != "ServiceMonitor":  # checked with the base's objects above
            assert crd_violations(obj) == [], (kind, name)
    assert config_violations(endpoint_picker_config(objects)) == []
    # The rest of the overlay is the gpu overlay's, unchanged.
    for key, obj in render_by_name(ROOT / "deploy" / "overlays" / "gpu").items():
        assert objects[key] == obj, key


def test_inference_gateway_is_wired_to_the_pods():
    """Each reference resolves: route to Gateway and pool, pool to the pad-server pods' HTTP port and to the
    picker's Service, the picker to the pool, its configuration and the permissions it uses."""
    objects = render_by_name(GATEWAY_OVERLAY)
    pool = objects[("InferencePool", "pad-server")]["spec"]
    server = objects[("Deployment", "pad-server")]["spec"]["template"]
    picker = objects[("Deployment", "pad-endpoint-picker")]["spec"]["template"]
    # The pool holds the pad-server pods, and only them, at the port of the OpenAI API (and of its /metrics).
    assert pool["selector"]["matchLabels"].items() <= server["metadata"]["labels"].items()
    assert not pool["selector"]["matchLabels"].items() <= picker["metadata"]["labels"].items()
    http_port = next(p["containerPort"] for p in server["spec"]["containers"][0]["ports"] if p["name"] == "http")
    assert [p["number"] for p in pool["targetPorts"]] == [http_port] and pool["appProtocol"] == "http"
    # The picker: its Service's port, its pod's gRPC port, the pool it serves.
    service = objects[("Service", pool["endpointPickerRef"]["name"])]["spec"]
    assert service["selector"].items() <= picker["metadata"]["labels"].items()
    ext_proc = next(p for p in service["ports"] if p["port"] == pool["endpointPickerRef"]["port"]["number"])
    epp = picker["spec"]["containers"][0]
    assert {p["name"]: p["containerPort"] for p in epp["ports"]}[ext_proc["targetPort"]] == 9002
    assert epp["image"] == EPP_IMAGE and epp["imagePullPolicy"] == "IfNotPresent"
    args = dict(a[2:].split("=", 1) for a in epp["args"])
    assert set(args) <= EPP_FLAGS, set(args) - EPP_FLAGS
    assert args["pool-name"] == "pad-server" and args["pool-group"] == "inference.networking.k8s.io"
    assert restricted_violations(picker) == []
    # What it watches, it may read: the pool and the pods, in its namespace, as its own ServiceAccount.
    binding = objects[("RoleBinding", "pad-endpoint-picker")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": picker["spec"]["serviceAccountName"]}]
    role = objects[("Role", binding["roleRef"]["name"])]
    readable = {(g, r) for rule in role["rules"] if {"get", "watch", "list"} <= set(rule["verbs"])
                for g in rule["apiGroups"] for r in rule["resources"]}
    assert {("", "pods"), ("inference.networking.k8s.io", "inferencepools")} <= readable
    # The way in: Gateway, then the route to the pool, with a timeout a long streamed answer fits in.
    route = objects[("HTTPRoute", "pad-server")]["spec"]
    assert [(p["kind"], p["name"]) for p in route["parentRefs"]] == [("Gateway", "pad-inference-gateway")]
    assert ("Gateway", "pad-inference-gateway") in objects
    backend = route["rules"][0]["backendRefs"][0]
    assert (backend["group"], backend["kind"], backend["name"]) == ("inference.networking.k8s.io", "InferencePool",
                                                                    "pad-server")
    assert route["rules"][0]["timeouts"]["request"] == "600s"


def test_crd_and_config_checks_catch_each_violation():
    """Without this the two tests above would prove nothing: each breach, made in the rendered objects, is caught."""
    objects = render_by_name(GATEWAY_OVERLAY)
    pool = objects[("InferencePool", "pad-server")]
    route = objects[("HTTPRoute", "pad-server")]
    breaches = {
        "no target port": (pool, lambda o: o["spec"].update(targetPorts=[])),
        "duplicate port": (pool, lambda o: o["spec"]["targetPorts"].append({"number": 9090})),
        "port 0": (pool, lambda o: o["spec"]["targetPorts"][0].update(number=0)),
        "misspelt field": (pool, lambda o: o["spec"].update(targetPort=[{"number": 9090}])),
        "grpc protocol": (pool, lambda o: o["spec"].update(appProtocol="grpc")),
        "picker without port": (pool, lambda o: o["spec"]["endpointPickerRef"].pop("port")),
        "no picker": (pool, lambda o: o["spec"].pop("endpointPickerRef")),
        "empty selector": (pool, lambda o: o["spec"]["selector"].update(matchLabels={})),
        "old API version": (pool, lambda o: o.update(apiVersion="inference.networking.x-k8s.io/v1alpha2")),
        "timeout in words": (route, lambda o: o["spec"]["rules"][0]["timeouts"].update(request="10 minutes")),
        "service without port": (route, lambda o: o["spec"]["rules"][0]["backendRefs"].append({"name": "pad-server"})),
        "relative path": (route, lambda o: o["spec"]["rules"][0]["matches"][0]["path"].update(value="v1")),
    }
    for breach, (obj, make) in breaches.items():
        changed = copy.deepcopy(obj)
        make(changed)
        assert crd_violations(changed), breach

    config = endpoint_picker_config(objects)
    extractor = lambda c: next(p for p in c["plugins"] if p["type"] == "core-metrics-extractor")  # noqa: E731
    config_breaches = {
        "misspelt parameter": lambda c: extractor(c)["parameters"]["engineConfigs"][0].update(
            queuedRequestSpec="pad_requests_waiting"),
        "unknown plugin": lambda c: c["plugins"].append({"type": "queue-depth-scorer"}),
        "dangling pluginRef": lambda c: c["schedulingProfiles"][0]["plugins"].append({"pluginRef": "lora-affinity"}),
        "unknown top-level key": lambda c: c.update(scheduling={}),
        "reserved engine name": lambda c: extractor(c)["parameters"]["engineConfigs"][0].update(name="default"),
    }
    for breach, make in config_breaches.items():
        changed = copy.deepcopy(config)
        make(changed)
        assert config_violations(changed), breach


def metric_spec_value(families, spec):
    """What the picker reads for a spec like `name` or `name{label=value}` (extractor/metrics/spec.go): the
    gauge's sample whose labels include the spec's."""
    match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?", spec)
    name, wanted = match.group(1), dict(kv.split("=", 1) for kv in filter(None, (match.group(2) or "").split(",")))
    family = families[name]
    assert family.type == "gauge", f"{name} is a {family.type}"
    return next(s.value for s in family.samples if wanted.items() <= s.labels.items())


def test_endpoint_picker_reads_what_the_server_exports(pb, model_dir):
    """The picker's metric specs, read from a real pad_server's HTTP port (the pool's target port) as the picker
    reads them, say what they claim: with two KV slots and three requests, two run, one waits, and the KV use is
the share of the pool's blocks they hold (a ratio in (0, 1], where a count of blocks or slots would read more)."""
    config = endpoint_picker_config(render_by_name(GATEWAY_OVERLAY))
    specs = engine_metrics(config)
    server = Server(model_dir, "--kv_slots=2", "--max_seq_len=512")
    channel = server.new_channel()

    def read():
        families = {f.name: f for f in text_string_to_metric_families(server.metrics_text())}
        return {key: metric_spec_value(families, spec) for key, spec in specs.items()}

    def stream():
        spec = {"messages": [{"role": "user", "content": "Count to a thousand."}], "mode": "vanilla",
                "max_new_tokens": 200, "ignore_eos": True, "temperature": 0.0}
        collect(stub_of(pb, channel).GenerateAligned(to_proto(pb, spec), timeout=PATIENCE))

    try:
        assert read() == {"queuedRequestsSpec": 0, "runningRequestsSpec": 0, "kvUsageSpec": 0}
        threads = [threading.Thread(target=stream) for _ in range(3)]
        for thread in threads:
            thread.start()
        def loaded():
            now = read()
            share = server.metric("pad_kv_cache_blocks_used") / server.metric("pad_kv_cache_blocks")
            return (now["queuedRequestsSpec"], now["runningRequestsSpec"]) == (1, 2) and \
                0 < now["kvUsageSpec"] <= 1 and abs(now["kvUsageSpec"] - share) < 0.1
        assert wait_for(loaded), read()
        for thread in threads:
            thread.join(timeout=PATIENCE)
        assert wait_for(lambda: read() == {"queuedRequestsSpec": 0, "runningRequestsSpec": 0, "kvUsageSpec": 0})
    finally:
        channel.close()
        server.stop_and_check()

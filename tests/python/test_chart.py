"""The Helm chart (helm/ringgate) and the container image, checked without a cluster.

- every case (the defaults alone, each file in helm/ringgate/examples/, and one with every
  optional resource on) is rendered by Helm's own engine (helm-python-sdk bundles the Helm
  SDK; no helm binary, no network) and linted strictly for two Kubernetes versions;
- every rendered manifest validates against the Kubernetes schemas of both versions in
  strict mode (kubernetes-validate); the ServiceMonitor, a Prometheus Operator resource no
  offline package describes, against a schema of the fields the chart writes, as strict;
- the chart's own rules hold in what it renders, and values that break them fail to render;
- `ringgate check-config` accepts every rendered config.yaml, and refuses it when any of the
  Secrets' variables is missing (so the env.NAME references and the Secret keys agree);
- the seccomp profile, the Dockerfile (hadolint) and the image's default config.

The image itself is not built here: that needs registry access for its base images.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
import yaml

try:
    import helm_python as helm
    import jsonschema
    import kubernetes_validate
    import trustme
except ImportError as e:  # fail the run loudly; never skip
    raise ImportError(
        f"{e}: the chart tests need tests/python/requirements.txt installed "
        "(helm-python-sdk, kubernetes-validate, trustme)"
    ) from e

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "helm" / "ringgate"
EXAMPLES = {p.stem: p for p in sorted((CHART / "examples").glob("*.yaml"))}
# The oldest version the chart supports (Chart.yaml kubeVersion) and the newest known.
K8S_VERSIONS = ["1.30.0", "1.37.0"]
RELEASE = "rg"
NAMESPACE = "ringgate"
# ringgate's final usage flush is bounded by 5 s in the binary (src/main.rs).
FINAL_FLUSH_S = 5

# Every optional resource on: Ingress, TLS, ServiceMonitor, HPA, PDB, extra volumes.
EVERYTHING = {
    "store": {"type": "postgres"},
    "secrets": {
        "existingSecret": "ringgate",
        "databaseUrl": {"key": "database-url"},
        "adminToken": {"key": "admin-token", "secret": "ringgate-admin"},
        "secretKey": {"key": "secret-key"},
        "env": [{"name": "GROQ_API_KEY", "key": "groq", "secret": "groq"}],
    },
    "autoscaling": {"enabled": True},
    "podDisruptionBudget": {"enabled": True, "maxUnavailable": None, "minAvailable": 1},
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "tls": [{"hosts": ["ringgate.example.com"], "secretName": "ringgate-ingress-tls"}],
    },
    "tls": {"enabled": True, "existingSecret": "ringgate-tls"},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "networkPolicy": {"dataFrom": [{"namespaceSelector": {}}]},
    "extraVolumes": [{"name": "ca", "configMap": {"name": "provider-ca"}}],
    "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ringgate-ca", "readOnly": True}],
    "config": {
        "providers": {
            "groq": {
                "kind": "groq",
                "keys": [{"key": "env.GROQ_API_KEY", "weight": 2}],
                "ca_file": "/etc/ringgate-ca/ca.pem",
            }
        }
    },
}

# ServiceMonitor is a Prometheus Operator resource, not in Kubernetes' schemas, and no
# package ships its CRD schema offline: this is monitoring.coreos.com/v1 for the fields the
# chart writes, strict like the others (no unknown field), with the operator's patterns.
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
SERVICE_MONITOR = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "labels": _STRINGS, "annotations": _STRINGS},
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": _STRINGS},
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                        },
                    },
                },
            },
        },
    },
}

CASES = {"defaults": None, **{name: None for name in EXAMPLES}, "everything": None}


def case_values(case: str) -> dict:
    if case == "defaults":
        return {}
    if case == "everything":
        return copy.deepcopy(EVERYTHING)
    return yaml.safe_load(EXAMPLES[case].read_text())


def render_values(values: dict) -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


class Release:
    """One rendered case: its manifests, by kind and name."""

    def __init__(self, case: str):
        self.case = case
        self.values = case_values(case)
        with helm.Chart.load(str(CHART)) as chart:
            self.merged = chart.merge_values(self.values)
        self.files = render_values(self.values)
        self.docs = []
        for path, text in self.files.items():
            if path.endswith("NOTES.txt"):
                continue
            self.docs += [d for d in yaml.safe_load_all(text) if d]
        self.notes = next(t for p, t in self.files.items() if p.endswith("NOTES.txt"))

    def kinds(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str) -> dict:
        found = self.kinds(kind)
        assert len(found) == 1, f"{self.case}: expected one {kind}, found {len(found)}"
        return found[0]

    @property
    def workload(self) -> dict:
        found = self.kinds("StatefulSet") + self.kinds("Deployment")
        assert len(found) == 1, f"{self.case}: expected one workload, found {len(found)}"
        return found[0]

    @property
    def pod(self) -> dict:
        return self.workload["spec"]["template"]["spec"]

    @property
    def container(self) -> dict:
        (c,) = [c for c in self.pod["containers"] if c["name"] == "ringgate"]
        return c

    @property
    def config_text(self) -> str:
        return self.one("ConfigMap")["data"]["config.yaml"]

    @property
    def config(self) -> dict:
        return yaml.safe_load(self.config_text)

    def secret_env(self) -> dict[str, dict]:
        return {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in self.container.get("env", [])
            if "valueFrom" in e
        }


@cache
def release(case: str) -> Release:
    return Release(case)


def render_error(values: dict) -> str:
    """Renders values that must be refused; returns Helm's message."""
    with pytest.raises(helm.HelmError) as e:
        render_values(values)
    return str(e.value)


def cpu_millis(q) -> int:
    q = str(q)
    return int(q[:-1]) if q.endswith("m") else round(float(q) * 1000)


def ringgate_bin() -> Path:
    path = Path(os.environ.get("RINGGATE_BIN", REPO_ROOT / "target" / "debug" / "ringgate"))
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"ringgate binary not found at {path}: build it (cargo build --bin ringgate) "
            "or set RINGGATE_BIN"
        )
    return path


def fake_secret(name: str) -> str:
    if name == "RINGGATE_ADMIN_TOKEN":
        return "t" * 32
    if name == "RINGGATE_SECRET_KEY":
        return base64.b64encode(bytes(range(32))).decode()
    if name == "RINGGATE_DATABASE_URL":
        return "postgres://ringgate@db.invalid:5432/ringgate"
    return "sk-test-" + name.lower()


def with_local_files(config_text: str, tmp_path: Path) -> str:
    """The config with the files it names inside the pod's volumes (TLS certificate and
    key, provider CAs) replaced by test files, since check-config reads them."""
    cfg = yaml.safe_load(config_text)
    files = [p for p in cfg["providers"].values() if "ca_file" in p]
    if "tls" not in cfg and not files:
        return config_text
    ca = trustme.CA()
    cert = ca.issue_cert("ringgate.example.com")
    if "tls" in cfg:
        cert.cert_chain_pems[0].write_to_path(tmp_path / "tls.crt")
        cert.private_key_pem.write_to_path(tmp_path / "tls.key")
        cfg["tls"] = {"cert_file": str(tmp_path / "tls.crt"), "key_file": str(tmp_path / "tls.key")}
    for p in files:
        ca.cert_pem.write_to_path(tmp_path / "ca.pem")
        p["ca_file"] = str(tmp_path / "ca.pem")
    return yaml.safe_dump(cfg)


def check_config(config_text: str, env: dict[str, str], tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text(with_local_files(config_text, tmp_path))
    base = {k: v for k, v in os.environ.items() if not k.startswith("RINGGATE_")}
    base.update(env, RUST_BACKTRACE="0", RUST_LOG="error")
    return subprocess.run(
        [str(ringgate_bin()), "check-config", str(path)],
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


def tool(name: str) -> str:
    """A console script of the test environment (beside this Python) or on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: install tests/python/requirements.txt")
    return found


# --------------------------------------------------------------------------- render, lint, validate


def test_examples_are_there():
    assert set(EXAMPLES) == {"sqlite-single", "external-postgres", "production-ha", "pinned-cpu"}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kube", K8S_VERSIONS)
def test_lint_is_clean(case, kube):
    report = helm.lint(str(CHART), case_values(case), strict=True, kube_version=f"v{kube}")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kube", K8S_VERSIONS)
def test_manifests_match_kubernetes_schemas(case, kube):
    rel = release(case)
    assert rel.docs
    for doc in rel.docs:
        where = f"{case}: {doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "ServiceMonitor":
            try:
                jsonschema.validate(doc, SERVICE_MONITOR)
            except jsonschema.ValidationError as e:
                pytest.fail(f"{where}: {e.message} at {list(e.path)}")
            continue
        try:
            kubernetes_validate.validate(doc, kube, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{where} on Kubernetes {kube}: {e.message} at {list(e.path)}")


# --------------------------------------------------------------------------- config and secrets


@pytest.mark.parametrize("case", CASES)
def test_rendered_config_passes_check_config(case, tmp_path):
    rel = release(case)
    env = {name: fake_secret(name) for name in rel.secret_env()}
    result = check_config(rel.config_text, env, tmp_path)
    assert result.returncode == 0, f"{case}: {result.stderr}"


@pytest.mark.parametrize("case", [c for c in CASES if c != "defaults"])
def test_check_config_needs_every_secret_the_chart_provides(case, tmp_path):
    """Each variable the pod gets from a Secret is one the config really reads: without it,
    ringgate refuses the config and names it. (For RINGGATE_DATABASE_URL this needs
    `governance.database: env.NAME` support in the binary.)"""
    rel = release(case)
    names = list(rel.secret_env())
    assert names
    unread = []
    for missing in names:
        env = {n: fake_secret(n) for n in names if n != missing}
        result = check_config(rel.config_text, env, tmp_path)
        if result.returncode == 0 or missing not in result.stderr:
            unread.append(missing)
    assert not unread, f"{case}: ringgate accepts the config without {unread}"


@pytest.mark.parametrize("case", CASES)
def test_no_secret_is_inlined(case):
    rel = release(case)
    assert not rel.kinds("Secret"), "the chart must never create a Secret"
    for doc in rel.kinds("Deployment") + rel.kinds("StatefulSet"):
        for c in doc["spec"]["template"]["spec"]["containers"]:
            for e in c.get("env", []):
                if e["name"] == "RUST_LOG":
                    continue
                assert "value" not in e and "secretKeyRef" in e["valueFrom"], e
    cfg = rel.config
    gov = cfg["governance"]
    for field in ("admin_token", "secret_key"):
        if field in gov:
            assert gov[field].startswith("env."), gov[field]
    for name, p in cfg["providers"].items():
        for field in ("api_key", "aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
            if field in p:
                assert p[field].startswith("env."), (name, field)
        for k in p.get("keys", []):
            assert k["key"].startswith("env."), name
    # Every env.NAME in the config comes from a Secret of the pod.
    refs = set(re.findall(r"env\.([A-Za-z_][A-Za-z0-9_]*)", rel.config_text))
    assert refs <= set(rel.secret_env()), refs - set(rel.secret_env())
    assert "postgres://" not in rel.config_text


# --------------------------------------------------------------------------- the workload


@pytest.mark.parametrize("case", CASES)
def test_store_decides_the_workload(case):
    rel = release(case)
    cfg = rel.config
    if rel.merged["store"]["type"] == "sqlite":
        sts = rel.one("StatefulSet")
        assert not rel.kinds("Deployment") and not rel.kinds("HorizontalPodAutoscaler")
        assert sts["spec"]["replicas"] == 1
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        (mount,) = [m for m in rel.container["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
        assert cfg["governance"]["database"].startswith(mount["mountPath"] + "/")
    else:
        assert rel.one("Deployment") and not rel.kinds("StatefulSet")
        assert cfg["governance"]["database"] == "env.RINGGATE_DATABASE_URL"
        assert "RINGGATE_DATABASE_URL" in rel.secret_env()
        # Each pod's usage spool is an emptyDir of its own (it outlives container restarts).
        (mount,) = [m for m in rel.container["volumeMounts"] if m["name"] == "spool"]
        assert cfg["governance"]["spool_dir"] == mount["mountPath"]
        pod = rel.one("Deployment")["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == "spool"]
        assert volume["emptyDir"]["sizeLimit"] == rel.merged["store"]["postgres"]["spoolSizeLimit"]


@pytest.mark.parametrize("case", CASES)
def test_ports_services_and_probes(case):
    rel = release(case)
    cfg = rel.config
    ports = {p["name"]: p["containerPort"] for p in rel.container["ports"]}
    assert cfg["listen"] == f"0.0.0.0:{ports['http']}"
    assert cfg["control"]["listen"] == f"0.0.0.0:{ports['control']}"
    assert ports["http"] != ports["control"]
    services = {s["metadata"]["labels"]["app.kubernetes.io/component"]: s for s in rel.kinds("Service")}
    assert set(services) == {"data", "control"}
    assert [p["targetPort"] for p in services["data"]["spec"]["ports"]] == ["http"]
    assert [p["targetPort"] for p in services["control"]["spec"]["ports"]] == ["control"]
    live, ready = rel.container["livenessProbe"]["httpGet"], rel.container["readinessProbe"]["httpGet"]
    assert (live["path"], live["port"]) == ("/health", "control")
    assert (ready["path"], ready["port"]) == ("/ready", "http")
    assert ready["scheme"] == ("HTTPS" if "tls" in cfg else "HTTP")


@pytest.mark.parametrize("case", CASES)
def test_grace_period_covers_prestop_drain_and_flush(case):
    rel = release(case)
    grace = rel.pod["terminationGracePeriodSeconds"]
    pre_stop = rel.container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = math.ceil(rel.config["shutdown"]["grace_period_ms"] / 1000)
    assert pre_stop > 0
    assert grace >= pre_stop + drain + FINAL_FLUSH_S, (grace, pre_stop, drain)


@pytest.mark.parametrize("case", CASES)
def test_restricted_security_context(case):
    rel = release(case)
    pods = [rel.pod] + [d["spec"] for d in rel.kinds("Pod")]
    for pod in pods:
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
        assert psc["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost")
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert not sc.get("privileged")


@pytest.mark.parametrize("case", CASES)
def test_seccomp_is_never_unconfined(case):
    rel = release(case)
    profile = rel.pod["securityContext"]["seccompProfile"]
    if rel.merged["seccomp"]["type"] == "Localhost":
        assert profile == {"type": "Localhost", "localhostProfile": "ringgate-io-uring.json"}
    else:
        assert profile == {"type": "RuntimeDefault"}
    assert "Unconfined" not in json.dumps(rel.docs)


@pytest.mark.parametrize("case", CASES)
def test_config_checksum_annotation(case):
    rel = release(case)
    annotation = rel.workload["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert annotation == hashlib.sha256(rel.config_text.rstrip("\n").encode()).hexdigest()


def test_config_change_rolls_the_pods():
    a = Release("defaults")
    b_files = render_values({"config": {"routing": {"balance": "latency"}}})
    b = [d for d in yaml.safe_load_all(b_files["ringgate/templates/workload.yaml"]) if d][0]
    key = "checksum/config"
    assert b["spec"]["template"]["metadata"]["annotations"][key] != (
        a.workload["spec"]["template"]["metadata"]["annotations"][key]
    )


@pytest.mark.parametrize("case", CASES)
def test_cpu_modes(case):
    rel = release(case)
    cfg = rel.config
    limits = rel.container["resources"]["limits"]
    if rel.merged["cpu"]["mode"] == "pinned":
        # Guaranteed QoS: every container's requests equal its limits, whole CPUs.
        for c in rel.pod["containers"] + rel.pod.get("initContainers", []):
            r = c["resources"]
            for res in ("cpu", "memory"):
                assert str(r["requests"][res]) == str(r["limits"][res]), (c["name"], res)
            assert cpu_millis(r["limits"]["cpu"]) % 1000 == 0
        assert cfg["shards"] == cpu_millis(limits["cpu"]) // 1000
        assert cfg["pin_cores"] is True
    else:
        assert cfg["shards"] == math.ceil(cpu_millis(limits["cpu"]) / 1000)
        assert cfg["pin_cores"] is False


def test_shared_mode_rounds_the_cpu_limit_up():
    files = render_values({"resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": "2500m"}}})
    cfg = yaml.safe_load(yaml.safe_load(files["ringgate/templates/configmap.yaml"])["data"]["config.yaml"])
    assert (cfg["shards"], cfg["pin_cores"]) == (3, False)


def test_defaults_are_one_sqlite_node_with_private_control_port():
    rel = release("defaults")
    assert rel.one("StatefulSet")["spec"]["replicas"] == 1
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress", "ServiceMonitor"):
        assert not rel.kinds(kind), kind
    assert rel.config["runtime"]["driver"] == "auto"
    assert rel.pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    policy = rel.one("NetworkPolicy")["spec"]
    control = [r for r in policy["ingress"] if r["ports"][0]["port"] == "control"]
    assert control and all(r.get("from") for r in control), "the control port must not be open to all"
    (label,) = control[0]["from"][0]["podSelector"]["matchLabels"]
    test_pod = rel.one("Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert test_pod["metadata"]["labels"][label] == "true"


def test_production_ha():
    rel = release("production-ha")
    hpa = rel.one("HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 15)
    assert hpa["scaleTargetRef"]["kind"] == "Deployment"
    targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["metrics"]}
    assert targets == {"cpu": 70, "memory": 75}
    down = hpa["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] == 300
    assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 120}]
    assert "replicas" not in rel.workload["spec"]
    assert rel.one("PodDisruptionBudget")
    (term,) = rel.pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert rel.container["lifecycle"]["preStop"]["sleep"]["seconds"] == 20
    assert rel.pod["terminationGracePeriodSeconds"] == 90
    assert rel.config["governance"]["require_virtual_key"] is True
    assert rel.config["runtime"]["driver"] == "io_uring"
    monitor = rel.one("ServiceMonitor")["spec"]
    assert monitor["endpoints"][0]["port"] == "control"
    assert monitor["selector"]["matchLabels"]["app.kubernetes.io/component"] == "control"


def test_pinned_cpu_example():
    rel = release("pinned-cpu")
    assert rel.workload["spec"]["replicas"] == 3
    assert rel.config["shards"] == 4 and rel.config["pin_cores"] is True
    assert rel.config["runtime"]["driver"] == "io_uring"
    assert rel.pod["securityContext"]["seccompProfile"]["type"] == "Localhost"


# --------------------------------------------------------------------------- rules enforced by `fail`

PINNED = {"cpu": {"mode": "pinned"}}


@pytest.mark.parametrize(
    "values, message",
    [
        ({"replicaCount": 2}, "store.type sqlite runs exactly one replica"),
        ({"autoscaling": {"enabled": True}}, "store.type sqlite runs exactly one replica"),
        (
            {**PINNED, "resources": {"requests": {"cpu": "1500m", "memory": "1Gi"}, "limits": {"cpu": "1500m", "memory": "1Gi"}}},
            "whole number of CPUs",
        ),
        (
            {**PINNED, "resources": {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "4", "memory": "1Gi"}}},
            "requests.cpu = limits.cpu",
        ),
        (
            {**PINNED, "resources": {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}},
            "requests.memory = limits.memory",
        ),
        (
            {**PINNED, "resources": {"requests": {"cpu": None}, "limits": {"cpu": "2"}}},
            "Guaranteed QoS",
        ),
        ({"termination": {"terminationGracePeriodSeconds": 44}}, "must be at least preStopSleepSeconds"),
        (
            {"termination": {"preStopSleepSeconds": 20, "drainGraceSeconds": 60, "terminationGracePeriodSeconds": 84}},
            "(20 + 60 + 5 = 85)",
        ),
        ({"config": {"providers": {"openai": {"api_key": "sk-live-123"}}}}, "never the secret itself"),
        ({"config": {"providers": {"x": {"base_url": "http://x/v1", "keys": [{"key": "sk-1"}]}}}}, "never the secret itself"),
        ({"config": {"providers": {"openai": {"api_key": "env.OPENAI_API_KEY"}}}}, "no Secret provides OPENAI_API_KEY"),
        ({"config": {"listen": "127.0.0.1:8080"}}, "config.listen is set by the chart"),
        ({"config": {"shards": 8}}, "config.shards is set by the chart"),
        ({"config": {"governance": {"database": "postgres://u:p@db/x"}}}, "config.governance.database is set by the chart"),
        ({"store": {"type": "postgres"}}, "secrets.databaseUrl: no Secret named"),
        ({"secrets": {"adminToken": {"key": "admin-token"}}}, "secrets.adminToken: no Secret named"),
        (
            {"secrets": {"existingSecret": "s", "env": [{"name": "RINGGATE_DATABASE_URL", "key": "k"}]}, "store": {"type": "postgres"}},
            "is taken",
        ),
        ({"tls": {"enabled": True}}, "tls.existingSecret"),
        ({"podDisruptionBudget": {"enabled": True, "minAvailable": 1}}, "exactly one of minAvailable and maxUnavailable"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_rule_violations_do_not_render(values, message):
    assert message in render_error(values)


def test_unconfined_seccomp_is_refused():
    # values.schema.json refuses it before the templates' own check would.
    assert "/seccomp/type" in render_error({"seccomp": {"type": "Unconfined"}})


def test_values_schema_catches_typos():
    assert "cpu" in render_error({"cpu": {"mode": "pinnned"}})
    assert "replicaCoun" in render_error({"replicaCoun": 3})


# --------------------------------------------------------------------------- seccomp profile


def test_seccomp_profile_is_the_default_plus_io_uring():
    profile = json.loads((CHART / "seccomp" / "ringgate-io-uring.json").read_text())
    # Plain OCI LinuxSeccomp: containerd reads Localhost profiles as that and would ignore
    # Docker-only conditions (includes/excludes), applying every conditional rule at once.
    assert set(profile) <= {"defaultAction", "defaultErrnoRet", "architectures", "flags", "syscalls"}
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    for rule in profile["syscalls"]:
        assert set(rule) <= {"names", "action", "args", "errnoRet"}, rule
    allowed = {
        n for r in profile["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") for n in r["names"]
    }
    assert {"io_uring_setup", "io_uring_enter", "io_uring_register"} <= allowed
    # What the runtimes' defaults keep from a container without capabilities stays out.
    for name in ("mount", "umount2", "unshare", "setns", "bpf", "kexec_load", "init_module", "reboot",
                 "clone", "pivot_root", "open_by_handle_at", "perf_event_open", "keyctl", "add_key"):
        assert name not in allowed, name
    # clone only without namespace flags.
    (clone,) = [r for r in profile["syscalls"] if r["names"] == ["clone"]]
    assert clone["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
    # What ringgate itself needs.
    for name in ("epoll_wait", "sched_setaffinity", "sched_getaffinity", "accept4", "setsockopt", "mmap"):
        assert name in allowed, name
    assert CHART.joinpath("values.yaml").read_text().count("localhostProfile: ringgate-io-uring.json") == 1


# --------------------------------------------------------------------------- the image


def test_dockerfile_is_lint_clean():
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(REPO_ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_dockerfile_shape():
    text = (REPO_ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(stages) >= 2, "multi-stage"
    assert "distroless" in stages[-1], "minimal runtime base"
    builds = re.findall(r"cargo build[^\n]*", text)
    assert len(builds) == 2 and all("--release --locked" in b for b in builds), builds
    assert "CARGO_PROFILE_RELEASE_STRIP=symbols" in text
    user = re.findall(r"^USER\s+(\S+)", text, re.M)[-1]
    assert user.split(":")[0] not in ("root", "0")
    # The dependency layer: every workspace manifest and declared target before the sources.
    deps_layer = text.split("COPY . .")[0]
    root = tomllib.loads((REPO_ROOT / "Cargo.toml").read_text())
    for member in root["workspace"]["members"]:
        manifest = Path(member) / "Cargo.toml"
        assert f"COPY {manifest}" in deps_layer or (member == "." and "COPY Cargo.toml Cargo.lock" in deps_layer), member
        crate = tomllib.loads((REPO_ROOT / manifest).read_text())
        for bench in crate.get("bench", []):
            stub = (Path(member) / "benches" / f"{bench['name']}.rs").as_posix().removeprefix("./")
            assert stub in deps_layer, stub
    assert 'CMD ["serve", "--config", "/etc/ringgate/config.yaml"]' in text
    assert "COPY examples/container.yaml /etc/ringgate/config.yaml" in text


def test_dockerignore_keeps_build_output_and_history_out():
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    for entry in ("target/", ".git/", ".venv/"):
        assert entry in ignored, entry
    for needed in ("src/", "shards/", "store/", "translate/", "mock-llm/", "examples/", "pricing/", "benches/"):
        assert needed not in ignored, needed


def test_image_config_listens_everywhere_with_a_separate_control_port(tmp_path):
    text = (REPO_ROOT / "examples" / "container.yaml").read_text()
    cfg = yaml.safe_load(text)
    assert cfg["listen"].startswith("0.0.0.0:")
    assert cfg["control"]["listen"].startswith("0.0.0.0:")
    assert cfg["listen"] != cfg["control"]["listen"]
    result = check_config(text, {}, tmp_path)
    assert result.returncode == 0, result.stderr

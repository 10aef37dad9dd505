"""The Helm chart: `helm lint --strict`, `helm template`, and every rendered object validated
against the Kubernetes JSON schemas (kubernetes-validate, bundled offline), with a real helm binary
(tools/install_helm.sh)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "rallyrobopilot"
ALL_ON = CHART / "ci" / "all-on-values.yaml"
KUBE_VERSION = "1.35"
RELEASE, NAMESPACE = "rrp", "rallyrobopilot"
POD_KINDS = {"Deployment", "Job", "Pod"}
CONTRACT_ENV = {"RRP_HOST", "RRP_PORT", "RRP_WORKERS", "RRP_MAX_INFLIGHT", "RRP_TOKEN", "RRP_EVALUATORS", "RRP_REDIS"}


def render(helm: str, *args: str, chart: Path = CHART) -> list[dict]:
    proc = subprocess.run(
        [helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", f"{KUBE_VERSION}.0", *args],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def schema_errors(objects: list[dict], kube_version: str = KUBE_VERSION) -> list[str]:
    """Every problem kubernetes-validate (strict: no unknown fields) finds; unknown kinds count too."""
    errors = []
    for obj in objects:
        where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{where}: {exc.message}")
    return errors


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, [(o["kind"], o["metadata"]["name"]) for o in objects])
    return found[0]


def pod_spec(obj: dict) -> dict:
    return obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]


def pod_labels(obj: dict) -> dict:
    return obj["metadata"]["labels"] if obj["kind"] == "Pod" else obj["spec"]["template"]["metadata"]["labels"]


def matches(selector: dict, labels: dict) -> bool:
    """Kubernetes LabelSelector semantics (matchLabels and matchExpressions)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


VALUE_SETS = {"default": [], "all-on": ["-f", str(ALL_ON)]}


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request, helm) -> tuple[str, list[dict]]:
    return request.param, render(helm, *VALUE_SETS[request.param])


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_helm_lint_strict(helm, values):
    proc = subprocess.run([helm, "lint", "--strict", str(CHART), *VALUE_SETS[values]], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("kube_version", ["1.25", KUBE_VERSION])
def test_every_rendered_object_validates(rendered, kube_version):
    """Against the schemas of the oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and
    of a current one."""
    name, objects = rendered
    assert len(objects) >= 7
    assert schema_errors(objects, kube_version) == [], name


def test_versions_and_image_names_agree():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert chart["kubeVersion"] == ">=1.25.0-0"
    assert chart["appVersion"] == pyproject["project"]["version"]
    for service, target in (("evaluator", "evaluator"), ("game", "game")):
        image = compose["services"][service]["image"]
        assert image == f"{values['image'][target]['repository']}:${{RRP_IMAGE_TAG:-{chart['appVersion']}}}"


def test_default_values_give_the_evaluator_fleet_only(helm):
    objects = render(helm)
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == [
        ("Deployment", "rrp-evaluator"),
        ("Pod", "rrp-test-readyz"),
        ("PodDisruptionBudget", "rrp-evaluator"),
        ("Role", "rrp-endpointslice-reader"),
        ("RoleBinding", "rrp-endpointslice-reader"),
        ("Service", "rrp-evaluator"),
        ("ServiceAccount", "rrp"),
    ]
    dep = one(objects, "Deployment", "rrp-evaluator")
    assert dep["spec"]["replicas"] == 4


def test_every_option_on_renders_every_object(helm):
    objects = render(helm, "-f", str(ALL_ON))
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {
        ("HorizontalPodAutoscaler", "rrp-evaluator"),
        ("NetworkPolicy", "rrp-evaluator"),
        ("NetworkPolicy", "rrp-redis"),
        ("Deployment", "rrp-redis"),
        ("Service", "rrp-redis"),
        ("Deployment", "rrp-game"),
        ("Service", "rrp-game"),
        ("Job", "rrp-ga-cluster-run"),
        ("PersistentVolumeClaim", "rrp-runs"),
        ("Deployment", "rrp-pilot"),
        ("Service", "rrp-pilot"),
        ("HorizontalPodAutoscaler", "rrp-pilot"),
        ("PersistentVolumeClaim", "rrp-models"),
        ("NetworkPolicy", "rrp-pilot"),
        ("Job", "rrp-collect-night-frames"),
    } <= names
    dep = one(objects, "Deployment", "rrp-evaluator")
    assert "replicas" not in dep["spec"], "the HPA owns the replica count"
    hpa = one(objects, "HorizontalPodAutoscaler", "rrp-evaluator")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "rrp-evaluator"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (4, 32)


def test_pods_run_with_the_restricted_security_context(rendered):
    name, objects = rendered
    pods = [o for o in objects if o["kind"] in POD_KINDS]
    assert pods
    for obj in pods:
        spec = pod_spec(obj)
        where = f"{name}: {obj['kind']}/{obj['metadata']['name']}"
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, where
        assert psc["runAsUser"] > 0, where
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["runAsNonRoot"] is True, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert set(c["resources"]) == {"requests", "limits"}, where
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) & set(c["resources"]["limits"]), where
            assert ":" in c["image"] and not c["image"].endswith(":latest"), where
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            if c["name"] != "redis":
                # read-only root: numba's cache (NUMBA_CACHE_DIR=/tmp/numba-cache) needs a writable /tmp
                assert "/tmp" in mounts, where
                volume = next(v for v in spec["volumes"] if v["name"] == mounts["/tmp"])
                assert "emptyDir" in volume, where
        assert spec.get("automountServiceAccountToken") in (False, True), where


def test_recommended_labels_everywhere(rendered):
    name, objects = rendered
    for obj in objects:
        labels = obj["metadata"]["labels"]
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                    "app.kubernetes.io/managed-by", "helm.sh/chart"):
            assert key in labels, (name, obj["kind"], obj["metadata"]["name"], key)
        assert labels["app.kubernetes.io/instance"] == RELEASE
        if obj["kind"] in POD_KINDS:
            assert "app.kubernetes.io/component" in pod_labels(obj)


def test_evaluator_deployment_service_and_probes(rendered):
    name, objects = rendered
    dep = one(objects, "Deployment", "rrp-evaluator")
    svc = one(objects, "Service", "rrp-evaluator")
    assert svc["spec"]["clusterIP"] == "None", "headless, for dns:// discovery"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    assert matches({"matchLabels": svc["spec"]["selector"]}, pod_labels(dep))
    assert matches(dep["spec"]["selector"], pod_labels(dep))
    spec = pod_spec(dep)
    assert spec["automountServiceAccountToken"] is False, "evaluators never talk to the API server"
    (c,) = spec["containers"]
    assert c["command"] == ["python", "-m", "evaluator"]
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    env = {e["name"]: e for e in c["env"]}
    assert {"RRP_HOST", "RRP_PORT", "RRP_WORKERS", "RRP_MAX_INFLIGHT"} <= set(env)
    assert env["RRP_HOST"]["value"] == "0.0.0.0" and env["RRP_PORT"]["value"] == "8000"
    assert {n for n in env if n.startswith("RRP_")} <= CONTRACT_ENV
    if name == "all-on":
        assert env["RRP_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "rrp-token", "key": "token"}
        assert env["RRP_WORKERS"]["value"] == "2" and env["RRP_MAX_INFLIGHT"]["value"] == "8"
    else:
        assert "RRP_TOKEN" not in env
    pdb = one(objects, "PodDisruptionBudget", "rrp-evaluator")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == dep["spec"]["selector"]


def test_rbac_reads_endpointslices_only(rendered):
    name, objects = rendered
    role = one(objects, "Role", "rrp-endpointslice-reader")
    assert role["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
    ]
    binding = one(objects, "RoleBinding", "rrp-endpointslice-reader")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]
    }
    sa = one(objects, "ServiceAccount", "rrp")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rrp", "namespace": NAMESPACE}]
    assert sa["automountServiceAccountToken"] is False
    for job in by_kind(objects, "Job"):
        spec = pod_spec(job)
        assert spec["serviceAccountName"] == "rrp"
        ga = pod_labels(job)["app.kubernetes.io/component"] == "ga"
        assert spec["automountServiceAccountToken"] is ga, "only k8s:// discovery needs the token"


def test_network_policy_lets_only_ga_game_and_test_pods_reach_evaluators(helm):
    objects = render(helm, "-f", str(ALL_ON))
    pol = one(objects, "NetworkPolicy", "rrp-evaluator")
    evaluator = one(objects, "Deployment", "rrp-evaluator")
    assert matches(pol["spec"]["podSelector"], pod_labels(evaluator))
    assert pol["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = pol["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    pod_peers = [p["podSelector"] for p in rule["from"] if set(p) == {"podSelector"}]

    def allowed(obj: dict) -> bool:
        return any(matches(sel, pod_labels(obj)) for sel in pod_peers)

    pods = {(o["kind"], o["metadata"]["name"]): o for o in objects if o["kind"] in POD_KINDS}
    assert allowed(pods[("Job", "rrp-ga-cluster-run")])
    assert allowed(pods[("Deployment", "rrp-game")])
    assert allowed(pods[("Pod", "rrp-test-readyz")])
    assert not allowed(pods[("Deployment", "rrp-redis")])
    assert not allowed(pods[("Deployment", "rrp-evaluator")])
    assert allowed({"kind": "Pod", "metadata": {"labels": {"rallyrobopilot.io/evaluator-client": "true"}}})
    assert not allowed({"kind": "Pod", "metadata": {"labels": {"app.kubernetes.io/component": "ga"}}}), (
        "GA pods of another release are not let in"
    )
    # the values' extra peer is appended as given
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}} in rule["from"]

    redis_pol = one(objects, "NetworkPolicy", "rrp-redis")
    redis_peers = [p["podSelector"] for p in redis_pol["spec"]["ingress"][0]["from"]]
    assert any(matches(s, pod_labels(pods[("Deployment", "rrp-game")])) for s in redis_peers)
    assert not any(matches(s, pod_labels(pods[("Deployment", "rrp-evaluator")])) for s in redis_peers)


def test_ga_job_arguments_come_from_values(helm):
    objects = render(
        helm,
        "--set", "ga.enabled=true",
        "--set", "ga.generations=7",
        "--set", "ga.population=12",
        "--set", "ga.track=hairpins",
        "--set", "ga.controller=schedule",
        "--set", "ga.seed=0",
        "--set", "ga.runName=night_1",
    )
    job = one(objects, "Job", "rrp-ga-night-1")
    (c,) = pod_spec(job)["containers"]
    assert c["command"] == ["python", "-m", "ga.run"]
    assert c["args"] == [
        "--generations", "7", "--population", "12", "--track", "hairpins", "--controller", "schedule",
        "--seed", "0", "--evaluators", f"k8s://{NAMESPACE}/rrp-evaluator", "--out", "/runs/night_1",
    ]
    assert {"name": "RRP_EVALUATORS", "value": f"k8s://{NAMESPACE}/rrp-evaluator"} in c["env"]
    assert {"mountPath": "/runs", "name": "runs"} in c["volumeMounts"]
    pvc = one(objects, "PersistentVolumeClaim", "rrp-runs")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert schema_errors(objects) == []

    # dns:// discovery needs no API token; unset optional values are left to ga.run's defaults
    objects = render(helm, "--set", "ga.enabled=true", "--set", "ga.evaluators=dns://rrp-evaluator:8000")
    job = one(objects, "Job", "rrp-ga-run1")
    spec = pod_spec(job)
    assert spec["automountServiceAccountToken"] is False
    assert spec["containers"][0]["args"] == [
        "--generations", "50", "--evaluators", "dns://rrp-evaluator:8000", "--out", "/runs/run1",
    ]


PASSWORD_ENV = {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "rrp-redis", "key": "password"}}}


def test_game_pods_record_frames_to_the_release_redis(helm):
    objects = render(helm, "--set", "game.enabled=true", "--set", "redis.enabled=true")
    (c,) = pod_spec(one(objects, "Deployment", "rrp-game"))["containers"]
    url = "redis://:$(REDIS_PASSWORD)@rrp-redis:6379/0"  # expanded by Kubernetes from the Secret
    assert c["command"] == ["python", "-m", "game"]
    assert c["args"] == ["--headless", "--port", "8200", "--mode", "realtime"], "no password on a command line"
    assert c["env"] == [{"name": "RRP_HOST", "value": "0.0.0.0"}, PASSWORD_ENV, {"name": "RRP_REDIS", "value": url}]
    without_auth = render(helm, "--set", "game.enabled=true", "--set", "redis.enabled=true",
                          "--set", "redis.auth.enabled=false")
    (c,) = pod_spec(one(without_auth, "Deployment", "rrp-game"))["containers"]
    assert c["args"][-2:] == ["--redis", "redis://rrp-redis:6379/0"]
    assert c["image"] == "rallyrobopilot-game:0.1.0"
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert one(objects, "Service", "rrp-redis")["spec"]["ports"][0]["port"] == 6379
    assert schema_errors(objects) == []


def test_helm_test_hook_checks_readyz(helm):
    objects = render(helm)
    pod = one(objects, "Pod", "rrp-test-readyz")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (c,) = pod["spec"]["containers"]
    assert c["command"][:2] == ["python", "-c"]
    assert c["command"][-1] == f"http://rrp-evaluator.{NAMESPACE}.svc:8000/readyz"
    compile(c["command"][2], "<helm-test>", "exec")
    assert pod["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize(
    "bad",
    [
        "evaluator.replicaCount=-1",
        "evaluator.replicaCountt=3",
        "game.mode=fast",
        "ga.controller=rnn",
        "ga.evaluators=evaluator:8000",
        "image.evaluator.pullPolicy=Sometimes",
        "pilot.maxBatch=0",
        "pilot.model.path=../etc",
        "collect.pods=0",
        "collect.redisUrl=frames:6379",
        "redis.maxmemory=1Gi",
        "redis.persistence.sizee=8Gi",
    ],
)
def test_values_schema_rejects_bad_values(helm, bad):
    proc = subprocess.run(
        [helm, "template", RELEASE, str(CHART), "--set", bad], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "don't meet the specifications of the schema" in proc.stderr, proc.stderr
    key = bad.split("=")[0].split(".")
    assert "/".join(key[:-1]) in proc.stderr and key[-1] in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("template", "old", "new", "expect"),
    [
        # a field that Kubernetes does not know (strict schemas reject additional properties)
        ("evaluator-deployment.yaml", "          imagePullPolicy:", "          imagePullPolicyy:", "imagePullPolicyy"),
        # a wrong type: containerPort must be an integer
        ("evaluator-deployment.yaml", "containerPort: {{ .Values.evaluator.port }}",
         "containerPort: \"{{ .Values.evaluator.port }}\"", "is not of type 'integer'"),
        # a required field missing: a Service port without its port number
        ("evaluator-service.yaml", "      port: {{ .Values.evaluator.port }}\n", "", "'port' is a required property"),
    ],
)
def test_a_broken_template_fails_validation(helm, tmp_path, template, old, new, expect):
    chart = tmp_path / "rallyrobopilot"
    shutil.copytree(CHART, chart)
    path = chart / "templates" / template
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    errors = schema_errors(render(helm, chart=chart))
    assert errors, "a broken template must not validate"
    assert any(expect in e for e in errors), errors


def test_notes_tell_how_to_start_a_ga_run(helm):
    proc = subprocess.run(
        [helm, "install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "--set ga.enabled=true" in notes
    assert f"logs -f job/{RELEASE}-ga-run1" in notes
    assert "dns://rrp-evaluator:8000" in notes and f"k8s://{NAMESPACE}/rrp-evaluator" in notes
    assert "scale deployment/rrp-evaluator" in notes


# --- the vision pilot: serving Deployment and frame collection Job ----------------------------------


def test_pilot_service_deployment_hpa_and_model_claim(helm):
    objects = render(helm, "-f", str(ALL_ON))
    dep = one(objects, "Deployment", "rrp-pilot")
    svc = one(objects, "Service", "rrp-pilot")
    assert "replicas" not in dep["spec"], "the HPA owns the replica count"
    assert svc["spec"].get("clusterIP") != "None", "one stable address, load-balanced over the pods"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8300, "targetPort": "http", "protocol": "TCP"}]
    assert matches({"matchLabels": svc["spec"]["selector"]}, pod_labels(dep))
    evaluator = one(objects, "Deployment", "rrp-evaluator")
    assert not matches({"matchLabels": svc["spec"]["selector"]}, pod_labels(evaluator))
    spec = pod_spec(dep)
    (c,) = spec["containers"]
    assert c["image"] == "rallyrobopilot-pilot:0.1.0" and c["command"] == ["python", "-m", "pilot.serve"]
    env = {e["name"]: e for e in c["env"]}
    assert env["RRP_MODEL"]["value"] == "/models/pilot/current" and env["RRP_MAX_BATCH"]["value"] == "32"
    assert env["RRP_MAX_INFLIGHT"]["value"] == "8"
    assert env["RRP_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "rrp-pilot-token", "key": "token"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert c["lifecycle"]["preStop"]["exec"]["command"][:2] == ["python", "-c"], "drained before it stops"
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in c["volumeMounts"]
    models = next(v for v in spec["volumes"] if v["name"] == "models")
    assert models["persistentVolumeClaim"] == {"claimName": "rrp-models", "readOnly": True}
    pvc = one(objects, "PersistentVolumeClaim", "rrp-models")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"] and pvc["spec"]["storageClassName"] == "standard"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    hpa = one(objects, "HorizontalPodAutoscaler", "rrp-pilot")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "rrp-pilot"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    pdb = one(objects, "PodDisruptionBudget", "rrp-pilot")
    assert pdb["spec"]["maxUnavailable"] == 1, "a drain never takes every pilot pod at once"
    assert pdb["spec"]["selector"] == dep["spec"]["selector"]

    # defaults: a fixed replica count, no token, an existing claim is used as it is
    objects = render(helm, "--set", "pilot.enabled=true", "--set", "pilot.model.existingClaim=trained")
    dep = one(objects, "Deployment", "rrp-pilot")
    assert dep["spec"]["replicas"] == 2 and not by_kind(objects, "HorizontalPodAutoscaler")
    assert not by_kind(objects, "PersistentVolumeClaim")
    (c,) = pod_spec(dep)["containers"]
    assert {e["name"]: e.get("value") for e in c["env"]} == {
        "RRP_HOST": "0.0.0.0", "RRP_PORT": "8300", "RRP_MODEL": "/models/pilot", "RRP_MAX_BATCH": "64",
        "RRP_MAX_INFLIGHT": "16"}
    assert next(v for v in pod_spec(dep)["volumes"] if v["name"] == "models")["persistentVolumeClaim"] == {
        "claimName": "trained", "readOnly": True}
    assert schema_errors(objects) == []


def test_collection_job_runs_indexed_pods_writing_to_the_release_redis(helm):
    objects = render(helm, "-f", str(ALL_ON))
    job = one(objects, "Job", "rrp-collect-night-frames")
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 6
    spec = pod_spec(job)
    assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
    (c,) = spec["containers"]
    assert c["image"] == "rallyrobopilot-game:0.1.0", "rendering needs the game image's EGL and Mesa"
    assert c["command"] == ["python", "-m", "pilot.collect"]
    assert c["args"] == ["--run", "night_frames", "--shards", "6",
                         "--workers", "2", "--episodes", "1200", "--seed", "7", "--quiet"]
    assert c["env"][:2] == [PASSWORD_ENV, {"name": "RRP_REDIS", "value": "redis://:$(REDIS_PASSWORD)@rrp-redis:6379/0"}]
    redis_pol = one(objects, "NetworkPolicy", "rrp-redis")
    peers = [p["podSelector"] for p in redis_pol["spec"]["ingress"][0]["from"]]
    assert any(matches(s, pod_labels(job)) for s in peers), "collectors reach Redis"
    pilot_pol = one(objects, "NetworkPolicy", "rrp-pilot")
    assert matches(pilot_pol["spec"]["podSelector"], pod_labels(one(objects, "Deployment", "rrp-pilot")))
    assert not matches(pilot_pol["spec"]["podSelector"], pod_labels(one(objects, "Deployment", "rrp-evaluator")))

    # an outside Redis instead of the release's
    objects = render(helm, "--set", "collect.enabled=true", "--set", "collect.redisUrl=redis://frames:6379/2")
    (c,) = pod_spec(one(objects, "Job", "rrp-collect-frames1"))["containers"]
    assert c["args"] == ["--redis", "redis://frames:6379/2", "--run", "frames1", "--shards", "4", "--workers", "1"]
    assert schema_errors(objects) == []


def test_collection_without_a_redis_is_refused(helm):
    proc = subprocess.run([helm, "template", RELEASE, str(CHART), "--set", "collect.enabled=true"],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "collect.enabled needs redis.enabled=true or collect.redisUrl" in proc.stderr


def test_notes_tell_how_to_reach_the_pilot_and_follow_collection(helm):
    proc = subprocess.run(
        [helm, "install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE, "-f", str(ALL_ON)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "port-forward svc/rrp-pilot 8300:8300" in notes and "claim rrp-models" in notes
    assert "job/rrp-collect-night-frames" in notes and "redis://rrp-redis:6379/0" in notes


def test_game_ingress_and_every_components_egress_are_restricted(helm):
    objects = render(helm, "-f", str(ALL_ON))
    pods = {o["metadata"]["labels"]["app.kubernetes.io/component"]: o for o in objects if o["kind"] in POD_KINDS}
    game_pol = one(objects, "NetworkPolicy", "rrp-game")
    assert matches(game_pol["spec"]["podSelector"], pod_labels(pods["game"]))
    (rule,) = game_pol["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    peers = [p["podSelector"] for p in rule["from"] if set(p) == {"podSelector"}]
    assert any(matches(s, pod_labels(pods["ga"])) for s in peers)
    assert not any(matches(s, {"app.kubernetes.io/component": "game"}) for s in peers), "other releases stay out"

    def egress(component: str) -> list[dict]:
        pol = one(objects, "NetworkPolicy", f"rrp-{component}-egress")
        assert pol["spec"]["policyTypes"] == ["Egress"]
        assert matches(pol["spec"]["podSelector"], pod_labels(pods[component]))
        return pol["spec"]["egress"]

    def reaches(component: str, target: str) -> bool:
        return any(matches(peer["podSelector"], pod_labels(pods[target]))
                   for rule in egress(component) for peer in rule.get("to", []) if "podSelector" in peer)

    dns = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    for component in ("evaluator", "ga", "game", "pilot", "collect", "test"):
        assert dns in egress(component)
    assert reaches("ga", "evaluator") and reaches("test", "evaluator")
    assert reaches("game", "redis") and reaches("collect", "redis")
    assert not reaches("evaluator", "redis") and not reaches("game", "evaluator") and not reaches("pilot", "redis")
    assert egress("redis") == [], "Redis talks to nobody"
    assert {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]} in egress("ga")
    extra = {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 6379, "protocol": "TCP"}]}
    assert extra in egress("game") and extra not in egress("redis")
    # off by default, as the ingress policies are
    assert not [o for o in render(helm) if o["kind"] == "NetworkPolicy"]


def test_release_redis_requires_a_password_from_a_secret(helm):
    objects = render(helm, "--set", "redis.enabled=true", "--set", "game.enabled=true")
    secret = one(objects, "Secret", "rrp-redis")
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert len(password) == 32 and password.isalnum()
    (c,) = pod_spec(one(objects, "Deployment", "rrp-redis"))["containers"]
    assert c["command"][:2] == ["sh", "-c"] and '--requirepass "$REDIS_PASSWORD"' in c["command"][2]
    assert password not in json.dumps(one(objects, "Deployment", "rrp-redis")), "only a reference to the Secret"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"]}
    assert refs == {"REDIS_PASSWORD": {"name": "rrp-redis", "key": "password"},
                    "REDISCLI_AUTH": {"name": "rrp-redis", "key": "password"}}
    given = render(helm, "--set", "redis.enabled=true", "--set", "redis.auth.password=hunter2")
    assert base64.b64decode(one(given, "Secret", "rrp-redis")["data"]["password"]) == b"hunter2"
    external = render(helm, "--set", "redis.enabled=true", "--set", "game.enabled=true",
                      "--set", "redis.auth.existingSecret=frames-redis")
    assert not [o for o in external if o["kind"] == "Secret"]
    (g,) = pod_spec(one(external, "Deployment", "rrp-game"))["containers"]
    assert g["env"][1]["valueFrom"]["secretKeyRef"]["name"] == "frames-redis"
    assert schema_errors(objects) == []


REDIS_UNITS = {"kb": 1024, "mb": 1024**2, "gb": 1024**3}
KUBE_UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def redis_server_args(container: dict) -> list[str]:
    """redis-server's arguments in the Redis container, whether given as args or inside the sh -c line."""
    if container.get("command"):
        return container["command"][2].split()
    return container["args"]


def redis_bytes(text: str) -> int:
    number, unit = text[:-2], text[-2:]
    return int(number) * REDIS_UNITS[unit.lower()]


def kube_bytes(text: str) -> int:
    return int(text[:-2]) * KUBE_UNITS[text[-2:]]


@pytest.mark.parametrize("auth", ["true", "false"])
def test_release_redis_stops_writes_below_its_memory_limit_instead_of_being_killed(helm, auth):
    """Redis's own ceiling (maxmemory) sits below the pod's memory limit and it never evicts: at the
    ceiling writes fail (the game counts drops, pilot.collect backs off) rather than the kernel killing
    Redis, which came back empty. No persistence unless asked for."""
    objects = render(helm, "--set", "redis.enabled=true", "--set", f"redis.auth.enabled={auth}")
    deployment = one(objects, "Deployment", "rrp-redis")
    (c,) = pod_spec(deployment)["containers"]
    args = [a.strip('"') for a in redis_server_args(c)]
    maxmemory = redis_bytes(args[args.index("--maxmemory") + 1])
    assert 0 < maxmemory < kube_bytes(c["resources"]["limits"]["memory"])
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert args[args.index("--appendonly") + 1] == "no"
    assert pod_spec(deployment)["volumes"] == [{"name": "data", "emptyDir": {}}]
    assert not by_kind(objects, "PersistentVolumeClaim")
    assert schema_errors(objects) == []


def test_release_redis_append_only_file_on_a_claim(helm):
    """redis.persistence.enabled: an append-only file on a PVC of its own (kept on uninstall), or on
    an existing claim; the memory ceiling stays."""
    objects = render(helm, "--set", "redis.enabled=true", "--set", "redis.persistence.enabled=true",
                     "--set", "redis.persistence.size=20Gi", "--set", "redis.persistence.storageClass=fast")
    claim = one(objects, "PersistentVolumeClaim", "rrp-redis-data")
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert claim["spec"]["storageClassName"] == "fast" and claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    spec = pod_spec(one(objects, "Deployment", "rrp-redis"))
    assert spec["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "rrp-redis-data"}}]
    (c,) = spec["containers"]
    assert c["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    args = redis_server_args(c)
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert spec["securityContext"]["fsGroup"] == 999, "the claim is writable by Redis's user"
    assert schema_errors(objects) == []
    existing = render(helm, "--set", "redis.enabled=true", "--set", "redis.persistence.enabled=true",
                      "--set", "redis.persistence.existingClaim=frames")
    assert not by_kind(existing, "PersistentVolumeClaim")
    assert pod_spec(one(existing, "Deployment", "rrp-redis"))["volumes"][0]["persistentVolumeClaim"] == {
        "claimName": "frames"}

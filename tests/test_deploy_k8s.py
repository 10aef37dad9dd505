"""k8s/: plain manifests generated from the chart with default values, kept in sync with it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "k8s" / "rallyrobopilot.yaml"


def test_k8s_manifests_match_a_fresh_render_of_the_chart(helm):
    proc = subprocess.run(
        ["bash", str(ROOT / "tools" / "render_k8s.sh"), "--stdout"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HELM": helm},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == MANIFEST.read_text(), "k8s/ is stale: run tools/render_k8s.sh"


def test_k8s_manifests_validate_against_the_kubernetes_schemas():
    objects = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["Deployment", "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount"]
    for obj in objects:
        kubernetes_validate.validate(obj, "1.35", strict=True)
        assert obj["metadata"]["namespace"] == "rallyrobopilot"
        assert not any(k.startswith("helm.sh/hook") for k in obj["metadata"].get("annotations", {}))


def test_plain_manifests_run_the_same_fleet_as_the_chart():
    objects = {o["kind"]: o for o in yaml.safe_load_all(MANIFEST.read_text()) if o}
    dep = objects["Deployment"]
    assert dep["metadata"]["name"] == "rrp-evaluator" and dep["spec"]["replicas"] == 4
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "rallyrobopilot-evaluator:0.1.0"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert objects["Service"]["spec"]["clusterIP"] == "None"

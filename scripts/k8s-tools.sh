#!/usr/bin/env bash
# What the tests of deploy/k8s need (tests/deploy/test_k8s.py): kubectl, whose built-in
# kustomize renders the overlays, and KEDA's CRD schemas, compiled, from the npm registry.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v kubectl >/dev/null 2>&1; then
  echo "installing kubectl for the manifests' tests"
  if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get install -y -q kubectl >/dev/null 2>&1 \
    || { "${sudo[@]}" apt-get update -q >/dev/null && "${sudo[@]}" apt-get install -y -q kubectl >/dev/null; }
fi
# kustomize v5 (kubectl 1.27 and newer) reads the `labels` and `patches` the overlays use.
minor=$(kubectl version --client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["minor"].rstrip("+"))')
if [ "$minor" -lt 27 ]; then
  echo "kubectl 1.$minor is too old to render deploy/k8s: install kubectl 1.27 or newer" >&2
  exit 1
fi
target=build/keda-validator
digest=$(cat tests/deploy/keda/package.json tests/deploy/keda/package-lock.json | sha256sum | cut -c1-16)
mkdir -p "$target"
cp tests/deploy/keda/package.json tests/deploy/keda/package-lock.json tests/deploy/keda/validate.mjs "$target/"
if [ "$(cat "$target/.digest" 2>/dev/null)" != "$digest" ]; then
  echo "installing KEDA's schemas (@kubernetes-models/keda) for the manifests' tests"
  (cd "$target" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$digest" > "$target/.digest"
fi

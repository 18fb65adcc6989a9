"""deploy/k8s: each overlay renders (kubectl's kustomize), every object validates against the
Kubernetes schemas (kubernetes-validate, strict) and KEDA's CRD schemas (@kubernetes-models/keda,
installed by ``scripts/k8s-tools.sh``), and every name the manifests share with the code holds:
settings, CLI commands and options, each family's queue and the Redis lists KEDA reads, probe
routes, metrics ports.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from api.app import create_app
from cli import app as cli_app
from shared.catalogue import CATALOGUE
from shared.config import Settings
from shared.queue import queue_lists
from tests.deploy.compose import ROOT, options_of, subcommand_of

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("small", "large")
KUBERNETES_VERSION = "1.32"
KEDA_VALIDATOR = ROOT / "build" / "keda-validator"
CRD_KINDS = {"ScaledObject", "TriggerAuthentication"}
FAMILIES = sorted({entry.family for entry in CATALOGUE.values()})


def render(overlay: str, root: Path = K8S) -> list[dict[str, Any]]:
    done = subprocess.run(
        ["kubectl", "kustomize", str(root / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


RENDERED = {overlay: render(overlay) for overlay in OVERLAYS}


def objects(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in RENDERED[overlay] if o["kind"] == kind}


def pod_specs(overlay: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in RENDERED[overlay]:
        if obj["kind"] in ("Deployment", "Job"):
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def containers(overlay: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, spec in pod_specs(overlay):
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            yield f"{name}/{container['name']}", container


def settings_of(overlay: str) -> Settings:
    """The settings a pod of this overlay reads (ConfigMap and Secret)."""
    env = {**objects(overlay, "ConfigMap")["darkroom-settings"]["data"]}
    env.update(objects(overlay, "Secret")["darkroom-secrets"]["stringData"])
    return Settings(**{k.removeprefix("DARKROOM_").lower(): v for k, v in env.items()})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    for obj in RENDERED[overlay]:
        if obj["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_objects_validate_against_kedas_crd_schemas(overlay: str) -> None:
    keda = [obj for obj in RENDERED[overlay] if obj["kind"] in CRD_KINDS]
    assert {obj["kind"] for obj in keda} == CRD_KINDS
    done = subprocess.run(
        ["node", str(KEDA_VALIDATOR / "validate.mjs")],
        input=json.dumps(keda),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=KEDA_VALIDATOR,
    )
    assert done.returncode == 0, done.stderr
    failures = [r for r in json.loads(done.stdout) if r["errors"]]
    assert failures == []


def test_the_keda_validator_refuses_a_broken_scaled_object() -> None:
    """The check above can fail: a ScaledObject without a target or triggers is refused."""
    broken = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "x"}}
    broken["spec"] = {"scaleTargetRef": {}, "triggers": "redis", "maxReplicaCount": "many"}
    done = subprocess.run(
        ["node", str(KEDA_VALIDATOR / "validate.mjs")],
        input=json.dumps([broken]),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=KEDA_VALIDATOR,
    )
    (result,) = json.loads(done.stdout)
    assert result["errors"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_named_is_a_setting(overlay: str) -> None:
    fields = set(Settings.model_fields)
    named = set(objects(overlay, "ConfigMap")["darkroom-settings"]["data"])
    named |= set(objects(overlay, "Secret")["darkroom-secrets"]["stringData"])
    for _, container in containers(overlay):
        named |= {e["name"] for e in container.get("env", []) if e["name"].startswith("DARKROOM_")}
    unknown = {
        name
        for name in named
        if name.removeprefix("DARKROOM_").lower().split("__")[0] not in fields
    }
    assert unknown == set()
    settings_of(overlay)  # and their values parse


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_commands_and_options_exist_in_the_cli(overlay: str) -> None:
    for where, container in containers(overlay):
        argv = container["command"]
        if argv[0] == "celery":
            assert where.startswith("darkroom-flower"), where
            continue
        assert argv[0] == "darkroom", where
        words = subcommand_of(argv)
        result = CliRunner().invoke(cli_app, [*words, "--help"])
        assert result.exit_code == 0, f"{where}: `darkroom {' '.join(words)}` is not a command"
        for option in options_of(argv):
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", result.output), (
                f"{where}: `darkroom {' '.join(words)}` has no option {option}"
            )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_scaled_worker_per_family_reading_that_familys_redis_lists(overlay: str) -> None:
    settings = settings_of(overlay)
    deployments = objects(overlay, "Deployment")
    scaled = objects(overlay, "ScaledObject")
    auth = objects(overlay, "TriggerAuthentication")
    broker = make_url(settings.broker_url)
    redis_address = objects(overlay, "Secret")["darkroom-redis"]["stringData"]["address"]
    assert redis_address == f"{broker.host}:{broker.port}"  # KEDA reads the workers' broker
    served = set()
    for family in FAMILIES:
        name = f"darkroom-worker-{family}"
        worker = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert options_of(worker["command"])["--queues"] == family
        served.add(family)
        scaler = scaled[name]["spec"]
        assert scaler["scaleTargetRef"]["name"] == name
        assert scaler["minReplicaCount"] == 0 and scaler["maxReplicaCount"] >= 1
        lists = [t["metadata"]["listName"] for t in scaler["triggers"]]
        assert lists == queue_lists(settings.queue_for(family))
        for trigger in scaler["triggers"]:
            assert trigger["type"] == "redis"
            assert trigger["authenticationRef"]["name"] in auth
            assert trigger["metadata"]["databaseIndex"] == broker.database
    assert served == set(FAMILIES)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_hit_real_routes_and_metrics_ports_match(overlay: str) -> None:
    settings = settings_of(overlay)
    routes = set(create_app(settings).openapi()["paths"])
    for name, spec in pod_specs(overlay):
        container = spec["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        for probe in ("readinessProbe", "livenessProbe"):
            if probe not in container:
                continue
            http = container[probe]["httpGet"]
            port = ports[http["port"]]
            if name == "darkroom-api":
                assert http["path"] in routes and port == 8000
            elif name.startswith("darkroom-worker-"):
                assert http["path"] == "/metrics" and port == settings.worker_metrics_port
            else:
                assert name == "darkroom-flower" and http["path"] == "/healthcheck"
    api = objects(overlay, "Deployment")["darkroom-api"]["spec"]["template"]["spec"]
    assert {"readinessProbe", "livenessProbe"} <= set(api["containers"][0])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scraped_pods_annotate_the_ports_they_serve_metrics_on(overlay: str) -> None:
    settings = settings_of(overlay)
    for name, obj in objects(overlay, "Deployment").items():
        notes = obj["spec"]["template"]["metadata"].get("annotations", {})
        if notes.get("prometheus.io/scrape") != "true":
            assert name in ("darkroom-flower", "darkroom-maintenance")
            continue
        served = {
            p["containerPort"] for p in obj["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        assert (
            int(notes["prometheus.io/port"]) in served and notes["prometheus.io/path"] == "/metrics"
        )
        if name.startswith("darkroom-worker-"):
            assert int(notes["prometheus.io/port"]) == settings.worker_metrics_port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_get_a_gpu_and_time_to_finish_their_job(overlay: str) -> None:
    settings = settings_of(overlay)
    for name, spec in pod_specs(overlay):
        limits = spec["containers"][0].get("resources", {}).get("limits", {})
        if name.startswith("darkroom-worker-"):
            assert limits["nvidia.com/gpu"] == 1
            assert spec["terminationGracePeriodSeconds"] > settings.job_soft_time_limit_s
            assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
        else:
            assert "nvidia.com/gpu" not in limits  # the API never imports torch


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nothing_starts_before_the_migration(overlay: str) -> None:
    (job,) = objects(overlay, "Job").values()
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "darkroom",
        "db",
        "upgrade",
    ]
    for name, spec in pod_specs(overlay):
        if name.startswith(("darkroom-api", "darkroom-worker-", "darkroom-maintenance")):
            (init,) = spec["initContainers"]
            assert subcommand_of(init["command"]) == ["db", "check"]
            assert float(options_of(init["command"])["--wait"]) > 0
    hpa = objects(overlay, "HorizontalPodAutoscaler")["darkroom-api"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "darkroom-api"


def test_the_overlays_cap_each_family_for_their_cluster() -> None:
    caps = {
        overlay: {
            n: o["spec"]["maxReplicaCount"] for n, o in objects(overlay, "ScaledObject").items()
        }
        for overlay in OVERLAYS
    }
    assert caps["small"]["darkroom-worker-darkroom"] == 2
    assert set(caps["small"].values()) == {1, 2}
    assert caps["large"]["darkroom-worker-darkroom"] == 32
    assert all(caps["large"][n] > caps["small"][n] for n in caps["small"])
    for overlay in OVERLAYS:
        assert {
            o["metadata"]["namespace"] for o in RENDERED[overlay] if o["kind"] != "Namespace"
        } == {"darkroom"}


def kustomization(overlay: str) -> dict[str, Any]:
    return yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_each_family_on_the_sum_of_its_two_lists(overlay: str) -> None:
    """KEDA hands the HPA one metric per trigger and the HPA follows the largest, so ten jobs
    handed back plus ten new ones would ask for as many workers as ten. A formula adding the
    named triggers makes one metric of the whole queue."""
    for name, scaled in objects(overlay, "ScaledObject").items():
        spec = scaled["spec"]
        names = [trigger.get("name") or "" for trigger in spec["triggers"]]
        assert all(n.isidentifier() for n in names) and len(set(names)) == len(names), name
        modifiers = spec["advanced"]["scalingModifiers"]
        terms = [term.strip() for term in modifiers["formula"].split("+")]
        assert sorted(terms) == sorted(names), f"{name}: {modifiers['formula']!r}"
        assert modifiers.get("metricType", "AverageValue") == "AverageValue", name
        # Jobs per worker, as each list's trigger says; one job on either list wakes a worker.
        per_worker = {trigger["metadata"]["listLength"] for trigger in spec["triggers"]}
        assert per_worker == {modifiers["target"]}, name
        assert float(modifiers.get("activationTarget", "0")) == 0, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_an_image_its_overlay_names(overlay: str) -> None:
    images = kustomization(overlay)["images"]
    assert {image["name"] for image in images} == {"darkroom-api", "darkroom-worker"}
    named = {f"{image['newName']}:{image['newTag']}" for image in images}
    assert {container["image"] for _, container in containers(overlay)} == named


def test_the_readme_builds_pushes_and_points_the_images_the_overlays_name() -> None:
    readme = (ROOT / "deploy" / "README.md").read_text()
    (pointed,) = re.findall(r"kustomize edit set image((?:\s+\\?\s*\S+=\S+)+)", readme)
    refs = dict(pair.split("=", 1) for pair in pointed.replace("\\", " ").split())
    assert set(refs) == {image["name"] for image in kustomization("small")["images"]}
    built = dict(re.findall(r"docker build -f deploy/Dockerfile\.(\w+) -t (\S+) \.", readme))
    pushed = set(re.findall(r"docker push (\S+)", readme))
    for name, ref in refs.items():
        assert built[name.removeprefix("darkroom-")] == ref and ref in pushed, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_maintenance_always_runs_without_a_gpu_or_torch(overlay: str) -> None:
    """KEDA takes every worker family down to zero, and with it the threads that reap dead
    workers' jobs, re-send jobs the broker lost, send webhooks and expire results: a job whose
    message was lost would stay queued with nothing to start a worker. One small pod does all
    of that whatever the queues hold, on the image that has no torch."""
    deployments = objects(overlay, "Deployment")
    maintenance = deployments["darkroom-maintenance"]["spec"]
    assert maintenance["replicas"] == 1
    scaled = {
        o["spec"]["scaleTargetRef"]["name"] for o in objects(overlay, "ScaledObject").values()
    }
    scaled |= {
        o["spec"]["scaleTargetRef"]["name"]
        for o in objects(overlay, "HorizontalPodAutoscaler").values()
    }
    assert "darkroom-maintenance" not in scaled
    (container,) = maintenance["template"]["spec"]["containers"]
    assert container["command"][0] == "darkroom"
    assert subcommand_of(container["command"]) == ["maintenance"]
    api = deployments["darkroom-api"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == api["image"]
    refs = {
        ref.get("configMapRef", ref.get("secretRef", {}))["name"] for ref in container["envFrom"]
    }
    assert refs == {"darkroom-settings", "darkroom-secrets"}
    resources = container["resources"]
    assert "memory" in resources["limits"] and "memory" in resources["requests"]
    assert "nvidia.com/gpu" not in resources["limits"]
    assert "nodeSelector" not in maintenance["template"]["spec"]

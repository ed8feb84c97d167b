"""The cluster recipe (docker/ray-cluster.yaml) is a configuration `ray up` accepts: checked offline
with Ray's own validator (the schema and the defaults `ray up` fills in before it launches anything),
and it starts the same set-up and the same pinned Ray as this checkout."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import tomllib
import yaml

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "docker" / "ray-cluster.yaml"


def ray_up_check(config: dict) -> dict:
    """What `ray up` does with a config before it contacts the cloud: fill in defaults, validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_the_cluster_recipe_passes_rays_validator():
    prepared = ray_up_check(yaml.safe_load(RECIPE.read_text()))
    assert prepared["head_node_type"] in prepared["available_node_types"]
    assert prepared["file_mounts"] == {"/opt/edge-runtime": "."}


def test_the_validator_refuses_a_broken_recipe():
    """The check above can fail: a misspelt key and a wrong type are refused."""
    config = yaml.safe_load(RECIPE.read_text())
    with pytest.raises(jsonschema.ValidationError):
        ray_up_check({**config, "max_worker": 4})
    broken = copy.deepcopy(config)
    broken["available_node_types"]["replay"]["max_workers"] = "many"
    with pytest.raises(jsonschema.ValidationError):
        ray_up_check(broken)


def test_every_node_runs_the_projects_setup_and_its_pinned_ray():
    config = yaml.safe_load(RECIPE.read_text())
    assert any("bash scripts/setup.sh" in c for c in config["setup_commands"])
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "ray==" in " ".join(pyproject["project"]["optional-dependencies"]["fleet"])
    assert "fleet" in re.search(r'pip install -e "\.\[([^]]*)\]"', (REPO / "scripts" / "setup.sh").read_text())[1]
    for command in [*config["head_start_ray_commands"], *config["worker_start_ray_commands"]]:
        assert command.startswith("/opt/edge-runtime/.venv/bin/ray "), command  # the venv's pinned ray
    head = " ".join(config["head_start_ray_commands"])
    assert "--ray-client-server-port=10001" in head and "--include-dashboard=false" in head


def test_the_runtime_package_never_imports_ray():
    """The device runtime (edge/) stays free of Ray; only fleet/ imports it, inside its commands."""
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "edge").rglob("*.py")
                 if re.search(r"^\s*(import ray|from ray)\b", p.read_text(), re.MULTILINE)]
    assert offenders == []
    for path in (REPO / "fleet").rglob("*.py"):
        assert not re.search(r"^(import ray|from ray)\b", path.read_text(), re.MULTILINE), (
            f"{path.name} imports ray at module level: `edge --help` would load it")


RAYJOB = REPO / "docker" / "kuberay-rayjob.yaml"


def kuberay_check(rayjob: dict) -> dict:
    """What KubeRay's autoscaler does with the cluster this RayJob starts: derive Ray's cluster config
    from the RayCluster spec (Ray's own code for KubeRay) and validate it with Ray's validator."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    assert (rayjob["apiVersion"], rayjob["kind"]) == ("ray.io/v1", "RayJob")
    ray_cr = {"metadata": {"name": rayjob["metadata"]["name"], "namespace": "default"},
              "spec": rayjob["spec"]["rayClusterSpec"]}
    return _derive_autoscaling_config_from_ray_cr(copy.deepcopy(ray_cr))


def test_the_rayjob_manifest_passes_rays_kuberay_validator():
    rayjob = yaml.safe_load(RAYJOB.read_text())
    config = kuberay_check(rayjob)
    head = config["available_node_types"][config["head_node_type"]]
    replay = config["available_node_types"]["replay"]
    assert head["resources"]["CPU"] == 0  # the head replays nothing
    assert replay["resources"]["CPU"] == 16 and replay["max_workers"] == 16
    entrypoint = rayjob["spec"]["entrypoint"].split()
    assert entrypoint[:3] == ["/opt/edge-runtime/.venv/bin/edge", "fleet", "replay"]
    workers = int(entrypoint[entrypoint.index("--workers") + 1])
    assert workers == replay["resources"]["CPU"] * rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"]
    assert rayjob["spec"]["shutdownAfterJobFinishes"] is True


def test_the_rayjob_runs_the_pinned_ray_and_one_image_and_volume_everywhere():
    rayjob = yaml.safe_load(RAYJOB.read_text())
    cluster = rayjob["spec"]["rayClusterSpec"]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pin = next(d for d in pyproject["project"]["optional-dependencies"]["fleet"] if d.startswith("ray=="))
    assert cluster["rayVersion"] == pin.removeprefix("ray==")
    pods = [cluster["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]
    assert len({pod["containers"][0]["image"] for pod in pods}) == 1
    entrypoint = rayjob["spec"]["entrypoint"].split()
    paths = [entrypoint[entrypoint.index(flag) + 1] for flag in ("--logs", "--bundle", "--out")]
    for pod in pods:  # every pod sees the logs and the bundle at the same path (the workers read them)
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = pod["containers"][0]["volumeMounts"]
        assert all(any(p.startswith(m["mountPath"] + "/") and m["name"] in volumes for m in mounts) for p in paths)


def test_the_kuberay_validator_refuses_a_broken_manifest():
    """The check above can fail: a group without its replica bounds, a CPU count that is not one."""
    rayjob = yaml.safe_load(RAYJOB.read_text())
    broken = copy.deepcopy(rayjob)
    del broken["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplicas"]
    with pytest.raises(KeyError):
        kuberay_check(broken)
    broken = copy.deepcopy(rayjob)
    broken["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["minReplicas"] = "none"
    with pytest.raises((jsonschema.ValidationError, TypeError)):
        kuberay_check(broken)
    broken = copy.deepcopy(rayjob)
    broken["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"] = {
        "limits": {"cpu": "sixteen"}}
    with pytest.raises(ValueError):
        kuberay_check(broken)

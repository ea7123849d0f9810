"""The deployment files agree with the schemas they are written for and with the server they
deploy: Kubernetes manifests against the Kubernetes API's JSON schemas (kubernetes-validate,
strict: no unknown field), compose.yaml against the Compose spec and the CI workflow against
GitHub's workflow schema (both vendored by check-jsonschema), offline. Then the facts that no
schema knows: env names are real settings, probes and scrapes hit open routes, every metric a
dashboard panel asks for is one the server exports, names and ports match across files."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from pocketserve.api.app import create_app
from pocketserve.config import Settings
from pocketserve.serving.metrics import Metrics, WorkerSnapshot

ROOT = Path(__file__).parents[2]
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.37.0"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _kinds() -> dict[str, dict[str, Any]]:
    found = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] not in found, f"two {doc['kind']}s"
            found[doc["kind"]] = doc
    return found


def _vendored_schema(name: str) -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath(f"{name}.json").read_text())
    return schema


def _validate(document: Any, schema: dict[str, Any]) -> None:
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def _setting_of(env_name: str) -> str:
    """The Settings field an env var sets; fails for a name the server would ignore."""
    assert env_name.startswith("POCKETSERVE_"), env_name
    field = env_name.removeprefix("POCKETSERVE_").lower()
    assert field in Settings.model_fields, f"{env_name} is no setting"
    return field


@cache
def _answers_without_key(path: str) -> bool:
    """Whether a server that requires keys answers GET `path` with 200 to a caller with none
    (what a probe or a scraper is)."""
    from fastapi.testclient import TestClient

    with TestClient(create_app(Settings(models=[], api_keys=["sk-k"]))) as client:
        return client.get(path).status_code == 200


@cache
def exported_series() -> frozenset[str]:
    """Every series name /metrics can show: each family of the request-path metrics by its
    type, and the per-worker ones as rendered for one worker."""
    metrics = Metrics()
    metrics.watch_workers(lambda: [WorkerSnapshot(
        model="m", state="ready", memory_bytes=1, restarts=0, active=0, events=0,
        cpu={"threads": 1, "priority": "normal", "weight": 2, "wait_s": 0.0})])
    names = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",)}
    for family in metrics.registry.collect():
        names |= {family.name + s for s in suffixes[family.type]}
    rendered = {line.split("{")[0].split(" ")[0]
                for line in metrics.render().decode().splitlines() if not line.startswith("#")}
    assert rendered <= names, rendered - names  # the type rule covers what is rendered
    return frozenset(names)


# -- Kubernetes ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifest_is_valid_kubernetes(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert "namespace" not in doc["metadata"]  # applied into the namespace one chooses


def test_schema_validation_catches_a_misspelt_field() -> None:
    deployment = _kinds()["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_the_kit_has_every_part_and_kustomize_lists_them() -> None:
    kinds = _kinds()
    assert set(kinds) == {"Deployment", "Service", "HorizontalPodAutoscaler", "Secret",
                          "NetworkPolicy"}
    kustomization = _load(K8S / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS)
    image = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert [i["name"] for i in kustomization["images"]] == [image.split(":")[0]]


def test_deployment_probes_keys_volumes_and_security(tmp_path: Path) -> None:
    kinds = _kinds()
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": Settings().port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert _answers_without_key(get["path"]) and get["port"] in ports, probe
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])

    env = {e["name"]: e for e in container["env"]}
    for name in env:
        _setting_of(name)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == set(volumes)
    keys_file = Path(env["POCKETSERVE_API_KEYS_FILE"]["value"])
    secret_volume = next(v for v in volumes.values() if "secret" in v)["secret"]
    secret = kinds["Secret"]
    assert secret_volume["secretName"] == secret["metadata"]["name"]
    (item,) = secret_volume["items"]
    assert keys_file == Path(mounts["api-keys"]) / item["path"]
    assert item["key"] in secret["stringData"]
    (tmp_path / "api_keys").write_text(secret["stringData"][item["key"]])
    keys = Settings(api_keys_file=tmp_path / "api_keys").all_api_keys()
    assert len(keys) == 1 and keys[0].startswith("sk-")  # the server reads the example

    # The image's volumes are mounted (and /tmp), so the root filesystem can be read-only.
    assert set(_dockerfile_volumes()) | {"/tmp"} <= set(mounts.values())
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == _dockerfile_user()
    assert pod["terminationGracePeriodSeconds"] > Settings().shutdown_grace_s


def test_service_hpa_and_network_policy_point_at_the_pods() -> None:
    kinds = _kinds()
    deployment = kinds["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = kinds["Service"]["spec"]
    assert service["selector"].items() <= labels.items()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert [p["targetPort"] for p in service["ports"]] == [container["ports"][0]["name"]]
    target = kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    policy = kinds["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [
        container["ports"][0]["containerPort"]]
    assert policy["egress"] == [] and "Egress" in policy["policyTypes"]  # calls no one


# -- Compose, Prometheus, Grafana -----------------------------------------------------------


COMPOSE = _load(ROOT / "compose.yaml")


def test_compose_file_fits_the_compose_spec() -> None:
    _validate(COMPOSE, _vendored_schema("compose-spec"))
    broken = {**COMPOSE, "services": {"pocketserve": {"healthchek": {"test": ["CMD", "x"]}}}}
    with pytest.raises(AssertionError):
        _validate(broken, _vendored_schema("compose-spec"))


def test_compose_serves_with_keys_health_restart_and_volumes() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"pocketserve", "prometheus", "grafana"}
    assert all(s["restart"] == "unless-stopped" for s in services.values())
    server = services["pocketserve"]
    for name in server["environment"]:
        _setting_of(name)
    (secret,) = server["secrets"]
    keys_file = f"/run/secrets/{secret['target']}"
    assert server["environment"]["POCKETSERVE_API_KEYS_FILE"] == keys_file
    assert re.search(rf"POCKETSERVE_API_KEYS_FILE={keys_file}\b", DOCKERFILE)
    example = ROOT / COMPOSE["secrets"][secret["source"]]["file"]
    assert Path(f"{example}.example").is_file()
    assert "/health" in " ".join(server["healthcheck"]["test"])
    mounted = {v.split(":")[1] for v in server["volumes"]}
    assert mounted == set(_dockerfile_volumes())
    for service in services.values():  # every file a service mounts is in the repository
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source


def test_prometheus_scrapes_the_compose_service_on_an_open_route() -> None:
    config = _load(ROOT / "deploy" / "prometheus" / "prometheus.yml")
    (job,) = config["scrape_configs"]
    assert _answers_without_key(job["metrics_path"])
    (target,) = [t for group in job["static_configs"] for t in group["targets"]]
    host, port = target.split(":")
    assert host in COMPOSE["services"]
    assert int(port) == Settings().port
    mount = next(v for v in COMPOSE["services"]["prometheus"]["volumes"]
                 if v.startswith("./deploy/prometheus/"))
    config_flag = next(c for c in COMPOSE["services"]["prometheus"]["command"]
                       if c.startswith("--config.file="))
    assert mount.split(":")[1] == config_flag.split("=", 1)[1]


GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = json.loads((GRAFANA / "dashboards" / "pocketserve.json").read_text())


def test_every_dashboard_query_names_metrics_the_server_exports() -> None:
    exported = exported_series()
    wanted = {"pocketserve_requests_total", "pocketserve_request_duration_seconds_bucket",
              "pocketserve_output_tokens_total", "pocketserve_queue_depth",
              "pocketserve_worker_memory_bytes"}  # requests, latency, tokens/s, queue, memory
    asked: set[str] = set()
    for panel in DASHBOARD["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\bpocketserve_[a-z_]+", target["expr"]))
            assert names, (panel["title"], target["expr"])
            assert names <= exported, (panel["title"], names - exported)
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            asked |= names
    assert wanted <= asked
    variable = DASHBOARD["templating"]["list"][0]
    assert set(re.findall(r"\bpocketserve_[a-z_]+", variable["definition"])) <= exported


def test_grafana_provisioning_matches_compose_and_the_dashboard() -> None:
    (source,) = _load(GRAFANA / "provisioning" / "datasources" / "prometheus.yaml")[
        "datasources"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in COMPOSE["services"]
    uids = {p["datasource"]["uid"] for p in DASHBOARD["panels"]}
    assert uids == {source["uid"]}
    (provider,) = _load(GRAFANA / "provisioning" / "dashboards" / "pocketserve.yaml")[
        "providers"]
    mounts = dict(v.split(":")[:2] for v in COMPOSE["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))


# -- Dockerfile and CI ---------------------------------------------------------------------


def _dockerfile_volumes() -> list[str]:
    (line,) = [ln for ln in DOCKERFILE.splitlines() if ln.startswith("VOLUME ")]
    volumes: list[str] = json.loads(line.removeprefix("VOLUME "))
    return volumes


def _dockerfile_user() -> str:
    (line,) = [ln for ln in DOCKERFILE.splitlines() if ln.startswith("USER ")]
    return line.split()[1].split(":")[0]


def test_dockerfile_is_multi_stage_non_root_with_models_and_healthcheck() -> None:
    instructions = [ln.split()[0] for ln in DOCKERFILE.splitlines()
                    if ln and not ln.startswith(("#", " "))]
    assert instructions[0] == "ARG" and DOCKERFILE.startswith("#")  # BASE, before any FROM
    assert instructions.count("FROM") == 2
    assert "COPY --from=builder" in DOCKERFILE
    assert _dockerfile_user() != "0" and _dockerfile_user().isdigit()
    assert "-c constraints.txt" in DOCKERFILE and "--no-deps -r models.txt" in DOCKERFILE
    assert re.search(r"HEALTHCHECK .*\n.*/health", DOCKERFILE)
    assert f"EXPOSE {Settings().port}" in DOCKERFILE
    for name in re.findall(r"\b(POCKETSERVE_[A-Z_]+)=", DOCKERFILE):
        _setting_of(name)
    assert "POCKETSERVE_HOST=0.0.0.0" in DOCKERFILE
    # The build context keeps out what the image does not need.
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[ignored.index("*") + 1:] and "!pocketserve" in ignored


def test_ci_workflow_fits_github_schema_then_tests_and_builds() -> None:
    workflow = _load(ROOT / ".github" / "workflows" / "ci.yml")
    workflow["on"] = workflow.pop(True)  # YAML 1.1 reads the key `on` as true; GitHub does not
    _validate(workflow, _vendored_schema("github-workflows"))
    steps = [s.get("run", "") for job in workflow["jobs"].values() for s in job["steps"]]
    assert "make test" in steps
    build = next(i for i, s in enumerate(steps) if s.startswith("docker build"))
    assert build > steps.index("make test")
    assert workflow["jobs"]["image"]["needs"] == "test"

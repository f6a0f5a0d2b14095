"""deploy/ and docker-compose.yml: they parse, and they keep the image's and monitor's promises.

No cluster and no Docker daemon are needed: manifests are checked as data, against the
Dockerfile, the CLI's parser and the config models. promtool and amtool (Debian packages that
``dev.py`` installs) check the Prometheus and Alertmanager files; kubectl and the docker compose
plugin, when present, render the kustomization and the compose file (both offline).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.cli import build_parser
from monitor.config import parse_config
from monitor.fakes import x as fake_x
from monitor.fakes.server import fake_arguments
from tests.test_prometheus_rules import require_tool

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml"), COMPOSE_FILE])
NOT_RESOURCES = {"kustomization.yaml", "prometheus-scrape.yaml", "secret.example.yaml"}
STATE_DIR = "/var/lib/account-monitor"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name not in {"kustomization.yaml", "prometheus-scrape.yaml"}:
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def manifest(kind: str) -> dict[str, Any]:
    (found,) = [d for d in manifests() if d["kind"] == kind]
    return found


def dockerfile(instruction: str) -> str:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    rows = [line.strip().partition(" ")[2] for line in text.splitlines()
            if line.strip().upper().startswith(instruction + " ")]
    return rows[-1]


def dockerfile_volume() -> str:
    (volume,) = json.loads(dockerfile("VOLUME"))
    return str(volume)


def container() -> dict[str, Any]:
    (found,) = manifest("StatefulSet")["spec"]["template"]["spec"]["containers"]
    return found


def pod_labels() -> dict[str, str]:
    return dict(manifest("StatefulSet")["spec"]["template"]["metadata"]["labels"])


def compose() -> dict[str, Any]:
    return dict(load(COMPOSE_FILE))


def service(name: str) -> dict[str, Any]:
    return dict(compose()["services"][name])


def mounts(svc: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Container path -> (source, mode) of a compose service's short-syntax volumes."""
    found: dict[str, tuple[str, str]] = {}
    for spec in svc.get("volumes", []):
        spec = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", spec)  # ${VAR:-default}: the default
        source, target, *mode = spec.split(":")
        found[target] = (source, mode[0] if mode else "rw")
    return found


# ------------------------------------------------------------------ everything parses


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)


def test_every_manifest_is_a_kubernetes_object_named_account_monitor() -> None:
    for doc in manifests():
        assert {"apiVersion", "kind", "metadata"} <= doc.keys()
        assert doc["metadata"]["name"].startswith("account-monitor")
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "account-monitor"


def test_kustomization_lists_every_resource() -> None:
    listed = set(load(K8S / "kustomization.yaml")["resources"])
    files = {p.name for p in K8S.glob("*.yaml")} - NOT_RESOURCES
    assert listed == files
    assert all((K8S / name).exists() for name in listed)


def test_kustomize_renders_offline() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (optional: renders deploy/kubernetes offline)")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(result.stdout) if d)
    assert kinds == ["ConfigMap", "PodDisruptionBudget", "Service", "ServiceMonitor",
                     "StatefulSet"]


# ------------------------------------------------------------------ the StatefulSet


def test_statefulset_runs_non_root_with_a_read_only_root_fs() -> None:
    pod = manifest("StatefulSet")["spec"]["template"]["spec"]
    uid = int(dockerfile("USER").split(":")[0])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid == 10001
    assert pod["securityContext"]["fsGroup"] == 10001, "the state volume must be writable"
    assert pod["automountServiceAccountToken"] is False
    ctx = container()["securityContext"]
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == uid
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert "add" not in ctx["capabilities"]


def test_probes_hit_healthz_and_readyz_on_the_metrics_port() -> None:
    c = container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 9464}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] in ports


def test_args_are_a_valid_run_command_with_the_pod_ordinal_as_shard() -> None:
    sts = manifest("StatefulSet")
    args = container()["args"]
    assert "--shard" in args
    shard = args[args.index("--shard") + 1]
    assert shard == f"$(SHARD_INDEX)/{sts['spec']['replicas']}", \
        "the shard count must equal spec.replicas"
    env = {e["name"]: e for e in container()["env"]}
    assert env["SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['apps.kubernetes.io/pod-index']"
    # The image's entrypoint is `account-monitor run`: args must parse as its flags.
    assert json.loads(dockerfile("ENTRYPOINT")) == ["account-monitor", "run"]
    expanded = [a.replace("$(SHARD_INDEX)", "2") for a in args]
    parsed = build_parser().parse_args(["run", *expanded])
    assert parsed.shard == f"2/{sts['spec']['replicas']}"
    assert parsed.host == "0.0.0.0"


def test_the_state_volume_is_the_dockerfiles_volume() -> None:
    sts = manifest("StatefulSet")
    volume = dockerfile_volume()
    assert volume == STATE_DIR
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    state_mounts = [m for m in container()["volumeMounts"]
                    if m["name"] == claim["metadata"]["name"]]
    assert [m["mountPath"] for m in state_mounts] == [volume]
    args = container()["args"]
    assert str(Path(args[args.index("--state") + 1]).parent) == volume
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_config_comes_from_the_configmap_and_is_valid() -> None:
    sts = manifest("StatefulSet")
    cm = manifest("ConfigMap")
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    (config_mount,) = [m for m in container()["volumeMounts"]
                       if volumes.get(m["name"], {}).get("configMap")]
    assert config_mount["mountPath"] == "/etc/account-monitor"
    assert config_mount.get("readOnly") is True and "subPath" not in config_mount
    assert volumes[config_mount["name"]]["configMap"]["name"] == cm["metadata"]["name"]
    args = container()["args"]
    config_path = Path(args[args.index("--config") + 1])
    assert str(config_path.parent) == config_mount["mountPath"]
    config = parse_config(cm["data"][config_path.name], "configmap.yaml", env={})
    assert config.monitor.listen_port == 9464
    assert str(Path(config.monitor.state_path).parent) == STATE_DIR
    assert sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > \
        config.monitor.shutdown_grace


def test_secrets_come_from_one_optional_secret_as_env_and_files() -> None:
    sts = manifest("StatefulSet")
    (secret,) = yaml.safe_load_all((K8S / "secret.example.yaml").read_text())
    name = secret["metadata"]["name"]
    (env_from,) = container()["envFrom"]
    assert env_from["secretRef"] == {"name": name, "optional": True}
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    (secret_mount,) = [m for m in container()["volumeMounts"]
                       if volumes.get(m["name"], {}).get("secret")]
    assert volumes[secret_mount["name"]]["secret"]["secretName"] == name
    assert secret_mount["readOnly"] is True
    for key in ("X_BEARER_TOKEN", "GITHUB_TOKEN", "TWITCH_CLIENT_ID", "PD_ROUTING_KEY",
                "SLACK_WEBHOOK_URL", "ACCMON_RELOAD_TOKEN"):
        assert key in secret["stringData"]


def test_resources_and_image_are_set() -> None:
    c = container()
    assert {"cpu", "memory"} <= c["resources"]["requests"].keys()
    assert "memory" in c["resources"]["limits"]
    image, _, tag = c["image"].rpartition(":")
    assert image and tag and tag != "latest"


# ------------------------------------------------------------------ Service, scraping, PDB


def test_headless_service_selects_the_pods_and_names_the_metrics_port() -> None:
    svc = manifest("Service")
    assert svc["spec"]["clusterIP"] == "None"
    assert manifest("StatefulSet")["spec"]["serviceName"] == svc["metadata"]["name"]
    assert svc["spec"]["selector"].items() <= pod_labels().items()
    (port,) = svc["spec"]["ports"]
    assert (port["name"], port["port"]) == ("metrics", 9464)
    assert port["targetPort"] in {p["name"] for p in container()["ports"]}


def test_servicemonitor_scrapes_the_services_metrics_port_as_job_account_monitor() -> None:
    sm = manifest("ServiceMonitor")
    svc = manifest("Service")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    service_ports = {p["name"] for p in svc["spec"]["ports"]}
    assert {e["port"] for e in sm["spec"]["endpoints"]} <= service_ports
    assert all(e["path"] == "/metrics" for e in sm["spec"]["endpoints"])
    # monitor-rules.yml alerts on up{job="account-monitor"}.
    assert svc["metadata"]["labels"][sm["spec"]["jobLabel"]] == "account-monitor"


def test_plain_prometheus_scrape_config_keeps_the_pods_metrics_port() -> None:
    (job,) = load(K8S / "prometheus-scrape.yaml")["scrape_configs"]
    assert job["job_name"] == "account-monitor"
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    keeps = {tuple(r["source_labels"]): r["regex"] for r in job["relabel_configs"]
             if r.get("action") == "keep"}
    assert re.fullmatch(keeps[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)],
                        pod_labels()["app.kubernetes.io/name"])
    port_names = {p["name"] for p in container()["ports"]}
    assert re.fullmatch(keeps[("__meta_kubernetes_pod_container_port_name",)], "metrics")
    assert "metrics" in port_names


def test_pdb_allows_one_shard_down_and_selects_the_pods() -> None:
    pdb = manifest("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == 1
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels().items()
    assert selector == manifest("StatefulSet")["spec"]["selector"]["matchLabels"]


# ------------------------------------------------------------------ docker compose


def test_compose_images_are_pinned() -> None:
    for name, svc in compose()["services"].items():
        image, _, tag = svc["image"].rpartition(":")
        assert image and tag and tag != "latest" and "${" not in tag, name


def test_compose_monitor_is_read_only_non_root_with_the_state_volume() -> None:
    svc = service("account-monitor")
    assert svc["build"] == "."
    assert svc["read_only"] is True
    assert svc["user"].split(":")[0] == dockerfile("USER").split(":")[0] == "10001"
    assert "tmpfs" not in svc, "only the state volume is writable"
    volume = dockerfile_volume()
    source, mode = mounts(svc)[volume]
    assert source in compose()["volumes"] and mode == "rw", "a named volume for the state"
    config_source, config_mode = mounts(svc)["/etc/account-monitor/monitor.yaml"]
    assert config_mode == "ro" and (ROOT / config_source).is_file()
    assert "9464:9464" in svc["ports"]
    parsed = build_parser().parse_args(["run", *svc["command"]])
    assert str(Path(parsed.state).parent) == volume
    assert parsed.config == "/etc/account-monitor/monitor.yaml"
    assert parsed.host == "0.0.0.0"
    assert svc["environment"]["SQLITE_TMPDIR"] == volume


def test_compose_monitor_environment_carries_the_tokens() -> None:
    env = service("account-monitor")["environment"]
    for name in ("X_BEARER_TOKEN", "GITHUB_TOKEN", "TWITCH_CLIENT_ID", "ACCMON_SHARD",
                 "ACCMON_RELOAD_TOKEN"):
        assert env[name] == f"${{{name}:-}}", name  # set from the shell, empty by default
    for name in ("PD_ROUTING_KEY", "SLACK_WEBHOOK_URL"):
        assert name in env and env[name] is None, name  # passed only when set


def test_compose_host_paths_exist() -> None:
    for name, svc in compose()["services"].items():
        for target, (source, _) in mounts(svc).items():
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} -> {target}"


def test_grafana_provisions_the_dashboards_and_the_datasource() -> None:
    grafana = mounts(service("grafana"))
    provisioning = ROOT / "dashboards" / "provisioning"
    sources = {Path(src).resolve(): target for target, (src, _) in
               ((t, (str(ROOT / s), m)) for t, (s, m) in grafana.items())}
    dashboards_target = sources[(ROOT / "dashboards").resolve()]
    assert sources[(provisioning / "dashboards.yaml").resolve()].startswith(
        "/etc/grafana/provisioning/dashboards/")
    assert sources[(provisioning / "datasource.yaml").resolve()].startswith(
        "/etc/grafana/provisioning/datasources/")
    (provider,) = load(provisioning / "dashboards.yaml")["providers"]
    assert provider["options"]["path"] == dashboards_target
    (datasource,) = load(provisioning / "datasource.yaml")["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in compose()["services"]
    assert "9090:9090" in service("prometheus")["ports"]
    assert "3000:3000" in service("grafana")["ports"]
    home = service("grafana")["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dashboards_target + "/")
    assert (ROOT / "dashboards" / Path(home).name).is_file()


def test_compose_prometheus_loads_the_rule_files_of_config_prometheus() -> None:
    prom_config = load(COMPOSE_DIR / "prometheus.yml")
    prom = mounts(service("prometheus"))
    config_source, _ = prom["/etc/prometheus/prometheus.yml"]
    assert (ROOT / config_source).resolve() == (COMPOSE_DIR / "prometheus.yml").resolve()
    assert prom_config["rule_files"], "the alert rules must be loaded"
    for rule_file in prom_config["rule_files"]:
        assert (ROOT / "config" / "prometheus" / rule_file).is_file(), rule_file
        source, mode = prom[f"/etc/prometheus/{rule_file}"]  # beside prometheus.yml
        assert (ROOT / source).resolve() == (ROOT / "config" / "prometheus" / rule_file).resolve()
        assert mode == "ro"
    jobs = {j["job_name"]: j for j in prom_config["scrape_configs"]}
    targets = [t for sc in jobs["account-monitor"]["static_configs"] for t in sc["targets"]]
    assert targets == ["account-monitor:9464"]
    (am,) = prom_config["alerting"]["alertmanagers"]
    assert am["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert "9093:9093" in service("alertmanager")["ports"]


def test_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    shutil.copy(COMPOSE_DIR / "prometheus.yml", tmp_path / "prometheus.yml")
    for rule_file in load(COMPOSE_DIR / "prometheus.yml")["rule_files"]:
        shutil.copy(ROOT / "config" / "prometheus" / rule_file, tmp_path / rule_file)
    result = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_alertmanager_config_passes_amtool_and_folds_ha_pairs() -> None:
    amtool = require_tool("amtool")
    path = COMPOSE_DIR / "alertmanager.yml"
    result = subprocess.run([amtool, "check-config", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # The monitor labels pages severity="page"; Prometheus' rules say "critical".
    for labels, receiver in ((["severity=page", "alertname=AccountVanished"], "oncall"),
                             (["severity=critical", "alertname=AccountMonitorDown"], "oncall"),
                             (["severity=warning"], "chat"), (["severity=info"], "chat")):
        routed = subprocess.run([amtool, "config", "routes", "test", f"--config.file={path}",
                                 *labels], capture_output=True, text=True, timeout=60)
        assert routed.stdout.strip() == receiver, (labels, routed.stdout, routed.stderr)
    route = load(path)["route"]
    # Two monitors of an HA pair (or two vantages) number outages independently: grouping by
    # dedup_key, instance or vantage would page twice for one outage.
    for r in [route, *route.get("routes", [])]:
        group_by = r.get("group_by", route["group_by"])
        assert not {"dedup_key", "instance", "vantage"} & set(group_by)
        if r is route or "group_by" not in r:
            assert {"alertname", "platform", "account"} <= set(group_by)
    # Alerts about many accounts at once fold coarser: one per platform, one per loss.
    coarser = {tuple(r["matchers"]): r for r in route["routes"] if "group_by" in r}
    assert coarser == {
        ('alertname="VantageDisagreement"',): {**coarser[('alertname="VantageDisagreement"',)],
                                               "group_by": ["alertname", "platform"]},
        ('alertname="QuorumUnreachable"',): {**coarser[('alertname="QuorumUnreachable"',)],
                                             "group_by": ["alertname"]},
    }
    for labels, receiver in ((["alertname=VantageDisagreement", "severity=warning"], "chat"),
                             (["alertname=QuorumUnreachable", "severity=critical"], "oncall"),
                             (["alertname=ProtectedAccountVanishedByQuorum",
                               "severity=critical"], "oncall"),
                             (["alertname=VantageMissing", "severity=warning"], "chat")):
        routed = subprocess.run([amtool, "config", "routes", "test", f"--config.file={path}",
                                 *labels], capture_output=True, text=True, timeout=60)
        assert routed.stdout.strip() == receiver, (labels, routed.stdout, routed.stderr)


def test_demo_config_pages_through_compose_alertmanager_from_the_fake_x() -> None:
    demo = service("fake-x")
    assert demo["profiles"] == ["demo"] and demo["read_only"] is True
    assert demo["entrypoint"] == ["python", "-m", "monitor.fakes.x"]
    parser = fake_arguments("fake x")
    parser.add_argument("--token", default=fake_x.TOKEN)
    args = parser.parse_args(demo["command"])
    config = parse_config((COMPOSE_DIR / "monitor-demo.yaml").read_text(), "demo", env={})
    x = config.platforms["x"]
    assert x.base_url == f"http://fake-x:{args.port}"
    assert f"{args.port}:{args.port}" in demo["ports"]
    assert x.token is not None and x.token.get_secret_value() == args.token
    fake_accounts = {handle: spec for handle, spec in args.account}
    for account in config.accounts:
        assert fake_accounts[account.handle] == f"{account.id}:present"
    assert any(a.protected for a in config.accounts)
    urls = [u for n in config.notifiers.values() if n.type == "alertmanager"
            for u in getattr(n, "urls", [])]
    assert urls == ["http://alertmanager:9093"]
    assert config.monitor.listen_port == 9464
    assert str(Path(config.monitor.state_path).parent) == STATE_DIR


def test_bundled_config_is_what_compose_mounts_by_default() -> None:
    source, _ = mounts(service("account-monitor"))["/etc/account-monitor/monitor.yaml"]
    assert (ROOT / source).resolve() == (ROOT / "config" / "monitor.yaml").resolve()
    assert dockerfile("COPY").split()[-1] == "/etc/account-monitor/monitor.yaml"


def test_docker_compose_config_when_the_plugin_is_installed() -> None:
    """``docker compose config`` needs no daemon; none runs here, so nothing else is tried."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True,
                             timeout=30)
    if version.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run([docker, "compose", "-f", str(COMPOSE_FILE), "--profile", "demo",
                             "config", "--quiet"], capture_output=True, text=True, timeout=60,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr


# ================================================================== several vantages
# deploy/kubernetes-vantages (one StatefulSet per vantage, kustomize overlays on
# deploy/kubernetes) and deploy/compose/vantages.yaml (two vantages of one shard each).
# docs/vantages.md describes both.

VANTAGES_K8S = DEPLOY / "kubernetes-vantages"
VANTAGE_CONFIG = VANTAGES_K8S / "base" / "monitor.yaml"
OVERLAYS = sorted(p.parent for p in VANTAGES_K8S.glob("*/kustomization.yaml")
                  if p.parent.name != "base")
VANTAGES_COMPOSE = COMPOSE_DIR / "vantages.yaml"
NAMESPACE = "accmon"
PEER_TOKEN = "a-peer-token-for-the-test"
SECRETS_DIR = "/run/secrets/account-monitor"


def overlay_patch(overlay: Path, kind: str) -> dict[str, Any]:
    (patch,) = [doc for doc in (yaml.safe_load(p["patch"])
                                for p in load(overlay / "kustomization.yaml")["patches"])
                if doc["kind"] == kind]
    return dict(patch)


def overlay_peer(overlay: Path) -> str:
    (container_patch,) = overlay_patch(overlay, "StatefulSet")["spec"]["template"]["spec"][
        "containers"]
    (env,) = container_patch["env"]
    assert env["name"] == "ACCMON_PEER_VANTAGE"
    return str(env["value"])


def vantage_env(vantage: str, peer: str, shard: int) -> dict[str, str]:
    """What base/monitor.yaml expands in a pod of that vantage and ordinal."""
    return {"ACCMON_VANTAGE": vantage, "ACCMON_PEER_VANTAGE": peer, "SHARD_INDEX": str(shard),
            "POD_NAMESPACE": NAMESPACE}


def secret_files(text: str, tmp_path: Path) -> str:
    """The config with the Secret's mount moved to tmp_path (holding a peer token)."""
    (tmp_path / "ACCMON_PEER_TOKEN").write_text(PEER_TOKEN + "\n")
    return text.replace(SECRETS_DIR, str(tmp_path))


def kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (optional: renders the overlays offline)")
    result = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


# ------------------------------------------------------------------ Kubernetes, as files


def test_every_vantage_is_an_overlay_named_and_labelled_after_it() -> None:
    assert len(OVERLAYS) >= 2
    assert sorted(load(VANTAGES_K8S / "kustomization.yaml")["resources"]) == [
        p.name for p in OVERLAYS]
    names = {p.name for p in OVERLAYS}
    for overlay in OVERLAYS:
        kustomization = load(overlay / "kustomization.yaml")
        assert kustomization["resources"] == ["../base"]
        assert kustomization["nameSuffix"] == f"-{overlay.name}"
        (labels,) = kustomization["labels"]
        assert labels == {"pairs": {"vantage": overlay.name}, "includeSelectors": True,
                          "includeTemplates": True}
        assert overlay_peer(overlay) in names - {overlay.name}
        # kustomize leaves a custom resource's selector alone: the patch narrows it
        monitor = overlay_patch(overlay, "ServiceMonitor")
        assert monitor["spec"]["selector"]["matchLabels"] == {"vantage": overlay.name}
    peers = {overlay.name: overlay_peer(overlay) for overlay in OVERLAYS}
    assert all(peers[peer] == vantage for vantage, peer in peers.items()), "they peer both ways"


def test_the_vantage_base_is_the_single_vantage_deployment_with_another_config() -> None:
    base = load(VANTAGES_K8S / "base" / "kustomization.yaml")
    assert base["resources"] == ["../../kubernetes"]
    (generator,) = base["configMapGenerator"]
    assert generator["name"] == manifest("ConfigMap")["metadata"]["name"]
    assert generator["behavior"] == "replace" and generator["files"] == ["monitor.yaml"]
    # a hash suffix would make every edit a new ConfigMap: no reload, a rollout instead
    assert generator["options"]["disableNameSuffixHash"] is True
    (patch,) = base["patches"]
    (container_patch,) = load(VANTAGES_K8S / "base" / patch["path"])["spec"]["template"][
        "spec"]["containers"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container_patch["env"]}
    assert env == {"ACCMON_VANTAGE": "metadata.labels['vantage']",
                   "POD_NAMESPACE": "metadata.namespace"}


def test_the_vantage_config_is_valid_for_every_vantage_and_shard(tmp_path: Path) -> None:
    """Peers are the same shard ordinal of the other vantage's StatefulSet."""
    text = secret_files(VANTAGE_CONFIG.read_text(), tmp_path)
    replicas = manifest("StatefulSet")["spec"]["replicas"]
    for overlay in OVERLAYS:
        peer = overlay_peer(overlay)
        for shard in range(replicas):
            config = parse_config(text, str(VANTAGE_CONFIG),
                                  env=vantage_env(overlay.name, peer, shard))
            assert config.monitor.vantage == overlay.name
            (peer_config,) = config.peers
            assert peer_config.url == (f"http://account-monitor-{peer}-{shard}."
                                       f"account-monitor-{peer}.{NAMESPACE}.svc:9464")
            assert peer_config.name == peer
            assert peer_config.token is not None
            assert peer_config.token.get_secret_value() == PEER_TOKEN
            token = config.monitor.api.peer_token
            assert token is not None and token.get_secret_value() == PEER_TOKEN
            assert config.quorum.required == 2 == len(config.peers) + 1
            assert config.monitor.listen_port == 9464
            assert str(Path(config.monitor.state_path).parent) == STATE_DIR
    secret = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    assert "ACCMON_PEER_TOKEN" in secret["stringData"]
    assert f"{SECRETS_DIR}/ACCMON_PEER_TOKEN" in VANTAGE_CONFIG.read_text()


def test_every_vantage_watches_what_the_single_vantage_config_watches(tmp_path: Path) -> None:
    single = parse_config(manifest("ConfigMap")["data"]["monitor.yaml"], "configmap.yaml",
                          env={})
    several = parse_config(secret_files(VANTAGE_CONFIG.read_text(), tmp_path), "monitor.yaml",
                           env=vantage_env("eu-west", "us-east", 0))
    for part in ("defaults", "platforms", "accounts", "notifiers", "routing"):
        assert getattr(several, part) == getattr(single, part), part
    assert single.peers == [] and single.monitor.vantage == "local"


def test_a_pod_without_its_vantage_variables_refuses_the_config(tmp_path: Path) -> None:
    """Not a silent `local` vantage or a peer URL with a hole in it: a listed problem."""
    from monitor.config import ConfigError

    text = secret_files(VANTAGE_CONFIG.read_text(), tmp_path)
    env = vantage_env("eu-west", "us-east", 0)
    for missing in ("ACCMON_VANTAGE", "ACCMON_PEER_VANTAGE", "SHARD_INDEX", "POD_NAMESPACE"):
        with pytest.raises(ConfigError) as caught:
            parse_config(text, "monitor.yaml",
                         env={k: v for k, v in env.items() if k != missing})
        assert missing in str(caught.value), missing


def test_prometheus_takes_the_vantage_label_from_the_pod_label() -> None:
    (endpoint,) = manifest("ServiceMonitor")["spec"]["endpoints"]
    assert {"sourceLabels": ["__meta_kubernetes_pod_label_vantage"], "targetLabel": "vantage",
            "action": "replace"} in endpoint["relabelings"]
    (job,) = load(K8S / "prometheus-scrape.yaml")["scrape_configs"]
    assert {"source_labels": ["__meta_kubernetes_pod_label_vantage"],
            "target_label": "vantage"} in job["relabel_configs"]
    assert "honor_labels" not in job and "honorLabels" not in endpoint


# ------------------------------------------------------------------ Kubernetes, rendered


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """The rendered objects of a kind, by their `vantage` label."""
    found = {d["metadata"]["labels"]["vantage"]: d for d in docs if d["kind"] == kind}
    assert len(found) == len([d for d in docs if d["kind"] == kind]), kind
    return found


def test_vantages_render_one_statefulset_each_with_the_same_shards_and_own_pods() -> None:
    docs = kustomize(VANTAGES_K8S)
    vantages = {p.name for p in OVERLAYS}
    assert sorted(d["kind"] for d in docs) == sorted(
        ["ConfigMap", "PodDisruptionBudget", "Service", "ServiceMonitor", "StatefulSet"]
        * len(vantages))
    sets, services = by_kind(docs, "StatefulSet"), by_kind(docs, "Service")
    pdbs, monitors = by_kind(docs, "PodDisruptionBudget"), by_kind(docs, "ServiceMonitor")
    configs = by_kind(docs, "ConfigMap")
    assert set(sets) == set(services) == set(pdbs) == set(monitors) == set(configs) == vantages
    assert len({s["spec"]["replicas"] for s in sets.values()}) == 1, "the same shard count"
    for vantage, sts in sets.items():
        name = f"account-monitor-{vantage}"
        assert sts["metadata"]["name"] == services[vantage]["metadata"]["name"] == name
        assert sts["spec"]["serviceName"] == name
        pod = sts["spec"]["template"]
        assert pod["metadata"]["labels"]["vantage"] == vantage
        selector = sts["spec"]["selector"]["matchLabels"]
        assert selector["vantage"] == vantage
        assert services[vantage]["spec"]["selector"]["vantage"] == vantage
        assert pdbs[vantage]["spec"]["selector"]["matchLabels"] == selector
        # the ServiceMonitor picks this vantage's Service and no other
        picks = monitors[vantage]["spec"]["selector"]["matchLabels"]
        assert [v for v, svc in services.items()
                if picks.items() <= svc["metadata"]["labels"].items()] == [vantage]
        (c,) = pod["spec"]["containers"]
        args = c["args"]
        assert args[args.index("--shard") + 1] == f"$(SHARD_INDEX)/{sts['spec']['replicas']}"
        env = {e["name"]: e for e in c["env"]}
        assert env["ACCMON_VANTAGE"]["valueFrom"]["fieldRef"]["fieldPath"] == \
            "metadata.labels['vantage']"
        assert env["ACCMON_PEER_VANTAGE"]["value"] in vantages - {vantage}
        (config_volume,) = [v for v in pod["spec"]["volumes"] if "configMap" in v]
        assert config_volume["configMap"]["name"] == configs[vantage]["metadata"]["name"]
        assert configs[vantage]["data"]["monitor.yaml"] == VANTAGE_CONFIG.read_text()
        (secret_volume,) = [v for v in pod["spec"]["volumes"] if "secret" in v]
        shared = yaml.safe_load((K8S / "secret.example.yaml").read_text())["metadata"]["name"]
        assert secret_volume["secret"]["secretName"] == shared
        assert c["envFrom"][0]["secretRef"]["name"] == shared


def test_the_peer_url_names_the_same_shard_of_the_peers_statefulset() -> None:
    """Pod <sts>-<i> of the headless Service <svc> is <sts>-<i>.<svc>.<ns>.svc."""
    sets = by_kind(kustomize(VANTAGES_K8S), "StatefulSet")
    template = next(p["url"] for p in load(VANTAGE_CONFIG)["peers"])
    for vantage, sts in sets.items():
        (c,) = sts["spec"]["template"]["spec"]["containers"]
        peer = sets[{e["name"]: e for e in c["env"]}["ACCMON_PEER_VANTAGE"]["value"]]
        url = (template.replace("${ACCMON_PEER_VANTAGE}", peer["metadata"]["labels"]["vantage"])
               .replace("${SHARD_INDEX}", "2").replace("${POD_NAMESPACE}", NAMESPACE))
        assert url == (f"http://{peer['metadata']['name']}-2.{peer['spec']['serviceName']}."
                       f"{NAMESPACE}.svc:9464"), vantage


# ------------------------------------------------------------------ compose with two vantages


def vantages_compose() -> dict[str, Any]:
    return dict(load(VANTAGES_COMPOSE))


def vantage_monitors() -> dict[str, dict[str, Any]]:
    """The monitor services, by service name."""
    return {name: svc for name, svc in vantages_compose()["services"].items()
            if "ACCMON_VANTAGE" in svc.get("environment", {})}


def compose_value(value: str) -> str:
    """A compose environment value as compose gives it: ${VAR:?msg} and ${VAR:-x} resolved
    (a required variable to the test's token)."""
    value = re.sub(r"\$\{ACCMON_PEER_TOKEN:\?[^}]*\}", PEER_TOKEN, value)
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def compose_env(svc: dict[str, Any]) -> dict[str, str]:
    return {k: compose_value(str(v)) for k, v in svc["environment"].items()}


def service_url(url: str) -> tuple[str, int]:
    match = re.fullmatch(r"http://([\w-]+):(\d+)", url)
    assert match, url
    return match.group(1), int(match.group(2))


def test_two_monitors_of_one_shard_each_peer_each_other() -> None:
    monitors = vantage_monitors()
    assert len(monitors) == 2
    volumes = vantages_compose()["volumes"]
    vantages = {name: compose_env(svc)["ACCMON_VANTAGE"] for name, svc in monitors.items()}
    assert len(set(vantages.values())) == 2
    states, ports = set(), set()
    for name, svc in monitors.items():
        env = compose_env(svc)
        assert "ACCMON_SHARD" not in env, "one shard: every account"
        (other,) = set(monitors) - {name}
        host, port = service_url(env["ACCMON_PEER_URL"])
        assert (host, port) == (other, 9464)
        assert env["ACCMON_PEER_VANTAGE"] == vantages[other]
        assert svc["environment"]["ACCMON_PEER_TOKEN"].startswith("${ACCMON_PEER_TOKEN:?"), \
            "the peer token is required, never defaulted"
        assert svc["read_only"] is True and svc["user"].split(":")[0] == "10001"
        assert svc["build"] == "../.." and (COMPOSE_DIR / svc["build"] / "Dockerfile").is_file()
        source, mode = mounts(svc)[dockerfile_volume()]
        assert source in volumes and mode == "rw"
        states.add(source)
        config_source, config_mode = mounts(svc)["/etc/account-monitor/monitor.yaml"]
        assert config_mode == "ro"
        assert (COMPOSE_DIR / config_source).resolve() == (
            COMPOSE_DIR / "monitor-vantages.yaml").resolve()
        parsed = build_parser().parse_args(["run", *svc["command"]])
        assert str(Path(parsed.state).parent) == dockerfile_volume()
        assert parsed.config == "/etc/account-monitor/monitor.yaml"
        assert env["SQLITE_TMPDIR"] == dockerfile_volume()
        (published,) = svc["ports"]
        assert published.endswith(":9464")
        ports.add(published.split(":")[0])
        assert env["ACCMON_PUBLIC_URL"] == f"http://localhost:{published.split(':')[0]}"
    assert len(states) == 2, "each vantage its own state file"
    assert len(ports) == 2


def test_the_compose_vantage_config_is_valid_for_both_monitors() -> None:
    text = (COMPOSE_DIR / "monitor-vantages.yaml").read_text()
    demo = parse_config((COMPOSE_DIR / "monitor-demo.yaml").read_text(), "demo", env={})
    for name, svc in vantage_monitors().items():
        env = compose_env(svc)
        config = parse_config(text, "monitor-vantages.yaml", env=env)
        assert config.monitor.vantage == env["ACCMON_VANTAGE"], name
        (peer,) = config.peers
        assert peer.url == env["ACCMON_PEER_URL"] and peer.name == env["ACCMON_PEER_VANTAGE"]
        assert peer.token is not None and peer.token.get_secret_value() == PEER_TOKEN
        own = config.monitor.api.peer_token
        assert own is not None and own.get_secret_value() == PEER_TOKEN
        assert config.quorum.required == 2
        assert config.platforms["x"].base_url == env["ACCMON_X_BASE_URL"]
        assert config.accounts == demo.accounts, "the same watchlist as the demo"
        urls = [u for n in config.notifiers.values() if n.type == "alertmanager"
                for u in getattr(n, "urls", [])]
        assert urls == ["http://alertmanager:9093"]


def proxy_flags() -> set[str]:
    result = subprocess.run([sys.executable, "-m", "monitor.fakes.proxy", "--help"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return set(re.findall(r"--[a-z][\w-]*", result.stdout))


def test_each_vantage_reaches_the_platform_through_its_own_path() -> None:
    services = vantages_compose()["services"]
    fake = services["fake-x"]
    assert fake["entrypoint"] == ["python", "-m", "monitor.fakes.x"]
    fake_args = fake_arguments("fake x").parse_args(fake["command"])
    accepted = proxy_flags()
    paths = set()
    for name, svc in vantage_monitors().items():
        path_name, path_port = service_url(compose_env(svc)["ACCMON_X_BASE_URL"])
        paths.add(path_name)
        path = services[path_name]
        assert path["entrypoint"] == ["python", "-m", "monitor.fakes.proxy"], name
        flags = dict(zip(path["command"][::2], path["command"][1::2], strict=True))
        assert set(flags) <= accepted, set(flags) - accepted
        assert flags["--upstream"] == f"http://fake-x:{fake_args.port}"
        assert flags["--platform"] == "x", "its not_found mode answers as X does"
        assert int(flags["--port"]) == path_port and flags["--host"] == "0.0.0.0"
        assert any(p.endswith(f":{path_port}") for p in path["ports"])
        assert path["read_only"] is True
    assert len(paths) == 2, "one path per vantage"


def test_compose_prometheus_scrapes_both_vantages_with_their_labels(tmp_path: Path) -> None:
    config_file = COMPOSE_DIR / "prometheus-vantages.yml"
    prom = mounts(vantages_compose()["services"]["prometheus"])
    source, _ = prom["/etc/prometheus/prometheus.yml"]
    assert (COMPOSE_DIR / source).resolve() == config_file.resolve()
    config = load(config_file)
    assert config["rule_files"] == ["monitor-rules.yml", "quorum-rules.yml"]
    for rule_file in config["rule_files"]:
        source, mode = prom[f"/etc/prometheus/{rule_file}"]
        assert (COMPOSE_DIR / source).resolve() == (
            ROOT / "config" / "prometheus" / rule_file).resolve()
        assert mode == "ro"
        shutil.copy(ROOT / "config" / "prometheus" / rule_file, tmp_path / rule_file)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "account-monitor"]
    labelled = {t: group["labels"]["vantage"] for group in job["static_configs"]
                for t in group["targets"]}
    assert labelled == {f"{name}:9464": compose_env(svc)["ACCMON_VANTAGE"]
                        for name, svc in vantage_monitors().items()}
    shutil.copy(config_file, tmp_path / "prometheus.yml")
    result = subprocess.run([require_tool("promtool"), "check", "config",
                             str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_vantages_images_are_pinned_and_host_paths_exist() -> None:
    for name, svc in vantages_compose()["services"].items():
        image, _, tag = svc["image"].rpartition(":")
        assert image and tag and tag != "latest" and "${" not in tag, name
        for target, (source, _) in mounts(svc).items():
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} -> {target}"
    grafana = mounts(vantages_compose()["services"]["grafana"])
    dashboards_source, _ = grafana["/var/lib/grafana/dashboards/account-monitor"]
    assert (COMPOSE_DIR / dashboards_source).resolve() == (ROOT / "dashboards").resolve()


def test_docker_compose_config_of_the_vantages_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed")
    if subprocess.run([docker, "compose", "version"], capture_output=True,
                      timeout=30).returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run([docker, "compose", "-f", str(VANTAGES_COMPOSE), "config",
                             "--quiet"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "ACCMON_PEER_TOKEN": PEER_TOKEN})
    assert result.returncode == 0, result.stderr

"""deploy/ and docker-compose.yml: they parse, and they keep the image's and monitor's promises.

No cluster and no Docker daemon are needed: manifests are checked as data, against the
Dockerfile, the CLI's parser and the config models. promtool and amtool (Debian packages that
``dev.py`` installs) check the Prometheus and Alertmanager files; kubectl and the docker compose
plugin, when present, render the kustomization and the compose file (both offline).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
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
    # Two monitors of an HA pair number outages independently: grouping by dedup_key or
    # instance would page twice for one outage.
    for r in [route, *route.get("routes", [])]:
        group_by = r.get("group_by", route["group_by"])
        assert {"alertname", "platform", "account"} <= set(group_by)
        assert not {"dedup_key", "instance"} & set(group_by)


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

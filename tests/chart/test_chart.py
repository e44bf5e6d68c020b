"""The Helm chart, rendered by the real Helm engine, linted, and checked object by object."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.chart.rendering import (
    CHART_DIR,
    CI_VALUES,
    KUBE_VERSIONS,
    Obj,
    component,
    load_values,
    name,
    objects,
    of_kind,
    pod_specs,
    render,
)

# Kinds served by CRDs the cluster may have; kubernetes-validate has no schema for them.
CUSTOM_KINDS = {
    "ScaledObject",
    "TriggerAuthentication",
    "ServiceMonitor",
    "PodMonitor",
    "PrometheusRule",
    "Certificate",
    "Issuer",
    "HTTPRoute",
}
WORKER_GROUPS = {
    "dial-urgent": ["dial.emergency", "dial.high"],
    "dial": ["dial.medium", "dial.low"],
    "background": ["enrich", "crm_sync", "call_status"],
}

ci_files = pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)


@pytest.fixture(scope="module")
def default_objs() -> list[Obj]:
    return objects({})


def ci_objs(file_name: str) -> list[Obj]:
    return objects(load_values(CHART_DIR / "ci" / file_name))


def test_every_feature_has_a_ci_values_file() -> None:
    assert {p.name for p in CI_VALUES} >= {
        "default-values.yaml",
        "keda-values.yaml",
        "no-autoscaling-values.yaml",
        "existing-secrets-values.yaml",
        "production-values.yaml",
        "minimal-values.yaml",
    }


@ci_files
def test_lint_strict_finds_nothing_worse_than_info(values_file: Path) -> None:
    report = helm.lint(CHART_DIR, load_values(values_file), strict=True, namespace="leadflow")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == []
    assert problems == []


@ci_files
def test_values_match_the_schema(values_file: Path) -> None:
    with helm.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(load_values(values_file))


@pytest.mark.parametrize(
    "bad",
    [
        {"unknownTopLevel": 1},
        {"gateway": {"replicaCount": "two"}},
        {"gateway": {"port": 70000}},
        {"workers": {"groups": {"x": {"queues": ["dial.urgentest"], "autoscaling": {}}}}},
        {"workers": {"groups": {"dial": {"autoscaling": {"minReplicas": 0}}}}},
        {"image": {"pullPolicy": "Sometimes"}},
        {"keda": {"enabled": "yes"}},
        {"operator": {"replicas": 3}},
    ],
    ids=str,
)
def test_schema_refuses_bad_values(bad: dict[str, Any]) -> None:
    with helm.Chart.load(CHART_DIR) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(bad)


@ci_files
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_rendered_object_is_valid_kubernetes(values_file: Path, kube_version: str) -> None:
    objs = objects(load_values(values_file))
    assert objs
    for obj in objs:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(obj, kube_version, strict=True)


@ci_files
def test_names_and_labels_follow_the_standard(values_file: Path) -> None:
    for obj in objects(load_values(values_file)):
        meta = obj["metadata"]
        assert meta["name"].startswith("lf-leadflow"), meta["name"]
        assert len(meta["name"]) <= 63
        assert meta["namespace"] == "leadflow"
        labels = meta["labels"]
        assert labels["app.kubernetes.io/instance"] == "lf"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "leadflow-0.1.0"


@ci_files
def test_each_deployment_selects_its_own_pods(values_file: Path) -> None:
    deployments = of_kind(objects(load_values(values_file)), "Deployment")
    selectors = []
    for dep in deployments.values():
        selector = dep["spec"]["selector"]["matchLabels"]
        assert selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        selectors.append(tuple(sorted(selector.items())))
    assert len(set(selectors)) == len(selectors), "two Deployments select the same pods"


def test_every_component_is_deployed(default_objs: list[Obj]) -> None:
    deployments = of_kind(default_objs, "Deployment")
    expected = {"gateway", "compliance", "dispatcher", "operator", *(f"worker-{g}" for g in WORKER_GROUPS)}
    assert set(deployments) == {name(c) for c in expected}
    modules = {d["spec"]["template"]["spec"]["containers"][0]["args"][2] for d in deployments.values()}
    assert modules == {
        "leadflow_gateway",
        "leadflow_compliance",
        "leadflow_dispatcher",
        "leadflow_enrichment",
        "leadflow_operator",
    }


def env_of(dep: Obj) -> dict[str, Any]:
    return {
        e["name"]: e.get("value", e.get("valueFrom"))
        for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
    }


def test_workers_consume_their_queue_groups(default_objs: list[Obj]) -> None:
    from leadflow_enrichment.__main__ import parse_group
    from leadflow_enrichment.settings import WORKER_PROCESSES

    # Each Deployment runs the threads its group has where `make run` starts the worker processes.
    groups = [parse_group(g) for process in WORKER_PROCESSES.values() for g in process.groups]
    default_threads = {tuple(g.queues): g.threads for g in groups}
    deployments = of_kind(default_objs, "Deployment")
    for group, queues in WORKER_GROUPS.items():
        args = deployments[name(f"worker-{group}")]["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args == [
            "python",
            "-m",
            "leadflow_enrichment",
            "--queues",
            ",".join(queues),
            "--threads",
            str(default_threads[tuple(queues)]),
            "--processes",
            "1",
        ]


def test_worker_cli_accepts_the_rendered_arguments(default_objs: list[Obj]) -> None:
    """The worker's own argument parser takes what the chart passes it."""
    from leadflow_enrichment.__main__ import build_parser, parse_group

    for dep in of_kind(default_objs, "Deployment").values():
        args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        if args[2] != "leadflow_enrichment":
            continue
        parsed = build_parser().parse_args(args[3:])
        assert parse_group(parsed.queues).queues


def test_servers_bind_every_interface_and_reach_peers_by_service(default_objs: list[Obj]) -> None:
    deployments = of_kind(default_objs, "Deployment")
    assert env_of(deployments[name("gateway")])["LEADFLOW_GATEWAY_ADDR"] == "0.0.0.0:8080"
    compliance = env_of(deployments[name("compliance")])
    assert compliance["LEADFLOW_COMPLIANCE_ADDR"] == "0.0.0.0:50051"
    assert compliance["LEADFLOW_DISPATCHER_ADDR"] == "lf-leadflow-dispatcher:50052"
    dispatcher = env_of(deployments[name("dispatcher")])
    assert dispatcher["LEADFLOW_DISPATCHER_ADDR"] == "0.0.0.0:50052"
    assert dispatcher["LEADFLOW_DISPATCHER_METRICS_ADDR"] == "0.0.0.0:9102"
    worker = env_of(deployments[name("worker-dial")])
    assert worker["LEADFLOW_COMPLIANCE_ADDR"] == "lf-leadflow-compliance:50051"
    for dep in deployments.values():
        names = [e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]]
        assert len(names) == len(set(names)), f"duplicate env in {dep['metadata']['name']}"


# --- autoscaling ------------------------------------------------------------------------------


def test_hpa_per_worker_on_its_queues_depth_and_cpu(default_objs: list[Obj]) -> None:
    hpas = of_kind(default_objs, "HorizontalPodAutoscaler")
    deployments = of_kind(default_objs, "Deployment")
    assert set(hpas) == {name(f"worker-{g}") for g in WORKER_GROUPS}
    for group, queues in WORKER_GROUPS.items():
        hpa = hpas[name(f"worker-{group}")]
        assert hpa["apiVersion"] == "autoscaling/v2"
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name(f"worker-{group}")}
        assert ref["name"] in deployments
        assert "replicas" not in deployments[ref["name"]]["spec"], "the HPA owns the replica count"
        external = [m["external"] for m in hpa["spec"]["metrics"] if m["type"] == "External"]
        assert len(external) == 1
        metric = external[0]["metric"]
        assert metric["name"] == "leadflow_queue_depth"
        assert metric["selector"]["matchExpressions"] == [
            {"key": "queue", "operator": "In", "values": queues}
        ]
        assert external[0]["target"]["type"] == "AverageValue"
        resources = [m["resource"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
        assert resources[0]["name"] == "cpu"
        assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] > 0
    urgent = hpas[name("worker-dial-urgent")]["spec"]
    assert (urgent["minReplicas"], urgent["maxReplicas"]) == (2, 20)
    assert urgent["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_hpa_min_max_and_stabilisation_come_from_values() -> None:
    objs = objects(
        {
            "workers": {
                "groups": {
                    "dial": {
                        "autoscaling": {
                            "minReplicas": 3,
                            "maxReplicas": 7,
                            "targetQueueDepthPerReplica": 11,
                            "targetCPUUtilizationPercentage": 55,
                            "scaleDownStabilizationSeconds": 42,
                        }
                    }
                }
            }
        }
    )
    spec = of_kind(objs, "HorizontalPodAutoscaler")[name("worker-dial")]["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 7)
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 42
    external = next(m for m in spec["metrics"] if m["type"] == "External")["external"]
    assert external["target"]["averageValue"] == "11"
    cpu = next(m for m in spec["metrics"] if m["type"] == "Resource")["resource"]
    assert cpu["target"]["averageUtilization"] == 55


def test_prometheus_adapter_rule_serves_the_hpa_metric(default_objs: list[Obj]) -> None:
    cm = of_kind(default_objs, "ConfigMap")[name("autoscaling") + "-prometheus-adapter"]
    rules = yaml.safe_load(cm["data"]["config.yaml"])["externalRules"]
    assert rules[0]["name"]["as"] == "leadflow_queue_depth"
    assert rules[0]["seriesQuery"].startswith("leadflow_queue_depth{")
    assert "by (queue)" in rules[0]["metricsQuery"]


def test_without_autoscaling_deployments_keep_their_replicas() -> None:
    objs = ci_objs("no-autoscaling-values.yaml")
    assert of_kind(objs, "HorizontalPodAutoscaler") == {}
    assert of_kind(objs, "ScaledObject") == {}
    deployments = of_kind(objs, "Deployment")
    assert deployments[name("worker-dial-urgent")]["spec"]["replicas"] == 3
    assert deployments[name("worker-background")]["spec"]["replicas"] == 1
    assert name("autoscaling") + "-prometheus-adapter" not in of_kind(objs, "ConfigMap")


def test_keda_replaces_the_hpa_never_both() -> None:
    objs = ci_objs("keda-values.yaml")
    assert of_kind(objs, "HorizontalPodAutoscaler") == {}
    scaled = of_kind(objs, "ScaledObject")
    deployments = of_kind(objs, "Deployment")
    assert set(scaled) == {name(f"worker-{g}") for g in WORKER_GROUPS}
    for group, queues in WORKER_GROUPS.items():
        so = scaled[name(f"worker-{group}")]
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        assert so["spec"]["scaleTargetRef"]["name"] in deployments
        assert "replicas" not in deployments[so["spec"]["scaleTargetRef"]["name"]]["spec"]
        redis = [t for t in so["spec"]["triggers"] if t["type"] == "redis"]
        assert [t["metadata"]["listName"] for t in redis] == [f"prod:dramatiq:{q}" for q in queues]
        assert all(t["metadata"]["address"] == "redis-master.data:6379" for t in redis)
        assert all(t["authenticationRef"]["name"] == so["metadata"]["name"] for t in redis)
        assert {t["type"] for t in so["spec"]["triggers"]} == {"redis", "cpu"}
        behavior = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] > 0
    auths = of_kind(objs, "TriggerAuthentication")
    assert all(
        a["spec"]["secretTargetRef"] == [{"parameter": "password", "name": "redis-auth", "key": "password"}]
        for a in auths.values()
    )


# --- pods: probes and security ----------------------------------------------------------------


def container(objs: list[Obj], component_name: str) -> Obj:
    dep = of_kind(objs, "Deployment")[name(component_name)]
    containers: list[Obj] = dep["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_grpc_servers_use_native_grpc_probes(default_objs: list[Obj]) -> None:
    for comp, port in (("compliance", 50051), ("dispatcher", 50052)):
        c = container(default_objs, comp)
        # Probes use the plaintext health-only port: kubelet cannot present a client certificate.
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert c[probe]["grpc"] == {"port": 8086}, (comp, probe)
        assert {"name": "grpc", "containerPort": port, "protocol": "TCP"} in c["ports"]
        assert {"name": "health", "containerPort": 8086, "protocol": "TCP"} in c["ports"]


def test_gateway_uses_http_probes(default_objs: list[Obj]) -> None:
    c = container(default_objs, "gateway")
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_operator_is_one_replica_recreated_with_a_liveness_probe(default_objs: list[Obj]) -> None:
    dep = of_kind(default_objs, "Deployment")[name("operator")]
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = env_of(dep)
    # No credentials it does not need.
    assert "LEADFLOW_DATABASE_URL" not in env
    assert "LEADFLOW_REDIS_URL" not in env
    assert env["LEADFLOW_OPERATOR_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


@ci_files
def test_every_pod_runs_non_root_read_only_without_capabilities(values_file: Path) -> None:
    found = 0
    for obj, pod in pod_specs(objects(load_values(values_file))):
        found += 1
        assert pod["securityContext"]["runAsNonRoot"] is True, obj["metadata"]["name"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"], "every container asks for resources"
    assert found


def test_only_the_operator_gets_a_kubernetes_token(default_objs: list[Obj]) -> None:
    for obj, pod in pod_specs(default_objs):
        assert pod["automountServiceAccountToken"] is (component(obj) == "operator"), obj["metadata"]["name"]


def test_pdb_per_long_running_component(default_objs: list[Obj]) -> None:
    pdbs = of_kind(default_objs, "PodDisruptionBudget")
    deployments = of_kind(default_objs, "Deployment")
    assert set(pdbs) == set(deployments) - {name("operator")}
    for pdb_name, pdb in pdbs.items():
        selector = deployments[pdb_name]["spec"]["selector"]["matchLabels"]
        assert pdb["spec"]["selector"]["matchLabels"] == selector


# --- network ----------------------------------------------------------------------------------


def peers(rule: Obj) -> set[str]:
    return {p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in rule.get("from", [])}


def test_network_policies_let_only_the_gateway_take_outside_traffic(default_objs: list[Obj]) -> None:
    policies = of_kind(default_objs, "NetworkPolicy")
    deny = policies[name("default-deny")]["spec"]
    assert deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny
    # The default deny selects every pod of the release.
    for obj in of_kind(default_objs, "Deployment").values():
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert deny["podSelector"]["matchLabels"].items() <= labels.items()
    open_to_all = [
        n for n, p in policies.items() for rule in p["spec"].get("ingress", []) if "from" not in rule
    ]
    assert open_to_all == [name("gateway")]

    workers = {f"worker-{g}" for g in WORKER_GROUPS}
    compliance = policies[name("compliance")]["spec"]["ingress"]
    assert peers(compliance[0]) == {"gateway", "dispatcher", "operator", "test", *workers}
    dispatcher = policies[name("dispatcher")]["spec"]["ingress"]
    assert peers(dispatcher[0]) == {"gateway", *workers}
    assert dispatcher[1]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    # Workers and the operator take no ingress at all.
    covered = {
        p["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component")
        for p in policies.values()
        if "Ingress" in p["spec"]["policyTypes"]
    }
    assert covered.isdisjoint(workers | {"operator"})


def test_gateway_sources_can_be_narrowed() -> None:
    policies = of_kind(ci_objs("production-values.yaml"), "NetworkPolicy")
    rule = policies[name("gateway")]["spec"]["ingress"][0]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
        # The dispatcher hands operators' replays to the gateway.
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "leadflow",
                    "app.kubernetes.io/instance": "lf",
                    "app.kubernetes.io/component": "dispatcher",
                }
            }
        },
    ]


def test_the_dispatcher_knows_the_gateways_service_for_replays() -> None:
    deployments = of_kind(ci_objs("production-values.yaml"), "Deployment")
    (container,) = deployments[name("dispatcher")]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LEADFLOW_GATEWAY_ADDR"].startswith(f"http://{name('gateway')}:")


def test_network_policies_can_be_disabled() -> None:
    assert of_kind(ci_objs("minimal-values.yaml"), "NetworkPolicy") == {}


# --- secrets ----------------------------------------------------------------------------------

SECRET_VALUES = ("s3cr3t-db-pass", "s3cr3t-redis-pass", "s3cr3t-pii-hash-key")


def test_no_secret_value_outside_secrets() -> None:
    values = load_values(CHART_DIR / "ci" / "production-values.yaml")
    objs = objects(values)
    for obj in objs:
        if obj["kind"] == "Secret":
            continue
        text = yaml.safe_dump(obj)
        for value in SECRET_VALUES:
            assert value not in text, f"{value} leaked into {obj['kind']} {obj['metadata']['name']}"
    for cm in of_kind(objs, "ConfigMap").values():
        assert all(s not in str(cm.get("data")) for s in SECRET_VALUES)
    secret = of_kind(objs, "Secret")["lf-leadflow"]
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded["database-url"] == values["externalDatabase"]["url"]
    assert decoded["pii-hash-key"] == "s3cr3t-pii-hash-key"


def test_generated_pii_key_when_none_given(default_objs: list[Obj]) -> None:
    secret = of_kind(default_objs, "Secret")["lf-leadflow"]
    assert len(base64.b64decode(secret["data"]["pii-hash-key"])) == 48


def test_existing_secrets_are_referenced_not_copied() -> None:
    objs = ci_objs("existing-secrets-values.yaml")
    # Only mTLS certificates and the secrets keyring (see test_tls.py) are generated.
    generated = ("lf-leadflow-tls-", "lf-leadflow-keyring")
    assert [n for n in of_kind(objs, "Secret") if not n.startswith(generated)] == []
    env = env_of(of_kind(objs, "Deployment")[name("compliance")])
    assert env["LEADFLOW_DATABASE_URL"] == {"secretKeyRef": {"name": "leadflow-db", "key": "url"}}
    assert env["LEADFLOW_REDIS_URL"] == {"secretKeyRef": {"name": "leadflow-redis", "key": "url"}}
    assert env["LEADFLOW_PII_HASH_KEY"] == {"secretKeyRef": {"name": "leadflow-pii", "key": "key"}}
    job = of_kind(objs, "Job")[name("migrations")]
    job_env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert job_env["LEADFLOW_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "leadflow-db"


# --- operator RBAC, hooks, tests, monitors ----------------------------------------------------


def test_operator_rbac_is_least_privilege(default_objs: list[Obj]) -> None:
    assert of_kind(default_objs, "ClusterRole") == {}
    assert of_kind(default_objs, "ClusterRoleBinding") == {}
    role = of_kind(default_objs, "Role")[name("operator")]
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        (("leadflow.dev",), ("tenants",)): {"get", "list", "watch", "patch", "update"},
        (("leadflow.dev",), ("tenants/status",)): {"get", "patch", "update"},
        (("",), ("secrets",)): {"get", "list", "watch", "create"},
        (("", "events.k8s.io"), ("events",)): {"create", "patch"},
    }
    binding = of_kind(default_objs, "RoleBinding")[name("operator")]
    dep = of_kind(default_objs, "Deployment")[name("operator")]
    assert binding["subjects"][0]["name"] == dep["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_migrations_run_as_a_pre_install_pre_upgrade_hook(default_objs: list[Obj]) -> None:
    job = of_kind(default_objs, "Job")[name("migrations")]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "python",
        "-m",
        "leadflow_cli",
        "migrate",
    ]
    # Its Secret is a hook too, created before it (the release's own Secret does not exist yet).
    hook_secret = of_kind(default_objs, "Secret")[name("migrations")]
    assert int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )


def test_helm_test_pod_checks_grpc_health(default_objs: list[Obj]) -> None:
    pod = of_kind(default_objs, "Pod")[name("test") + "-grpc-health"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = pod["spec"]["containers"][0]
    assert "health_pb2_grpc.HealthStub" in c["command"][-1]
    assert {"name": "TARGET", "value": "lf-leadflow-compliance:50051"} in c["env"]
    compile(c["command"][-1], "helm-test", "exec")


def test_service_monitors_are_optional() -> None:
    assert of_kind(objects({}), "ServiceMonitor") == {}
    monitors = of_kind(ci_objs("production-values.yaml"), "ServiceMonitor")
    # The gateway's public Service has no /metrics: its pods are scraped through the PodMonitor.
    assert set(monitors) == {name("dispatcher")}
    assert monitors[name("dispatcher")]["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitors[name("dispatcher")]["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_digest_pins_the_image() -> None:
    dep = of_kind(ci_objs("production-values.yaml"), "Deployment")[name("gateway")]
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/leadflow@sha256:" + "0123456789abcdef" * 4


def test_notes_tell_how_to_reach_the_gateway_and_manage_tenants() -> None:
    notes = render({})["leadflow/templates/NOTES.txt"]
    assert "port-forward svc/lf-leadflow-gateway" in notes
    assert "get tenants" in notes
    assert "external.metrics.k8s.io" in notes

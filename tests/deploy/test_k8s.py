"""The Kubernetes manifests (k8s/overlays/cpu and gpu, rendered by kustomize): every object valid
against its schema, and every workload within the deployment policy. Needs no cluster.

The second half checks the checks, on small objects written here.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy import k8s_checks as k
from tests.deploy.k8s_checks import Obj

OVERLAYS = ("cpu", "gpu")


@dataclass(frozen=True)
class Rendered:
    overlay: str
    objects: list[Obj]
    error: str | None = None

    def require(self) -> list[Obj]:
        """The objects; a test of an overlay that does not render fails, pointing at the test
        that says why."""
        if self.error is not None:
            pytest.fail(
                f"the {self.overlay} overlay does not render: see "
                f"test_overlay_renders[{self.overlay}]",
                pytrace=False,
            )
        return self.objects


@pytest.fixture(scope="module")
def custom_schemas(crd_dir: Path) -> k.CustomSchemas:
    return k.CustomSchemas.load(crd_dir)


@functools.cache
def render_overlay(kustomize: Path, deploy_root: Path, overlay: str) -> Rendered:
    path = deploy_root / "k8s" / "overlays" / overlay
    if not (path / "kustomization.yaml").is_file():
        return Rendered(overlay, [], f"{path}/kustomization.yaml is missing")
    try:
        objects = k.render(kustomize, path)
    except k.RenderError as error:
        return Rendered(overlay, [], str(error))
    if not objects:
        return Rendered(overlay, [], f"kustomize build {path} printed no object")
    return Rendered(overlay, objects)


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest, kustomize: Path, deploy_root: Path) -> Rendered:
    return render_overlay(kustomize, deploy_root, str(request.param))


def fail_on(problems: list[str], what: str) -> None:
    if problems:
        pytest.fail(f"{len(problems)} {what}:\n  " + "\n  ".join(problems), pytrace=False)


# --- the manifests ------------------------------------------------------------------------------


def test_overlay_renders(rendered: Rendered) -> None:
    """`kustomize build`, with kustomize's default load restrictions as `kubectl apply -k` has."""
    if rendered.error is not None:
        pytest.fail(rendered.error, pytrace=False)


def test_objects_match_their_schemas(rendered: Rendered, custom_schemas: k.CustomSchemas) -> None:
    problems = [p for obj in rendered.require() for p in k.validate_object(obj, custom_schemas)]
    fail_on(problems, f"schema problem(s) in the {rendered.overlay} overlay")


def test_workloads_follow_the_policy(rendered: Rendered) -> None:
    workloads = k.of_kind(rendered.require(), *k.WORKLOAD_KINDS)
    assert workloads, f"the {rendered.overlay} overlay has no Deployment or StatefulSet"
    problems = [p for w in workloads for p in k.workload_problems(w)]
    fail_on(problems, f"policy problem(s) in the {rendered.overlay} overlay")


def test_api_probes_healthz_and_readyz(rendered: Rendered) -> None:
    apis = [d for d in k.of_kind(rendered.require(), "Deployment") if k.is_api(d)]
    assert apis, f"the {rendered.overlay} overlay has no API Deployment (named or labelled *api)"
    fail_on([p for d in apis for p in k.api_probe_problems(d)], "API probe problem(s)")


def test_no_secret_values_in_the_repository(rendered: Rendered) -> None:
    fail_on(k.secret_problems(rendered.require()), "secret value(s) in the manifests")


def test_each_deployment_has_a_disruption_budget(rendered: Rendered) -> None:
    fail_on(k.pdb_problems(rendered.require()), "disruption budget problem(s)")


def test_segment_workers_placement(rendered: Rendered) -> None:
    fail_on(k.gpu_problems(rendered.require(), rendered.overlay), "GPU placement problem(s)")


def test_references_resolve(rendered: Rendered) -> None:
    fail_on(k.reference_problems(rendered.require()), "dangling reference(s)")


def test_redis_keeps_its_data(rendered: Rendered) -> None:
    fail_on(k.redis_persistence_problems(rendered.require()), "Redis persistence problem(s)")


def test_kafka_admits_only_segstream_pods(rendered: Rendered) -> None:
    fail_on(k.kafka_listener_problems(rendered.require()), "Kafka listener problem(s)")


def test_gpu_overlay_runs_its_own_segment_image(kustomize: Path, deploy_root: Path) -> None:
    """The gpu overlay's segment workers do not run the cpu overlay's image."""
    images = {
        overlay: k.segment_images(render_overlay(kustomize, deploy_root, overlay).require())
        for overlay in OVERLAYS
    }
    assert images["gpu"], "the gpu overlay has no segment container"
    shared = images["gpu"] & images["cpu"]
    assert not shared, f"the gpu overlay's segment workers run the cpu overlay's image {shared}"


# --- the checks ---------------------------------------------------------------------------------

GOOD_API: Obj = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "segstream-api", "namespace": "ns"},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "api"}},
        "template": {
            "metadata": {"labels": {"app": "api"}},
            "spec": {
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                "containers": [
                    {
                        "name": "api",
                        "image": "segstream:0.1.0",
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "256Mi"},
                            "limits": {"memory": "512Mi"},
                        },
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
                        "securityContext": {
                            "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False,
                        },
                    }
                ],
            },
        },
    },
}
GOOD_PDB: Obj = {
    "apiVersion": "policy/v1",
    "kind": "PodDisruptionBudget",
    "metadata": {"name": "segstream-api", "namespace": "ns"},
    "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "api"}}},
}
GOOD_TOPIC: Obj = {
    "apiVersion": "kafka.strimzi.io/v1beta2",
    "kind": "KafkaTopic",
    "metadata": {"name": "segstream.dlq", "namespace": "ns", "labels": {"strimzi.io/cluster": "k"}},
    "spec": {"partitions": 3, "replicas": 3, "config": {"retention.ms": 604800000}},
}


def test_policy_passes_a_good_deployment_and_flags_a_bare_one() -> None:
    assert k.workload_problems(GOOD_API) == []
    assert k.api_probe_problems(GOOD_API) == []
    bare = copy.deepcopy(GOOD_API)
    bare["spec"]["template"]["spec"] = {"containers": [{"name": "api", "image": "segstream"}]}
    problems = "\n".join(k.workload_problems(bare) + k.api_probe_problems(bare))
    for expected in (
        "resources lack requests.cpu, requests.memory, limits.memory",
        "no livenessProbe",
        "no readinessProbe",
        "runAsNonRoot is not true",
        "readOnlyRootFilesystem is not true",
        "allowPrivilegeEscalation is not false",
        "is not pinned",
        "no container probes",
    ):
        assert expected in problems


def test_policy_flags_a_probe_on_an_unnamed_port() -> None:
    wrong = copy.deepcopy(GOOD_API)
    wrong["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = "web"
    assert any("port 'web'" in p for p in k.workload_problems(wrong))


def test_disruption_budgets() -> None:
    assert k.pdb_problems([GOOD_API, GOOD_PDB]) == []
    assert "no PodDisruptionBudget" in " ".join(k.pdb_problems([GOOD_API]))
    other = copy.deepcopy(GOOD_PDB)
    other["spec"]["selector"] = {"matchLabels": {"app": "segment"}}
    assert "no PodDisruptionBudget" in " ".join(k.pdb_problems([GOOD_API, other]))
    blocking = copy.deepcopy(GOOD_PDB)
    blocking["spec"] = {"minAvailable": 2, "selector": blocking["spec"]["selector"]}
    assert "cannot evict" in " ".join(k.pdb_problems([GOOD_API, blocking]))


def test_secret_values_are_flagged() -> None:
    empty: Obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    assert k.secret_problems([empty]) == []
    assert k.secret_problems([{**empty, "data": {"password": "c2VjcmV0"}}])
    assert k.secret_problems([{**empty, "stringData": {"token": "secret"}}])
    literal = copy.deepcopy(GOOD_API)
    literal["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "SEGSTREAM_REDIS_PASSWORD", "value": "hunter2"}
    ]
    assert "literal value" in " ".join(k.secret_problems([literal]))


def test_gpu_placement_checks() -> None:
    segment = copy.deepcopy(GOOD_API)
    segment["metadata"]["name"] = "segstream-segment"
    assert k.gpu_problems([segment], "cpu") == []
    assert len(k.gpu_problems([segment], "gpu")) == 3
    container = segment["spec"]["template"]["spec"]["containers"][0]
    container["resources"]["limits"][k.GPU_RESOURCE] = 1
    segment["spec"]["template"]["spec"]["nodeSelector"] = {"nvidia.com/gpu.present": "true"}
    segment["spec"]["template"]["spec"]["tolerations"] = [{"key": k.GPU_RESOURCE}]
    assert k.gpu_problems([segment], "gpu") == []
    assert "asks for nvidia.com/gpu" in " ".join(k.gpu_problems([segment], "cpu"))


def test_monitors_of_strimzi_pods() -> None:
    kafka: Obj = {"kind": "Kafka", "metadata": {"name": "k", "namespace": "ns"}, "spec": {}}
    monitor: Obj = {
        "kind": "PodMonitor",
        "metadata": {"name": "m", "namespace": "ns"},
        "spec": {
            "selector": {"matchLabels": {"strimzi.io/cluster": "k", "strimzi.io/kind": "Kafka"}},
            "podMetricsEndpoints": [{"port": "tcp-prometheus"}],
        },
    }
    assert "neither" in " ".join(k.reference_problems([kafka, monitor]))
    kafka["spec"] = {"kafka": {"metricsConfig": {"type": "jmxPrometheusExporter"}}}
    assert k.reference_problems([kafka, monitor]) == []
    assert "names no Kafka" in " ".join(k.reference_problems([monitor]))


def test_label_selectors() -> None:
    labels = {"app": "api", "tier": "web"}
    assert k.selects({}, labels)
    assert not k.selects(None, labels)
    assert k.selects(
        {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}, labels
    )
    assert not k.selects({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, labels)
    assert not k.selects({"matchLabels": {"app": "other"}}, labels)


def test_schemas_pass_good_objects_and_flag_bad_ones(custom_schemas: k.CustomSchemas) -> None:
    assert k.validate_object(GOOD_API, custom_schemas) == []
    assert k.validate_object(GOOD_PDB, custom_schemas) == []
    assert k.validate_object(GOOD_TOPIC, custom_schemas) == []

    typo = copy.deepcopy(GOOD_API)
    typo["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    assert "livenesProbe" in " ".join(k.validate_object(typo, custom_schemas))

    topic = copy.deepcopy(GOOD_TOPIC)
    topic["spec"]["partition"] = 3
    topic["spec"]["replicas"] = 0
    problems = " ".join(k.validate_object(topic, custom_schemas))
    assert "'partition' was unexpected" in problems
    assert "spec.replicas" in problems

    bad_meta = copy.deepcopy(GOOD_TOPIC)
    bad_meta["metadata"]["labels"] = {"strimzi.io/cluster": 3}
    assert "metadata.labels" in " ".join(k.validate_object(bad_meta, custom_schemas))

    unserved = {**GOOD_TOPIC, "apiVersion": "kafka.strimzi.io/v9"}
    assert "is not served" in " ".join(k.validate_object(unserved, custom_schemas))

    unknown: Obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert "unknown kind Widget" in " ".join(k.validate_object(unknown, custom_schemas))


def test_custom_schemas_cover_every_custom_kind(custom_schemas: k.CustomSchemas) -> None:
    from tests.deploy.tools import CUSTOM_KINDS

    assert set(custom_schemas.by_kind) >= set(CUSTOM_KINDS)
    expected = {"kafka.strimzi.io": "v1beta2", "keda.sh": "v1alpha1", "monitoring.coreos.com": "v1"}
    for group, kind in CUSTOM_KINDS:
        served = custom_schemas.by_kind[(group, kind)]
        assert expected[group] in served, (kind, sorted(served))


def test_strict_schema_keeps_open_objects_open() -> None:
    schema: Obj = {
        "type": "object",
        "properties": {
            "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "name": {"type": "string", "nullable": True},
        },
    }
    strict = k.strict_schema(schema)
    assert strict["additionalProperties"] is False
    assert "additionalProperties" not in strict["properties"]["config"]
    assert strict["properties"]["labels"]["additionalProperties"] == {"type": "string"}
    assert strict["properties"]["name"]["type"] == ["string", "null"]


def test_redis_persistence_check() -> None:
    redis: Obj = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "redis", "namespace": "ns"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "redis",
                            "image": "redis:7.4.1-alpine",
                            "args": [
                                "--appendonly",
                                "yes",
                                "--appendfsync",
                                "everysec",
                                "--dir",
                                "/data",
                            ],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ]
                }
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}}],
        },
    }
    assert k.redis_persistence_problems([redis]) == []
    no_fsync = copy.deepcopy(redis)
    no_fsync["spec"]["template"]["spec"]["containers"][0]["args"] = ["--appendonly", "yes"]
    no_fsync["spec"]["template"]["spec"]["containers"][0]["args"] += ["--dir", "/data"]
    assert "appendfsync" in " ".join(k.redis_persistence_problems([no_fsync]))
    no_claim = copy.deepcopy(redis)
    no_claim["spec"]["volumeClaimTemplates"] = []
    assert "volumeClaimTemplate" in " ".join(k.redis_persistence_problems([no_claim]))
    assert k.redis_persistence_problems([GOOD_API]) == ["no workload runs a redis image"]


def test_kafka_listener_check() -> None:
    kafka: Obj = {
        "kind": "Kafka",
        "metadata": {"name": "k", "namespace": "ns"},
        "spec": {"kafka": {"listeners": [{"name": "plain", "port": 9092}]}},
    }
    assert "every pod may connect" in " ".join(k.kafka_listener_problems([kafka, GOOD_API]))
    listener = kafka["spec"]["kafka"]["listeners"][0]
    listener["networkPolicyPeers"] = [{"podSelector": {"matchLabels": {"app": "segment"}}}]
    assert "does not admit" in " ".join(k.kafka_listener_problems([kafka, GOOD_API]))
    listener["networkPolicyPeers"].append({"podSelector": {"matchLabels": {"app": "api"}}})
    assert k.kafka_listener_problems([kafka, GOOD_API]) == []

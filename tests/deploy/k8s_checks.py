"""Checks of rendered Kubernetes manifests, offline: schemas and the deployment policy.

Schemas: core kinds against the Kubernetes OpenAPI schemas that kubernetes-validate bundles
(strict: an unknown field is an error, as with `kubectl apply --validate=strict`), custom
resources against the openAPIV3Schema of their CRD, made strict the same way (an object
schema that lists properties and neither sets additionalProperties nor
x-kubernetes-preserve-unknown-fields rejects other fields, as the API server's strict field
validation does), and their metadata against ObjectMeta. An object of any other kind is an
error. CEL rules (x-kubernetes-validations) are not evaluated.

Every check returns a list of problems (empty: it passes), each naming the object.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.tools import CUSTOM_KINDS

# The oldest Kubernetes the manifests must apply to; fields added later fail validation.
K8S_VERSION = "1.30"
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
GPU_RESOURCE = "nvidia.com/gpu"
API_PROBE_PATHS = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
# Environment variables whose literal value would be a secret in the repository.
SECRET_ENV = re.compile(r"(PASSWORD|PASSWD|TOKENS?|SECRET|CREDENTIALS?|PRIVATE_KEY)$", re.I)
MESSAGE_MAX = 300
# Extra `kustomize build` flags: none, so kustomize's default load restrictions hold, as they do
# for `kubectl apply -k` (a file outside a kustomization's folder may not be loaded).
BUILD_FLAGS: tuple[str, ...] = ()

Obj = dict[str, Any]


class RenderError(Exception):
    pass


def render(kustomize: Path, overlay: Path) -> list[Obj]:
    """The objects `kustomize build overlay` prints."""
    done = subprocess.run(
        [str(kustomize), "build", *BUILD_FLAGS, str(overlay)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RenderError(f"kustomize build {overlay} failed:\n{done.stderr.strip()}")
    objects: list[Obj] = []
    for doc in yaml.safe_load_all(done.stdout):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise RenderError(f"kustomize build {overlay}: a document is not a mapping: {doc!r}")
        objects.append(doc)
    return objects


def ident(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    name = meta.get("name", "<no name>")
    return (
        f"{obj.get('kind', '<no kind>')}/{namespace}/{name}"
        if namespace
        else (f"{obj.get('kind', '<no kind>')}/{name}")
    )


def group_of(obj: Obj) -> str:
    api_version = str(obj.get("apiVersion", ""))
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def _short(message: str) -> str:
    return message if len(message) <= MESSAGE_MAX else message[: MESSAGE_MAX - 3] + "..."


# --- schemas ------------------------------------------------------------------------------------


def strict_schema(schema: Obj) -> Obj:
    """A CRD's structural schema, strict about unknown fields and with `nullable` as JSON Schema.

    Only the structural part (properties, items, additionalProperties) gets
    additionalProperties: false; allOf/anyOf/oneOf/not are value checks and stay as they are.
    """
    out = dict(schema)
    if out.get("nullable") is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: strict_schema(v) for k, v in out["properties"].items()}
        if "additionalProperties" not in out and not out.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = strict_schema(out["additionalProperties"])
    if isinstance(out.get("items"), dict):
        out["items"] = strict_schema(out["items"])
    return out


def validate_core(obj: Obj) -> list[str] | None:
    """Problems of a core object against Kubernetes K8S_VERSION; None: no schema has its kind."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return None
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.path) or "<root>"
        return [f"{ident(obj)}: {path}: {_short(error.message)}"]
    return []


@dataclass(frozen=True)
class CustomSchemas:
    """The strict openAPIV3Schema of each served version of each custom kind."""

    by_kind: dict[tuple[str, str], dict[str, Obj]]

    @classmethod
    def load(cls, crd_dir: Path, files: Iterable[str] = CUSTOM_KINDS.values()) -> CustomSchemas:
        by_kind: dict[tuple[str, str], dict[str, Obj]] = {}
        for name in sorted(set(files)):
            with open(crd_dir / name, encoding="utf-8") as f:
                for crd in yaml.safe_load_all(f):
                    if not crd or crd.get("kind") != "CustomResourceDefinition":
                        continue
                    spec = crd["spec"]
                    versions = by_kind.setdefault((spec["group"], spec["names"]["kind"]), {})
                    for version in spec["versions"]:
                        if version.get("served", True):
                            schema = version["schema"]["openAPIV3Schema"]
                            versions[version["name"]] = strict_schema(schema)
        return cls(by_kind)

    def validate(self, obj: Obj) -> list[str]:
        import jsonschema

        key = (group_of(obj), str(obj.get("kind")))
        versions = self.by_kind.get(key)
        if versions is None:
            return [f"{ident(obj)}: no CRD for {key[1]} in group {key[0]!r}"]
        version = str(obj.get("apiVersion", "")).split("/")[-1]
        if version not in versions:
            return [
                f"{ident(obj)}: apiVersion {obj.get('apiVersion')} is not served by its CRD "
                f"(served: {', '.join(sorted(versions))})"
            ]
        validator = jsonschema.Draft4Validator(versions[version])
        problems = [
            f"{ident(obj)}: {'.'.join(str(p) for p in e.absolute_path) or '<root>'}: "
            f"{_short(e.message)}"
            for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path)))
        ]
        problems += validate_metadata(obj)
        return problems


def validate_metadata(obj: Obj) -> list[str]:
    """A custom resource's metadata against ObjectMeta (through a ConfigMap that carries it)."""
    carrier = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj.get("metadata")}
    problems = validate_core(carrier) or []
    return [p.replace(ident(carrier), ident(obj), 1) for p in problems]


def validate_object(obj: Obj, custom: CustomSchemas) -> list[str]:
    if not obj.get("apiVersion") or not obj.get("kind"):
        return [f"{ident(obj)}: no apiVersion or kind"]
    if (group_of(obj), obj["kind"]) in CUSTOM_KINDS:
        return custom.validate(obj)
    problems = validate_core(obj)
    if problems is None:
        return [f"{ident(obj)}: unknown kind {obj['kind']} ({obj['apiVersion']})"]
    return problems


# --- policy -------------------------------------------------------------------------------------


def of_kind(objects: Iterable[Obj], *kinds: str) -> list[Obj]:
    return [o for o in objects if o.get("kind") in kinds]


def namespace_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def name_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def labels_of(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def pod_spec(obj: Obj) -> Obj:
    return dict(((obj.get("spec") or {}).get("template") or {}).get("spec") or {})


def pod_labels(obj: Obj) -> dict[str, str]:
    template = (obj.get("spec") or {}).get("template") or {}
    return dict((template.get("metadata") or {}).get("labels") or {})


def containers(obj: Obj, *, init: bool = False) -> list[Obj]:
    spec = pod_spec(obj)
    found = list(spec.get("containers") or [])
    return found + list(spec.get("initContainers") or []) if init else found


def role_of(obj: Obj) -> str:
    """The workload's component: its app.kubernetes.io/component label, else its name."""
    labels = {**pod_labels(obj), **labels_of(obj)}
    return str(labels.get("app.kubernetes.io/component") or name_of(obj))


def is_api(obj: Obj) -> bool:
    role = role_of(obj)
    return role == "api" or role.endswith("-api")


def is_segment(obj: Obj) -> bool:
    return "segment" in role_of(obj)


def selects(selector: Obj | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against labels; None selects nothing."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _probe_port_problem(where: str, probe_name: str, probe: Obj, container: Obj) -> str | None:
    handler = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc") or {}
    port = handler.get("port")
    if isinstance(port, str) and not port.isdigit():
        names = {p.get("name") for p in container.get("ports") or []}
        if port not in names:
            return f"{where}: {probe_name} uses port {port!r}, which the container does not name"
    return None


def _image_problem(where: str, image: str) -> str | None:
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    if not tag or tag == "latest":
        return f"{where}: image {image!r} is not pinned (no tag or :latest)"
    return None


def workload_problems(obj: Obj) -> list[str]:
    """Resources, probes and security context of each container of a Deployment or StatefulSet."""
    problems: list[str] = []
    spec = pod_spec(obj)
    pod_security = spec.get("securityContext") or {}
    regular = containers(obj)
    if not regular:
        problems.append(f"{ident(obj)}: no containers")
    for container in containers(obj, init=True):
        is_init = container not in regular
        where = (
            f"{ident(obj)} {'init container' if is_init else 'container'} {container.get('name')}"
        )
        resources = container.get("resources") or {}
        requests = resources.get("requests") or {}
        limits = resources.get("limits") or {}
        missing = [f"requests.{r}" for r in ("cpu", "memory") if r not in requests]
        missing += ["limits.memory"] if "memory" not in limits else []
        if missing:
            problems.append(f"{where}: resources lack {', '.join(missing)}")
        if not is_init:
            for probe_name in ("livenessProbe", "readinessProbe"):
                probe = container.get(probe_name)
                if not probe:
                    problems.append(f"{where}: no {probe_name}")
                    continue
                port_problem = _probe_port_problem(where, probe_name, probe, container)
                if port_problem:
                    problems.append(port_problem)
        security = container.get("securityContext") or {}
        non_root = security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))
        if non_root is not True:
            problems.append(f"{where}: runAsNonRoot is not true (container or pod)")
        if security.get("runAsUser", pod_security.get("runAsUser")) == 0:
            problems.append(f"{where}: runAsUser is 0")
        if security.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem is not true")
        if security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        image_problem = _image_problem(where, str(container.get("image", "")))
        if image_problem:
            problems.append(image_problem)
    return problems


def api_probe_problems(obj: Obj) -> list[str]:
    """The API's container answers liveness on /healthz and readiness on /readyz."""
    for container in containers(obj):
        paths = {
            name: ((container.get(name) or {}).get("httpGet") or {}).get("path")
            for name in API_PROBE_PATHS
        }
        if paths == API_PROBE_PATHS:
            return []
    seen = {
        str(c.get("name")): {
            n: ((c.get(n) or {}).get("httpGet") or {}).get("path") for n in API_PROBE_PATHS
        }
        for c in containers(obj)
    }
    return [f"{ident(obj)}: no container probes {API_PROBE_PATHS} over HTTP (has {seen})"]


def secret_problems(objects: Iterable[Obj]) -> list[str]:
    """No Secret carries values, and no container sets a secret-like variable to a literal."""
    problems: list[str] = []
    for obj in objects:
        if obj.get("kind") == "Secret":
            for field in ("data", "stringData"):
                if obj.get(field):
                    keys = ", ".join(sorted(obj[field]))
                    problems.append(f"{ident(obj)}: carries {field} ({keys}) in the repository")
        for container in containers(obj, init=True) if obj.get("kind") in WORKLOAD_KINDS else []:
            for env in container.get("env") or []:
                if SECRET_ENV.search(str(env.get("name", ""))) and env.get("value"):
                    problems.append(
                        f"{ident(obj)} container {container.get('name')}: env {env['name']} "
                        "has a literal value (use valueFrom.secretKeyRef)"
                    )
    return problems


def _desired_minimum(deployment: Obj, objects: list[Obj]) -> int | None:
    """The fewest replicas a Deployment runs: its autoscaler's minimum, else spec.replicas."""
    namespace, name = namespace_of(deployment), name_of(deployment)
    for scaled in of_kind(objects, "ScaledObject"):
        ref = (scaled.get("spec") or {}).get("scaleTargetRef") or {}
        if namespace_of(scaled) == namespace and ref.get("name") == name:
            # KEDA's default minimum is 0; once scaled up, one replica is the fewest it runs.
            return max(1, int((scaled.get("spec") or {}).get("minReplicaCount", 0)))
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if namespace_of(hpa) == namespace and ref.get("name") == name:
            return int((hpa.get("spec") or {}).get("minReplicas", 1))
    replicas = (deployment.get("spec") or {}).get("replicas", 1)
    return replicas if isinstance(replicas, int) else None


def pdb_problems(objects: list[Obj]) -> list[str]:
    """Each Deployment has a PodDisruptionBudget selecting its pods that lets a drain proceed."""
    problems: list[str] = []
    budgets = of_kind(objects, "PodDisruptionBudget")
    for deployment in of_kind(objects, "Deployment"):
        labels = pod_labels(deployment)
        mine = [
            b
            for b in budgets
            if namespace_of(b) == namespace_of(deployment)
            and selects((b.get("spec") or {}).get("selector"), labels)
        ]
        if not mine:
            problems.append(f"{ident(deployment)}: no PodDisruptionBudget selects its pods")
        minimum = _desired_minimum(deployment, objects)
        for budget in mine:
            spec = budget.get("spec") or {}
            if spec.get("maxUnavailable") in (0, "0%"):
                problems.append(f"{ident(budget)}: maxUnavailable 0 blocks every eviction")
            min_available = spec.get("minAvailable")
            if isinstance(min_available, int) and minimum is not None and min_available >= minimum:
                problems.append(
                    f"{ident(budget)}: minAvailable {min_available} >= the {minimum} replica(s) "
                    f"{ident(deployment)} may run: a node drain cannot evict it"
                )
    return problems


def gpu_requests(container: Obj) -> bool:
    resources = container.get("resources") or {}
    return any(GPU_RESOURCE in (resources.get(part) or {}) for part in ("requests", "limits"))


def segment_images(objects: list[Obj]) -> set[str]:
    return {
        str(c.get("image"))
        for seg in of_kind(objects, "Deployment")
        if is_segment(seg)
        for c in containers(seg)
    }


def gpu_problems(objects: list[Obj], overlay: str) -> list[str]:
    """gpu: the segment Deployment takes a GPU (a limit, as extended resources need), a node
    selector and tolerations; cpu: no workload asks for a GPU."""
    problems: list[str] = []
    workloads = of_kind(objects, *WORKLOAD_KINDS)
    segments = [w for w in of_kind(objects, "Deployment") if is_segment(w)]
    if not segments:
        problems.append(f"{overlay}: no segment Deployment (named or labelled *segment*)")
    if overlay == "gpu":
        for seg in segments:
            spec = pod_spec(seg)
            limits = [
                ((c.get("resources") or {}).get("limits") or {}).get(GPU_RESOURCE)
                for c in containers(seg)
            ]
            if not any(limits):
                problems.append(f"{ident(seg)}: no container has limits.{GPU_RESOURCE}")
            if not spec.get("nodeSelector"):
                problems.append(f"{ident(seg)}: no nodeSelector")
            if not spec.get("tolerations"):
                problems.append(f"{ident(seg)}: no tolerations")
    else:
        for workload in workloads:
            for container in containers(workload, init=True):
                if gpu_requests(container):
                    problems.append(
                        f"{ident(workload)} container {container.get('name')}: asks for "
                        f"{GPU_RESOURCE} in the {overlay} overlay"
                    )
    return problems


def _container_port_names(workloads: Iterable[Obj]) -> set[str]:
    return {
        str(p["name"])
        for w in workloads
        for c in containers(w)
        for p in c.get("ports") or []
        if p.get("name")
    }


def _monitor_namespaces(monitor: Obj) -> set[str] | None:
    """The namespaces a ServiceMonitor or PodMonitor looks in; None: all."""
    selector = (monitor.get("spec") or {}).get("namespaceSelector") or {}
    if selector.get("any"):
        return None
    return set(selector.get("matchNames") or [namespace_of(monitor)])


def _in(namespaces: set[str] | None, obj: Obj) -> bool:
    return namespaces is None or namespace_of(obj) in namespaces


def _strimzi_monitor_problems(monitor: Obj, objects: list[Obj]) -> list[str]:
    """A PodMonitor of the pods Strimzi's operator runs (not in the manifests): its Kafka
    exists, and metrics are on when it scrapes Strimzi's metrics port."""
    spec = monitor.get("spec") or {}
    cluster = spec["selector"]["matchLabels"]["strimzi.io/cluster"]
    namespaces = _monitor_namespaces(monitor)
    kafkas = [k for k in of_kind(objects, "Kafka") if name_of(k) == cluster and _in(namespaces, k)]
    if not kafkas:
        return [f"{ident(monitor)}: strimzi.io/cluster {cluster!r} names no Kafka it may select"]
    ports = {e.get("port") for e in spec.get("podMetricsEndpoints") or []}
    kafka_spec = kafkas[0].get("spec") or {}
    metrics_on = bool((kafka_spec.get("kafka") or {}).get("metricsConfig")) or bool(
        kafka_spec.get("kafkaExporter")
    )
    if "tcp-prometheus" in ports and not metrics_on:
        return [
            f"{ident(monitor)}: scrapes tcp-prometheus but Kafka {cluster} sets neither "
            "spec.kafka.metricsConfig nor spec.kafkaExporter"
        ]
    return []


def reference_problems(objects: list[Obj]) -> list[str]:
    """References between objects resolve: services and monitors select pods and name their
    ports, ScaledObjects target a workload, Strimzi resources name an existing Kafka."""
    problems: list[str] = []
    workloads = of_kind(objects, *WORKLOAD_KINDS)
    services = of_kind(objects, "Service")
    for service in services:
        spec = service.get("spec") or {}
        selector = spec.get("selector")
        if not selector:
            continue
        matched = [
            w
            for w in workloads
            if namespace_of(w) == namespace_of(service)
            and selects({"matchLabels": selector}, pod_labels(w))
        ]
        if not matched:
            problems.append(f"{ident(service)}: its selector {selector} matches no workload's pods")
            continue
        names = _container_port_names(matched)
        for port in spec.get("ports") or []:
            target = port.get("targetPort")
            if isinstance(target, str) and not target.isdigit() and target not in names:
                problems.append(
                    f"{ident(service)}: targetPort {target!r} is no named port of its pods"
                )
    for monitor in of_kind(objects, "ServiceMonitor"):
        spec = monitor.get("spec") or {}
        namespaces = _monitor_namespaces(monitor)
        matched_services = [
            s
            for s in services
            if _in(namespaces, s) and selects(spec.get("selector"), labels_of(s))
        ]
        if not matched_services:
            problems.append(f"{ident(monitor)}: its selector matches no Service's labels")
            continue
        port_names = {
            str(p.get("name")) for s in matched_services for p in s["spec"].get("ports") or []
        }
        for endpoint in spec.get("endpoints") or []:
            if endpoint.get("port") and endpoint["port"] not in port_names:
                problems.append(
                    f"{ident(monitor)}: endpoint port {endpoint['port']!r} is no port name of "
                    "the Services it selects"
                )
    for monitor in of_kind(objects, "PodMonitor"):
        spec = monitor.get("spec") or {}
        namespaces = _monitor_namespaces(monitor)
        if "strimzi.io/cluster" in ((spec.get("selector") or {}).get("matchLabels") or {}):
            problems += _strimzi_monitor_problems(monitor, objects)
            continue
        matched = [
            w
            for w in workloads
            if _in(namespaces, w) and selects(spec.get("selector"), pod_labels(w))
        ]
        if not matched:
            problems.append(f"{ident(monitor)}: its selector matches no workload's pods")
            continue
        names = _container_port_names(matched)
        for endpoint in spec.get("podMetricsEndpoints") or []:
            if endpoint.get("port") and endpoint["port"] not in names:
                problems.append(
                    f"{ident(monitor)}: endpoint port {endpoint['port']!r} is no named port of "
                    "the pods it selects"
                )
    for scaled in of_kind(objects, "ScaledObject"):
        ref = (scaled.get("spec") or {}).get("scaleTargetRef") or {}
        kind = ref.get("kind", "Deployment")
        if not any(
            w.get("kind") == kind
            and name_of(w) == ref.get("name")
            and namespace_of(w) == namespace_of(scaled)
            for w in workloads
        ):
            problems.append(f"{ident(scaled)}: scaleTargetRef {kind}/{ref.get('name')} is missing")
    kafkas = {(namespace_of(k), name_of(k)) for k in of_kind(objects, "Kafka")}
    for obj in of_kind(objects, "KafkaTopic", "KafkaNodePool"):
        cluster = labels_of(obj).get("strimzi.io/cluster")
        if cluster is None:
            problems.append(f"{ident(obj)}: no strimzi.io/cluster label")
        elif (namespace_of(obj), cluster) not in kafkas:
            problems.append(f"{ident(obj)}: strimzi.io/cluster {cluster!r} names no Kafka here")
    return problems


def _flag(args: list[str], name: str) -> str | None:
    """The value after ``--name`` in a command line (redis-server's options), else None."""
    for index, arg in enumerate(args[:-1]):
        if arg == f"--{name}":
            return args[index + 1]
    return None


def redis_persistence_problems(objects: list[Obj]) -> list[str]:
    """Redis keeps its data: a StatefulSet running redis-server with an append-only file
    fsynced every second (``--appendonly yes --appendfsync everysec``) in a directory on a
    volume from its volumeClaimTemplates."""
    problems: list[str] = []
    found = False
    for workload in of_kind(objects, "StatefulSet", "Deployment"):
        for container in containers(workload):
            if not str(container.get("image", "")).split("/")[-1].startswith("redis"):
                continue
            found = True
            where = f"{ident(workload)} container {container.get('name')}"
            command = [*(container.get("command") or []), *(container.get("args") or [])]
            args = [str(a) for a in command]
            if _flag(args, "appendonly") != "yes":
                problems.append(f"{where}: no --appendonly yes")
            if _flag(args, "appendfsync") != "everysec":
                problems.append(f"{where}: no --appendfsync everysec")
            data_dir = _flag(args, "dir")
            claims = {
                name_of(t)
                for t in (workload.get("spec") or {}).get("volumeClaimTemplates") or []
                if workload.get("kind") == "StatefulSet"
            }
            mounts = {
                str(m.get("mountPath")): str(m.get("name"))
                for m in container.get("volumeMounts") or []
            }
            if data_dir is None or mounts.get(data_dir) not in claims:
                problems.append(
                    f"{where}: its --dir {data_dir} is not a volume from a volumeClaimTemplate"
                )
    if not found:
        problems.append("no workload runs a redis image")
    return problems


def kafka_listener_problems(objects: list[Obj]) -> list[str]:
    """Every listener of every Kafka admits only listed peers (``networkPolicyPeers``, which
    Strimzi turns into a NetworkPolicy), and the peers admit the pods of every Deployment
    (the API, ingest and segment workers all use Kafka). The registry topic carries camera
    credentials; an empty peer list would admit any pod of the cluster."""
    problems: list[str] = []
    deployments = of_kind(objects, "Deployment")
    for kafka in of_kind(objects, "Kafka"):
        for listener in ((kafka.get("spec") or {}).get("kafka") or {}).get("listeners") or []:
            where = f"{ident(kafka)} listener {listener.get('name')}"
            peers = listener.get("networkPolicyPeers") or []
            if not peers:
                problems.append(f"{where}: no networkPolicyPeers: every pod may connect")
                continue
            for deployment in deployments:
                admitted = any(
                    "namespaceSelector" not in peer
                    and selects(peer.get("podSelector"), pod_labels(deployment))
                    for peer in peers
                )
                if not admitted:
                    problems.append(f"{where}: does not admit the pods of {ident(deployment)}")
    return problems

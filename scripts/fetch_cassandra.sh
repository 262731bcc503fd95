#!/usr/bin/env bash
# Fetch Apache Cassandra (org.apache.cassandra:cassandra-all and its runtime dependencies) from
# Maven Central into a cache outside the repo, once: ~/.cache/inferq/cassandra/<version>/lib.
# The tests' Cassandra fixture and `inferq dev --results cassandra` start a node from there
# (java -cp 'lib/*' org.apache.cassandra.service.CassandraDaemon); no Docker, no tarball.
#
#   scripts/fetch_cassandra.sh            fetch if missing, print the node's home
#   INFERQ_CASSANDRA_VERSION=5.0.6        which release (default below)
#   INFERQ_CASSANDRA_CACHE=DIR            cache root (default ~/.cache/inferq/cassandra)
#
# Idempotent: a complete fetch leaves lib/.complete, and a second run only checks it (~0 s).
# A fetch goes to a temporary folder that is renamed into place, so an interrupted run
# leaves nothing half-made. Every artifact comes from Maven Central (a mirror of '*' to it).
set -euo pipefail
version="${INFERQ_CASSANDRA_VERSION:-5.0.6}"
root="${INFERQ_CASSANDRA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/inferq/cassandra}"
home="$root/$version"
if [ -f "$home/lib/.complete" ]; then
  echo "$home"
  exit 0
fi
command -v mvn >/dev/null 2>&1 || { echo "fetch_cassandra: mvn (Apache Maven) not found" >&2; exit 1; }
command -v java >/dev/null 2>&1 || echo "fetch_cassandra: warning: no java on PATH; the node needs Java 17" >&2
mkdir -p "$root"
work="$(mktemp -d "$root/.fetch-$version.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cat >"$work/settings.xml" <<XML
<settings>
  <mirrors>
    <mirror><id>central-only</id><mirrorOf>*</mirrorOf>
      <url>https://repo.maven.apache.org/maven2</url></mirror>
  </mirrors>
</settings>
XML
cat >"$work/pom.xml" <<XML
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>inferq</groupId><artifactId>cassandra-node</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId><artifactId>cassandra-all</artifactId>
      <version>$version</version>
    </dependency>
  </dependencies>
</project>
XML
start=$SECONDS
echo "fetch_cassandra: fetching cassandra-all $version and its runtime dependencies from Maven Central" >&2
if ! (cd "$work" && mvn -B -q -s settings.xml dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$work/home/lib" >"$work/mvn.log" 2>&1); then
  tail -30 "$work/mvn.log" >&2
  echo "fetch_cassandra: mvn failed (log above)" >&2
  exit 1
fi
ls "$work/home/lib/cassandra-all-$version.jar" >/dev/null
echo "$version" >"$work/home/lib/.complete"
rm -rf "$home"
mv "$work/home" "$home"
echo "fetch_cassandra: $(ls "$home/lib" | wc -l) jars in $home/lib ($((SECONDS - start)) s)" >&2
echo "$home"

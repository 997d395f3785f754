#!/usr/bin/env bash
# Fetch the Apache Kafka broker jars (listed in tests/kafka/pom.xml) from
# Maven Central into a cache dir, for tests/integration/brokers.py.
#
# Usage: bash tests/kafka/fetch-jars.sh
# Env:   TETRAPIPE_KAFKA_JARS  cache dir (default $HOME/.cache/tetrapipe/kafka-jars)
#
# Guarantee: on exit 0 the cache dir holds every runtime jar of pom.xml and a
# marker file `.pom.sha256` equal to the pom's hash. A cache whose marker
# matches is reused without touching the network; any other content is
# replaced as a whole (jars are copied into a sibling temp dir, then swapped
# in), so an interrupted run never leaves a half-filled cache that looks done.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pom="$here/pom.xml"
dest="${TETRAPIPE_KAFKA_JARS:-$HOME/.cache/tetrapipe/kafka-jars}"
want="$(sha256sum "$pom" | cut -d' ' -f1)"

if [[ -f "$dest/.pom.sha256" && "$(cat "$dest/.pom.sha256")" == "$want" ]]; then
  echo "kafka jars: up to date in $dest"
  exit 0
fi

command -v mvn >/dev/null || { echo "fetch-jars.sh: mvn not found on PATH" >&2; exit 1; }
mkdir -p "$(dirname "$dest")"
tmp="$(mktemp -d "$dest.tmp.XXXXXX")"
log="$(mktemp)"
trap 'rm -rf "$tmp" "$log"' EXIT

# includeScope=runtime: compile + runtime jars, no test/provided ones.
# Output goes to a log shown only on failure: even with -q -B, Debian's
# Maven prints stray ANSI reset codes.
if ! mvn -q -B -f "$pom" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" >"$log" 2>&1; then
  cat "$log" >&2
  echo "fetch-jars.sh: mvn dependency:copy-dependencies failed" >&2
  exit 1
fi
echo "$want" > "$tmp/.pom.sha256"

rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "kafka jars: $(ls "$dest"/*.jar | wc -l) jars in $dest"

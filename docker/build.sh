#!/usr/bin/env bash
# Builds the ista image from the repository root with podman or docker, whichever is there.
#
#   docker/build.sh [--tag ista:VERSION] [--local-base] [--use-host-pip] [--check] [--save ista.tar]
#                   [--sif ista.sif] [-- BUILD_ARGS...]
#
# --local-base     no registry needed: a Debian bookworm root made with debootstrap from the mirror apt
#                  uses, imported as localhost/debian:bookworm, then a Python base on it
#                  (localhost/ista-python:bookworm), passed as PYTHON_IMAGE. Both are reused when present.
# --use-host-pip   pip in the build uses this host's package sources and CA bundle (its pip configuration,
#                  PIP_* variables, and the local paths they name), mounted read-only for the build's
#                  steps and left out of the image: what a proxy, a wheel mirror or a private CA needs.
#                  Podman only (docker build has no mounts for the build's steps).
# --check          then runs, inside the image as its non-root user: `ista --version`, `python -m ista
#                  params DARTS_V2` (the count must equal this host's), a 2-epoch CPU demo, and the
#                  commands of docker/ista.def's %test; a failure names the check and exits 1.
# --save FILE      also writes the image as a docker archive, for `apptainer build ista.sif
#                  docker-archive://FILE` on a cluster that has Apptainer.
# --sif FILE       also builds an Apptainer image from that archive through docker/ista.def (its labels,
#                  help, environment and %test), where apptainer is installed.
# A failing step is named on stderr ("build.sh: failed in: STEP"). Podman's layer cache is reused: the
# Dockerfile orders its layers so that a change to ista rebuilds megabytes, and the image the tag named
# before is removed once the new one is built, so repeated builds do not fill the disk.
# Podman on hosts like the CI machine needs two settings, given here in a containers.conf through
# CONTAINERS_CONF unless one is set: its default ulimits fail (setrlimit: Operation not permitted), and
# crun refuses the host's cgroup layout, while runc works.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
tag="ista:$version" local_base=0 host_pip=0 check=0 save="" sif=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag=$2; shift 2 ;;
    --local-base) local_base=1; shift ;;
    --use-host-pip) host_pip=1; shift ;;
    --check) check=1; shift ;;
    --save) save=$2; shift 2 ;;
    --sif) sif=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "build.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -n "$sif" ] && ! command -v apptainer >/dev/null; then
  echo "build.sh: --sif needs apptainer, which is not installed here; build with --save FILE and run" \
    "'apptainer build ista.sif docker-archive://FILE' where it is" >&2
  exit 2
fi

if command -v podman >/dev/null; then
  engine=podman
  if [ -z "${CONTAINERS_CONF:-}" ]; then
    CONTAINERS_CONF=$(mktemp --suffix=.conf)
    printf '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n[engine]\nruntime = "runc"\n' \
      > "$CONTAINERS_CONF"
    export CONTAINERS_CONF
  fi
elif command -v docker >/dev/null; then
  engine=docker
  if [ "$host_pip" = 1 ]; then  # its files reach the build's steps as podman build -v mounts
    echo "build.sh: --use-host-pip needs podman: docker build cannot mount files into the build's steps" >&2
    exit 2
  fi
else
  echo "build.sh: neither podman nor docker is installed" >&2; exit 2
fi
current="setup"
step() { current=$*; echo "== [${SECONDS} s] $*" >&2; }
set -E
trap 'echo "build.sh: failed in: $current" >&2' ERR

args=(-f docker/Dockerfile -t "$tag")
# docker finds the ignore file by name; podman is told, and writes Docker's format (OCI's has no SHELL)
[ "$engine" = podman ] && args+=(--ignorefile docker/Dockerfile.dockerignore --format docker)
if [ "$local_base" = 1 ]; then
  if ! "$engine" image inspect localhost/debian:bookworm >/dev/null 2>&1; then
    mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
    mirror=${mirror:-http://deb.debian.org/debian}
    step "debootstrap bookworm from $mirror"
    root=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
    tar -C "$root" -c . | "$engine" import - localhost/debian:bookworm >/dev/null
    rm -rf "$root"
  fi
  if ! "$engine" image inspect localhost/ista-python:bookworm >/dev/null 2>&1; then
    step "a Python base on it"
    printf 'FROM localhost/debian:bookworm\nRUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-dev ca-certificates && rm -rf /var/lib/apt/lists/* && ln -s /usr/bin/python3 /usr/local/bin/python\n' \
      | "$engine" build -t localhost/ista-python:bookworm -f - . >/dev/null
  fi
  args+=(--build-arg PYTHON_IMAGE=localhost/ista-python:bookworm)
fi

if [ "$host_pip" = 1 ]; then
  step "this host's pip configuration"
  # pip's merged view of this host (files and PIP_* variables), as one file mounted over /etc/pip.conf
  conf=$(mktemp --suffix=.conf)
  python3 - "$conf" <<'EOF'
import configparser, os, subprocess, sys
out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
merged = configparser.ConfigParser()
merged["global"] = {}
for line in out.splitlines():
    key, _, value = line.partition("=")
    merged["global"][key.split(".", 1)[1]] = value.strip().strip("'\"")
for name, value in os.environ.items():
    if name.startswith("PIP_"):
        merged["global"][name[4:].lower().replace("_", "-")] = value
with open(sys.argv[1], "w") as f:
    merged.write(f)
EOF
  args+=(-v "$conf:/etc/pip.conf:ro")
  # the CA bundle and every local path the configuration names, read-only at the same place (a local
  # index's whole folder: its pages link to files beside them)
  for path in $(grep -o '\(file://\)\?/[^ ]*' "$conf" | sed 's|^file://||; s|/simple/\?$||' | sort -u); do
    [ -e "$path" ] && args+=(-v "$path:$path:ro")
  done
fi

step "$engine build $tag"
started=$SECONDS
before=$("$engine" image inspect "$tag" --format '{{.Id}}' 2>/dev/null || true)
"$engine" build "${args[@]}" "$@" .
after=$("$engine" image inspect "$tag" --format '{{.Id}}')
size=$("$engine" image inspect "$tag" --format '{{.Size}}')
echo "built $tag in $((SECONDS - started)) s; size: $(numfmt --to=si "$size")B ($(numfmt --to=iec-i "$size")B)"
if [ -n "$before" ] && [ "$before" != "$after" ]; then
  "$engine" rmi "$before" >/dev/null 2>&1 || true  # the tag's previous image; its shared layers stay
fi

if [ -n "$save" ] || [ -n "$sif" ]; then
  step "save $tag as a docker archive"
  archive=${save:-$(mktemp --suffix=.tar)}
  save_format=()  # docker save writes a docker archive; podman is told
  [ "$engine" = podman ] && save_format=(--format docker-archive)
  "$engine" save "${save_format[@]}" -o "$archive" "$tag"
  echo "saved $archive: apptainer build ista.sif docker-archive://$archive"
fi
if [ -n "$sif" ]; then
  step "apptainer build $sif"
  # ista.def as written starts from the Docker daemon's image; here it starts from the archive instead
  definition=$(mktemp --suffix=.def)
  sed "s|^Bootstrap: .*|Bootstrap: docker-archive|; s|^From: .*|From: $archive|" docker/ista.def > "$definition"
  apptainer build --force "$sif" "$definition"
  [ -n "$save" ] || rm -f "$archive"
fi

if [ "$check" = 1 ]; then
  run() { "$engine" run --rm --user 1000:1000 "$@"; }
  fail() { echo "image check failed: $1" >&2; exit 1; }
  step "checks in $tag as its non-root user"
  run "$tag" --version || fail "ista --version"
  host=${ISTA:-$(command -v ista || echo .venv/bin/ista)}  # this host's ista (CI: the tested .venv)
  ours=$("$host" params DARTS_V2 --json) || fail "ista params on this host ($host)"
  theirs=$(run --entrypoint python "$tag" -m ista params DARTS_V2 --json) || fail "python -m ista params"
  [ "$ours" = "$theirs" ] || fail "params DARTS_V2: host $ours, image $theirs"
  run "$tag" demo --out /tmp/demo epochs=2 device=cpu >/dev/null || fail "a 2-epoch CPU demo"
  test_section=$(sed -n '/^%test/,/^%/{/^%/d;p}' docker/ista.def)
  run --entrypoint bash "$tag" -c "$test_section" >/dev/null || fail "ista.def's %test"
  echo "image checks passed: version, params DARTS_V2 = host's, 2-epoch demo, ista.def %test"
fi
echo "build.sh: done in ${SECONDS} s"

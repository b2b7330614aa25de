#!/usr/bin/env bash
# Opt-in check that the container image really builds and runs: not part of CI (it takes minutes).
#
#   sudo scripts/image-check.sh          # from anywhere in the repository; needs root
#
# What it does, on a machine without a Docker engine or a registry:
#   1. Makes a stand-in for the Dockerfile's base image (the default of ARG PYTHON_IMAGE) with debootstrap:
#      Debian bookworm with its Python 3.11, venv and CA certificates, tagged with the base image's name.
#      An image of that name already in the check's storage is used as it is (a real one pulled beforehand
#      included). The host's extra CA certificates (/usr/local/share/ca-certificates) go into the stand-in,
#      so that pip inside the build trusts the same TLS proxy the host does.
#   2. Builds the Dockerfile with podman (vfs storage, chroot isolation, host network for pip).
#   3. Runs the image as Kubernetes would with the chart's defaults (UID 10001, read-only root filesystem
#      without podman's writable /tmp, every capability dropped, no new privileges) in demo mode, waits for
#      /readyz, scrapes /metrics and prints a summary and a sample of the exposition.
#      Open files are limited to the shell's hard limit and processes to 4096: podman's defaults exceed what
#      a sandboxed machine may grant, and the run would fail with "error setting rlimit".
#   4. Stops the container with SIGTERM and checks that the exporter, as PID 1, exits 0 within 10 s.
#
# Requirements (Debian): apt-get install -y --no-install-recommends podman runc debootstrap curl
# Environment: IMAGE_CHECK_DIR (cache of rootfs and image storage, default /var/tmp/ingestion-exporter-image-check),
#              IMAGE_CHECK_PORT (loopback port for the exporter, default 19867),
#              DEBIAN_MIRROR (the Debian mirror for debootstrap; by default the one the machine's apt sources
#              use for Debian's main archive, as scripts/debian-mirror.sh finds it).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${IMAGE_CHECK_DIR:-/var/tmp/ingestion-exporter-image-check}
port=${IMAGE_CHECK_PORT:-19867}
image=localhost/ingestion-exporter:image-check
container=ingestion-exporter-image-check

say() { printf '== %s\n' "$*"; }
die() { printf 'image-check: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (podman with vfs storage and debootstrap need it)"
for tool in podman runc debootstrap curl; do
    command -v "$tool" >/dev/null || die "$tool is missing: apt-get install -y --no-install-recommends podman runc debootstrap curl"
done

mkdir -p "$work"
pm() {
    podman --root "$work/storage" --runroot "$work/run" --storage-driver vfs \
        --runtime "$(command -v runc)" --cgroup-manager cgroupfs --events-backend file "$@"
}

# The base image's reference exactly as the Dockerfile writes it: the build resolves the same name.
base_ref=$(sed -n 's/^ARG PYTHON_IMAGE=\(.*\)$/\1/p' "$repo/Dockerfile" | head -n 1)
[[ -n $base_ref ]] || die "no 'ARG PYTHON_IMAGE=' default in Dockerfile"
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/exporter/__init__.py")
revision=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)

# 1. The base image, or its debootstrap stand-in.
if pm image exists "$base_ref"; then
    say "base image $base_ref: present"
else
    rootfs=$work/rootfs
    if [[ ! -x $rootfs/usr/bin/python3 ]]; then
        mirror=$("$repo/scripts/debian-mirror.sh" bookworm) || exit 1
        say "debootstrap bookworm from $mirror into $rootfs (about a minute)"
        rm -rf "$rootfs"
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
            || die "debootstrap failed; see $work/debootstrap.log"
    fi
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
        chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
    fi
    # The official image's layout: python, python3 and pip on PATH under /usr/local/bin.
    ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python3"
    ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
    rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
    say "importing the stand-in as $base_ref"
    tar -C "$rootfs" -c . | pm import \
        --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["python3"]' \
        - "$base_ref" >/dev/null
fi

# 2. Build.
say "podman build ($repo/Dockerfile, version $version, revision $revision)"
started=$SECONDS
pm build --isolation chroot --network host --pull=never --layers=false \
    --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
    -t "$image" -f "$repo/Dockerfile" "$repo" >"$work/build.log" 2>&1 \
    || { tail -n 30 "$work/build.log" >&2; die "build failed; full log in $work/build.log"; }
say "built $image in $((SECONDS - started)) s"
pm image inspect "$image" --format 'user={{.Config.User}} entrypoint={{.Config.Entrypoint}} cmd={{.Config.Cmd}} exposed={{.Config.ExposedPorts}}'
# shellcheck disable=SC2016 # a Go template, expanded by podman
pm image inspect "$image" --format '{{range $k, $v := .Config.Labels}}{{$k}}={{$v}}{{"\n"}}{{end}}' | grep '^org.opencontainers'

# 3. Run hardened, in demo mode, on loopback.
cleanup() { pm rm --force --time 0 "$container" >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup
say "podman run --demo on 127.0.0.1:$port (uid 10001, read-only root, no capabilities)"
pm run --detach --name "$container" --network host --read-only --read-only-tmpfs=false --user 10001:10001 \
    --cap-drop ALL --security-opt no-new-privileges \
    --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096 \
    "$image" --demo "--web.listen-address=127.0.0.1:$port" --log.format=json >/dev/null
for _ in $(seq 1 60); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    [[ $(pm inspect "$container" --format '{{.State.Running}}') == true ]] \
        || { pm logs "$container" >&2; die "the container exited before it was ready"; }
    sleep 0.5
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { pm logs "$container" >&2; die "/readyz never answered 200"; }
printf 'GET /healthz -> %s\n' "$(curl -fsS "http://127.0.0.1:$port/healthz")"
# shellcheck disable=SC2016 # expanded by the container's shell
pm exec "$container" sh -c 'echo "PID 1: $(tr "\0" " " </proc/1/cmdline)"; id'

metrics=$work/metrics.txt
curl -fsS "http://127.0.0.1:$port/metrics" >"$metrics"  # first scrape logs in and discovers
sleep 2
curl -fsS "http://127.0.0.1:$port/metrics" >"$metrics"
say "GET /metrics: $(wc -c <"$metrics") bytes, $(grep -vc '^#' "$metrics") samples, $(grep -c '^# TYPE' "$metrics") families"
grep -E '^ingestion_scrape_success' "$metrics"
grep -E '^ingestion_job_state\{.*\} 1\.0$' "$metrics" | head -n 8
grep -E '^ingestion(_exporter)?_build_info' "$metrics" || true
failed=$(grep -E '^ingestion_scrape_success' "$metrics" | grep -vc ' 1\.0$' || true)
[[ $(grep -c '^ingestion_scrape_success' "$metrics") -ge 1 ]] || die "no ingestion_scrape_success in /metrics"
[[ $failed -eq 0 ]] || die "$failed target(s) report ingestion_scrape_success 0"

# 4. SIGTERM to PID 1 must stop the exporter cleanly.
say "podman stop (SIGTERM, 10 s grace)"
started=$SECONDS
pm stop --time 10 "$container" >/dev/null
code=$(pm inspect "$container" --format '{{.State.ExitCode}}')
say "exited with code $code after $((SECONDS - started)) s; last log line:"
pm logs "$container" 2>&1 | tail -n 1
[[ $code -eq 0 ]] || die "the exporter did not exit 0 on SIGTERM"
say "image check passed"

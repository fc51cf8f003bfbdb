#!/usr/bin/env bash
# CI's container step: .ci/run runs this before `make test` so that tests/deploy/test_container.py runs
# on a clean Debian machine with no container registry. As root it installs podman, runc and debootstrap
# with apt, debootstraps bookworm with python3.11 from this machine's apt mirror, imports it as
# localhost/debian-bookworm-python311:ci (once) and prints that name as its last stdout line. It touches
# podman's settings only if podman cannot run a container as it is. Exit 1 and one stderr line: impossible here.
set -euo pipefail

IMAGE=localhost/debian-bookworm-python311:ci
SUITE=bookworm
PACKAGES=(podman runc debootstrap netavark iptables)  # netavark and iptables: the network of `podman build`
# Where podman reads the settings written below: a drop-in, read after /etc/containers/containers.conf,
# so an existing file is never edited. CONTAINERS_CONF, when set, is the only file podman reads.
CONF=${CONTAINERS_CONF:-/etc/containers/containers.conf.d/50-citebot-ci.conf}
MARK="# Written by citebot's deploy/ci-container-base.sh"

die() { echo "ci-container-base: $*" >&2; exit 1; }
say() { echo "ci-container-base: $*" >&2; }

[ "$(id -u)" = 0 ] || die "needs root (apt-get, rootful podman); run as root or leave the container test skipped"
command -v apt-get >/dev/null || die "no apt-get: this script sets podman up on Debian only"

work=$(mktemp -d /var/tmp/citebot-ci-base.XXXXXX)
log=$work/log
keep=  # the log, when a message points to it
cleanup() {
    # A debootstrap cut short leaves proc and sys mounted in the new root: unmount before deleting.
    awk -v root="$work/rootfs" 'index($2, root) == 1 {print $2}' /proc/mounts | sort -r |
        while read -r mount; do umount -l "$mount" || true; done
    rm -rf --one-file-system "$work/rootfs"
    if [ -z "$keep" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# quietly WHAT COMMAND...: the command's output goes to the log; a failure ends the script with its last line.
quietly() {
    local what=$1 rc=0
    shift
    "$@" >>"$log" 2>&1 || rc=$?
    if [ "$rc" = 0 ]; then return; fi
    keep=1
    if [ "$rc" = 124 ]; then die "$what timed out (log: $log)"; fi
    die "$what failed: $(grep -v '^[[:space:]]*$' "$log" | tail -n 1) (log: $log)"
}

installed() { dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for package in "${PACKAGES[@]}"; do installed "$package" || missing+=("$package"); done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt=(apt-get -q -y -o DPkg::Lock::Timeout=120 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    quietly "apt-get update" timeout 300 "${apt[@]}" update
    quietly "apt-get install ${missing[*]}" timeout 600 "${apt[@]}" install "${missing[@]}"
fi

if ! podman image exists "$IMAGE"; then
    # The mirror apt uses here for bookworm's main component: the only one this machine is known to reach.
    mirror=$(apt-get indextargets --format '$(RELEASE) $(SITE)' 'Identifier: Packages' 'Component: main' |
             awk -v suite="$SUITE" '$1 == suite {print $2; exit}')
    [ -n "$mirror" ] || die "no apt source for Debian $SUITE main in /etc/apt/sources.list*: nothing to debootstrap from"
    eval "$(apt-config shell http_proxy Acquire::http::Proxy https_proxy Acquire::https::Proxy)"
    export http_proxy=${http_proxy:-} https_proxy=${https_proxy:-}
    timeout 60 wget -q -T 20 -t 2 -O /dev/null "$mirror/dists/$SUITE/Release" ||
        die "cannot reach the apt mirror $mirror (wget $mirror/dists/$SUITE/Release failed)"
    say "building $IMAGE: debootstrap $SUITE from $mirror"
    keyring=()
    if [ -e /usr/share/keyrings/debian-archive-keyring.gpg ]; then
        keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
    fi
    quietly debootstrap timeout 900 debootstrap --variant=minbase --include=python3.11 --components=main \
        "${keyring[@]}" "$SUITE" "$work/rootfs" "$mirror"
    rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
    quietly "podman import" timeout 300 bash -c 'tar -C "$1" --numeric-owner -cf - . |
        podman import --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --change "CMD [\"python3.11\"]" - "$2"' _ "$work/rootfs" "$IMAGE"
fi

# podman's defaults fail on machines like CI's: crun cannot use their hybrid cgroups, and the default rlimits
# (1048576) are above the hard limits that root, lacking CAP_SYS_RESOURCE, cannot raise. runc with the
# limits clamped to this machine's works; it is written down only if the defaults fail and it works.
try() { timeout 120 podman run --rm "$@" "$IMAGE" python3.11 --version >>"$log" 2>&1; }
hard() { local v; v=$(ulimit -H "$1"); if [ "$v" = unlimited ]; then echo 1048576; else echo "$v"; fi; }
if ! try; then
    nofile=$(hard -n)
    nproc=$(hard -u)
    pid_max=$(cat /proc/sys/kernel/pid_max)  # podman lowers its own nproc to this (32768 where it was written)
    [ "$nproc" -le "$pid_max" ] || nproc=$pid_max
    ulimits=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
    try --runtime runc "${ulimits[@]}" ||
        die "podman cannot run a container, not even with runc: $(grep -v '^[[:space:]]*$' "$log" | tail -n 1)"
    if [ -s "$CONF" ] && [ "$(head -n 1 "$CONF")" != "$MARK" ]; then
        die "podman needs runtime = \"runc\" and default_ulimits nofile=$nofile nproc=$nproc, and $CONF is not ours to overwrite"
    fi
    say "podman's defaults cannot run a container here; writing runc and rlimits to $CONF"
    mkdir -p "$(dirname "$CONF")"
    cat >"$CONF" <<EOF
$MARK
# podman's defaults could not run a container on this machine (crun and hybrid cgroups; rlimits
# above the hard limits). runc with these limits could.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
EOF
fi

version=$(timeout 120 podman run --rm "$IMAGE" python3.11 --version 2>>"$log") ||
    die "podman run --rm $IMAGE python3.11 --version failed: $(grep -v '^[[:space:]]*$' "$log" | tail -n 1)"
say "$IMAGE runs $version"
echo "$IMAGE"

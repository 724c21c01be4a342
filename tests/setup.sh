#!/usr/bin/env bash
# Installs what strata's test suite needs on Debian 12 and creates the
# unprivileged user that rootless tests run as. Idempotent, and fast when
# everything is already there: apt-get update runs only when a package is
# missing. As a non-root user it only reports what is missing.
set -euo pipefail

# Debian packages the tests (and `make bench`) use.
PACKAGES=(
	skopeo umoci podman oci-image-tool docker.io runc docker-registry
	uidmap debootstrap busybox-static zstd xz-utils bzip2 pigz
	fuse-overlayfs hyperfine make git ca-certificates iproute2
)
TEST_USER=strata-test
# Subordinate id range for the test user (65536 ids), far above the ranges
# useradd hands out so that it overlaps nobody.
SUB_START=1879048192
SUB_COUNT=65536

missing=()
for p in "${PACKAGES[@]}"; do
	if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]; then
		missing+=("$p")
	fi
done

if [ "$(id -u)" != 0 ]; then
	need=0
	if [ ${#missing[@]} -gt 0 ]; then
		echo "setup.sh: not root; the tests need these Debian packages: ${missing[*]}" >&2
		need=1
	fi
	if ! id "$TEST_USER" >/dev/null 2>&1; then
		echo "setup.sh: not root; rootless tests need the user $TEST_USER with /etc/subuid and /etc/subgid ranges" >&2
		need=1
	fi
	if [ $need = 1 ]; then
		echo "setup.sh: run 'sudo make test-deps' to set them up; continuing" >&2
	fi
	exit 0
fi

if [ ${#missing[@]} -gt 0 ]; then
	echo "setup.sh: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q "${missing[@]}"
fi

if ! id "$TEST_USER" >/dev/null 2>&1; then
	useradd --create-home --shell /bin/bash --user-group "$TEST_USER"
fi
for f in /etc/subuid /etc/subgid; do
	touch "$f"
	if ! grep -q "^$TEST_USER:" "$f"; then
		echo "$TEST_USER:$SUB_START:$SUB_COUNT" >>"$f"
	fi
done

# Rootless tests need unprivileged user namespaces (some kernels gate them).
if [ -e /proc/sys/kernel/unprivileged_userns_clone ] &&
	[ "$(cat /proc/sys/kernel/unprivileged_userns_clone)" != 1 ]; then
	sysctl -q -w kernel.unprivileged_userns_clone=1
fi
if [ -e /proc/sys/user/max_user_namespaces ] &&
	[ "$(cat /proc/sys/user/max_user_namespaces)" = 0 ]; then
	sysctl -q -w user.max_user_namespaces=15000
fi

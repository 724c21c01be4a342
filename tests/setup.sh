#!/usr/bin/env bash
# Installs what strata's test suite needs on Debian 12 and creates the
# unprivileged user that rootless tests run as. Idempotent, and fast when
# everything is already there: apt-get update runs only when a package is
# missing. As a non-root user it only reports what is missing.
set -euo pipefail

# Debian packages the tests (and `make bench`) use.
PACKAGES=(
	skopeo umoci podman oci-image-tool docker.io runc crun buildah docker-registry containerd
	uidmap debootstrap busybox-static zstd xz-utils bzip2 pigz
	fuse-overlayfs hyperfine make git ca-certificates iproute2
	curl gpgv debian-archive-keyring dpkg
)
TEST_USER=strata-test
# Subordinate id range for the test user (65536 ids), far above the ranges
# useradd hands out so that it overlaps nobody.
SUB_START=1879048192
SUB_COUNT=65536
# Peers installed with `go install` from the Go module proxy, at pinned
# versions, into GO_TOOLS_DIR (the tests look there, then on PATH).
GO_TOOLS_DIR=/var/cache/strata-tests/gobin
GO_TOOLS=(
	oras=oras.land/oras/cmd/oras@v1.3.6
	crane=github.com/google/go-containerregistry/cmd/crane@v0.22.1
	cosign=github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5
)
# Docker 25+ for the docker-archive tests: Debian trixie's docker.io and
# docker-cli unpacked here (not installed: bookworm's docker.io stays the
# system's engine). bookworm's containerd, runc and tini serve it.
DOCKER26_SUITE=trixie
DOCKER26_MIRROR=${STRATA_DOCKER26_MIRROR:-http://deb.debian.org/debian}
DOCKER26_DIR=/var/cache/strata-tests/docker26
DOCKER26_PACKAGES=(docker.io docker-cli)

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
	for t in "${GO_TOOLS[@]}"; do
		if [ ! -x "$GO_TOOLS_DIR/${t%%=*}" ]; then
			echo "setup.sh: not root; the tests need ${t#*=} installed in $GO_TOOLS_DIR" >&2
			need=1
		fi
	done
	if [ ! -x "$DOCKER26_DIR/usr/sbin/dockerd" ] || [ ! -x "$DOCKER26_DIR/usr/bin/docker" ]; then
		echo "setup.sh: not root; the Docker 26 tests need Debian $DOCKER26_SUITE's docker.io and docker-cli unpacked in $DOCKER26_DIR" >&2
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

# fetch_docker26 unpacks Debian trixie's docker.io and docker-cli into
# $DOCKER26_DIR without touching apt's sources or the installed packages:
# InRelease checked with gpgv against the Debian archive keyring, then
# Packages.xz and both .debs checked against the sha256 sums it signs.
# Nothing is fetched when the stamp names what is already unpacked.
fetch_docker26() {
	local arch stamp work
	# Called in an || list, where set -e does not apply: every step
	# checks its own status.
	arch=$(dpkg --print-architecture) || { echo "setup.sh: dpkg --print-architecture failed" >&2; return 1; }
	stamp="$DOCKER26_DIR/.strata-docker26"
	if [ -x "$DOCKER26_DIR/usr/sbin/dockerd" ] && [ -x "$DOCKER26_DIR/usr/bin/docker" ] &&
		[ -f "$stamp" ] && grep -qx "arch=$arch" "$stamp"; then
		return 0
	fi
	work=$(mktemp -d "$(dirname "$DOCKER26_DIR")/.docker26-XXXXXX") ||
		{ echo "setup.sh: cannot make a working directory beside $DOCKER26_DIR" >&2; return 1; }
	# shellcheck disable=SC2064 # expand now: work is local
	trap "rm -rf '$work'" EXIT
	local fail="setup.sh: Docker 26 from Debian $DOCKER26_SUITE ($DOCKER26_MIRROR)"
	echo "setup.sh: fetching docker.io and docker-cli from Debian $DOCKER26_SUITE ($arch) into $DOCKER26_DIR" >&2

	curl -fsSL --retry 3 -o "$work/InRelease" "$DOCKER26_MIRROR/dists/$DOCKER26_SUITE/InRelease" ||
		{ echo "$fail: cannot download dists/$DOCKER26_SUITE/InRelease" >&2; return 1; }
	# As apt does: good when a key of the keyring made a valid signature
	# and no signature is bad; a signature by a key this older keyring
	# lacks (gpgv then exits non-zero) is not an error.
	gpgv --keyring /usr/share/keyrings/debian-archive-keyring.gpg --status-fd 3 \
		--output "$work/Release" "$work/InRelease" 3>"$work/gpgv.status" 2>"$work/gpgv.log" || true
	if ! grep -q '^\[GNUPG:\] VALIDSIG ' "$work/gpgv.status" ||
		grep -q '^\[GNUPG:\] BADSIG ' "$work/gpgv.status" || [ ! -s "$work/Release" ]; then
		echo "$fail: the signature of InRelease does not verify against /usr/share/keyrings/debian-archive-keyring.gpg:" >&2
		cat "$work/gpgv.log" >&2
		return 1
	fi
	# Only the signed text (gpgv's output) is read from here on.
	if ! grep -qx "Codename: $DOCKER26_SUITE" "$work/Release"; then
		echo "$fail: the signed Release is not $DOCKER26_SUITE's" >&2
		return 1
	fi
	local pkgs="main/binary-$arch/Packages.xz" sum size url
	read -r sum size < <(awk -v f="$pkgs" '
		/^[^ ]/ { in256 = ($1 == "SHA256:") }
		in256 && $3 == f { print $1, $2; exit }' "$work/Release") || true
	if ! [[ ${sum:-} =~ ^[0-9a-f]{64}$ ]]; then
		echo "$fail: the signed Release has no SHA256 line for $pkgs" >&2
		return 1
	fi
	url="$DOCKER26_MIRROR/dists/$DOCKER26_SUITE/$pkgs"
	if grep -qx 'Acquire-By-Hash: yes' "$work/Release"; then
		# By hash, the file cannot change between the two downloads.
		url="$DOCKER26_MIRROR/dists/$DOCKER26_SUITE/main/binary-$arch/by-hash/SHA256/$sum"
	fi
	curl -fsSL --retry 3 -o "$work/Packages.xz" "$url" ||
		{ echo "$fail: cannot download $url" >&2; return 1; }
	if [ "$(sha256sum "$work/Packages.xz" | cut -d' ' -f1)" != "$sum" ]; then
		echo "$fail: $pkgs does not match the sha256 $sum of the signed Release" >&2
		return 1
	fi
	xz -dc "$work/Packages.xz" >"$work/Packages" ||
		{ echo "$fail: cannot decompress $pkgs" >&2; return 1; }

	mkdir "$work/tree" || return 1
	local p version filename debsum versions=()
	for p in "${DOCKER26_PACKAGES[@]}"; do
		read -r version filename debsum < <(awk -v p="$p" '
			BEGIN { RS = ""; FS = "\n" }
			{
				name = ""; v = ""; f = ""; s = ""
				for (i = 1; i <= NF; i++) {
					if ($i ~ /^Package: /) name = substr($i, 10)
					else if ($i ~ /^Version: /) v = substr($i, 10)
					else if ($i ~ /^Filename: /) f = substr($i, 11)
					else if ($i ~ /^SHA256: /) s = substr($i, 9)
				}
				if (name == p) { print v, f, s; exit }
			}' "$work/Packages") || true
		if [ -z "${version:-}" ] || ! [[ ${debsum:-} =~ ^[0-9a-f]{64}$ ]] ||
			! [[ ${filename:-} =~ ^pool/[A-Za-z0-9.+~_/-]+\.deb$ ]] || [[ $filename == *..* ]]; then
			echo "$fail: no usable entry (Version, Filename, SHA256) for $p in $pkgs" >&2
			return 1
		fi
		curl -fsSL --retry 3 -o "$work/$p.deb" "$DOCKER26_MIRROR/$filename" ||
			{ echo "$fail: cannot download $filename" >&2; return 1; }
		if [ "$(sha256sum "$work/$p.deb" | cut -d' ' -f1)" != "$debsum" ]; then
			echo "$fail: $filename does not match the sha256 $debsum of $pkgs" >&2
			return 1
		fi
		dpkg-deb -x "$work/$p.deb" "$work/tree" ||
			{ echo "$fail: cannot unpack $filename" >&2; return 1; }
		versions+=("$p=$version")
	done
	if [ ! -x "$work/tree/usr/sbin/dockerd" ] || [ ! -x "$work/tree/usr/bin/docker" ]; then
		echo "$fail: the packages hold no usr/sbin/dockerd and usr/bin/docker" >&2
		return 1
	fi
	{
		echo "suite=$DOCKER26_SUITE"
		echo "arch=$arch"
		printf '%s\n' "${versions[@]}"
	} >"$work/tree/.strata-docker26" || return 1
	if ! rm -rf "$DOCKER26_DIR" || ! mv "$work/tree" "$DOCKER26_DIR"; then
		echo "$fail: cannot move the unpacked packages to $DOCKER26_DIR" >&2
		return 1
	fi
	rm -rf "$work"
	trap - EXIT
	echo "setup.sh: Docker 26 ready: ${versions[*]}" >&2
}

# One setup at a time fetches it.
mkdir -p "$(dirname "$DOCKER26_DIR")"
exec 9>"$(dirname "$DOCKER26_DIR")/.docker26.lock"
flock 9
fetch_docker26 || exit 1
exec 9>&-

# go install of each pinned peer that is missing (cosign takes a few
# minutes to build on two cores; later runs find it in place).
mkdir -p "$GO_TOOLS_DIR"
for t in "${GO_TOOLS[@]}"; do
	name=${t%%=*} mod=${t#*=}
	stamp="$GO_TOOLS_DIR/.$name.version"
	if [ -x "$GO_TOOLS_DIR/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$mod" ]; then
		continue
	fi
	echo "setup.sh: go install $mod" >&2
	GOBIN="$GO_TOOLS_DIR" go install "$mod" || { echo "setup.sh: go install $mod failed" >&2; exit 1; }
	echo "$mod" >"$stamp"
done

#!/usr/bin/env bash
# Makes the local Python base image that the Dockerfile's PYTHON_IMAGE build argument points at,
# for machines that cannot pull from Docker Hub: a minimal Debian bookworm root filesystem made
# with debootstrap from the Debian mirror apt already uses, with Debian's python3 (3.11) and venv,
# imported into podman. Prints the image name. Cached: skipped when the image already exists (its
# tag carries a hash of this script, so changing the recipe makes a new one).
#
#   tools/containers/base_image.sh            # -> localhost/rrp-python:3.11-bookworm-<hash>
set -euo pipefail

. "$(dirname "$0")/lib.sh"

SUITE=bookworm
PACKAGES=python3,python3-venv,python-is-python3,ca-certificates
recipe_hash="$(sha256sum "$0" | cut -c1-12)"
IMAGE="localhost/rrp-python:3.11-$SUITE-$recipe_hash"

if podman image exists "$IMAGE"; then
    echo "$IMAGE"
    exit 0
fi

# The Debian mirror apt uses on this machine (deb822 .sources or one-line .list files).
mirror="$(
    { grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
      grep -h '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}'
    } | grep -m1 '/debian/\?$' || true
)"
mirror="${mirror:-http://deb.debian.org/debian}"

rootfs="$(mktemp -d /var/tmp/rrp-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
echo "base_image.sh: debootstrap $SUITE from $mirror" >&2
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -20 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"

# Apt inside image builds uses the same mirror, with updates and security like the host.
cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror $SUITE main
deb $mirror $SUITE-updates main
deb ${mirror%/debian*}/debian-security $SUITE-security main
SOURCES
# The machine's CA bundle, so pip and apt inside the builds trust what the host trusts.
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
# Like the official slim images: no apt lists, caches or docs in the base.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*

tar -C "$rootfs" --numeric-owner -c . | podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    - "$IMAGE" >/dev/null
echo "$IMAGE"

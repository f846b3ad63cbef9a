#!/usr/bin/env bash
# Build a Python base image from Debian packages, for machines that reach no image
# registry: debootstrap a minimal Debian with python3, then `docker import` it.
# Idempotent: an existing image of that tag is kept.
#
#   deploy/base-image.sh [TAG]        (default wordpipe/python-base:3.11-bookworm)
#
# Real deployments build FROM python:3.11-slim instead (deploy/build-image.sh).
set -euo pipefail

tag=${1:-wordpipe/python-base:3.11-bookworm}
suite=${DEBIAN_SUITE:-bookworm}  # bookworm's python3 is 3.11, as the wheels built on the host
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$tag" >/dev/null 2>&1; then
    exit 0
fi
command -v debootstrap >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}

root=$(mktemp -d /tmp/wordpipe-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "base-image: debootstrap $suite into $root" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$root" "$mirror" >/dev/null
# What an image never needs: package caches, docs, locales other than C.UTF-8.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
tar --numeric-owner -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "debootstrap $suite + python3 (wordpipe deploy/base-image.sh)" \
    - "$tag" >/dev/null
echo "base-image: built $tag" >&2

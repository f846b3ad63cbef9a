#!/usr/bin/env bash
# Build the wordpipe image from deploy/Dockerfile.
#
#   deploy/build-image.sh [--local-base] [--tag TAG] [--base-image IMAGE]
#
#   (default)     FROM python:3.11-slim, pulled from a registry
#   --local-base  FROM a Debian base built here by deploy/base-image.sh: no registry needed
#
# The project and its dependencies become wheels here, on the host; the image installs
# only those, so the build itself needs no network (it runs with --network none).
# An image of TAG built from the same source is kept (label wordpipe.source).
set -euo pipefail
cd "$(dirname "$0")/.."

tag=wordpipe:latest
base=python:3.11-slim
python=${PYTHON:-python3}
while (($#)); do
    case $1 in
        --local-base) base=wordpipe/python-base:3.11-bookworm ;;
        --base-image) base=$2; shift ;;
        --tag) tag=$2; shift ;;
        *) echo "build-image: unknown argument $1 (see the head of $0)" >&2; exit 2 ;;
    esac
    shift
done

inputs=(pyproject.toml README.md deploy/Dockerfile pipeline schemas)
source_hash=$( { echo "$base"; find "${inputs[@]}" -type f ! -path '*/__pycache__/*' | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -c1-16)
if [[ $(docker image inspect --format '{{ index .Config.Labels "wordpipe.source" }}' "$tag" 2>/dev/null) == "$source_hash" ]]; then
    exit 0
fi

if [[ $base == wordpipe/python-base:* ]]; then
    deploy/base-image.sh "$base"
fi

context=build/image
rm -rf "$context" && mkdir -p "$context/wheels"
echo "build-image: wheels for wordpipe and its dependencies" >&2
"$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$context/wheels" . 2> >(grep -v "is ignored: it is neither" >&2)
cp deploy/Dockerfile "$context/Dockerfile"
echo "build-image: $tag FROM $base" >&2
# The classic builder: BuildKit needs the buildx plugin, which this engine may lack.
DOCKER_BUILDKIT=0 docker build --quiet --network none --build-arg "BASE_IMAGE=$base" \
    --label "wordpipe.source=$source_hash" --tag "$tag" "$context" >/dev/null
docker image prune --force --filter "label=wordpipe.source" >/dev/null  # superseded builds
docker image prune --force --filter "label=wordpipe.stage=build" >/dev/null  # the wheel-installing stage
echo "build-image: built $tag" >&2

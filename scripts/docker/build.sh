#!/usr/bin/env bash
# Deprecated entry point, kept so old habits and scripts keep working.
# Everything it did is now `uv run invoke docker.build` (see `uv run invoke --help docker.build`):
#   -i IMAGE  -> --image IMAGE       -t TAG    -> --tag TAG (repeatable)
#   -n NAME   -> --name NAME         -p PLAT   -> --platform PLAT
#   --push, --no-cache, --verbose, --test and --build-arg KEY=VALUE pass straight through.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
echo "scripts/docker/build.sh is deprecated: use 'uv run invoke docker.build'" >&2
exec uv run --locked invoke docker.build "$@"

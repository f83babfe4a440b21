#!/usr/bin/env bash
# The load test of the README: installs wrk when missing, then runs
# cmd/loadtest from the repository root. Arguments go to it
# (go run ./cmd/loadtest -h lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto # go.mod's toolchain line, as ./test.sh
if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
go build -o /tmp/simgate-loadtest ./cmd/loadtest
exec /tmp/simgate-loadtest "$@"

#!/usr/bin/env bash
# The project's one test command (README): formatting, vet, the race-enabled
# test suite, and a few seconds of each fuzz target.
set -euo pipefail
cd "$(dirname "$0")"
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -Wno-deprecated-declarations}"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted"; exit 1; fi
go vet ./...
go test -race -count=1 -timeout 8m ./...
# Each fuzz target for a few seconds (FUZZTIME=5m for a real session).
for target in "FuzzDecode ./internal/bus" "FuzzParse ./internal/config"; do
  set -- $target
  go test -run '^$' -fuzz "^$1\$" -fuzztime "${FUZZTIME:-5s}" "$2"
done

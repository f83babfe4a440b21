#!/usr/bin/env bash
# The project's one test command (README): formatting, vet, module tidiness,
# known vulnerabilities, the race-enabled test suite, and a few seconds of
# each fuzz target. Each step prints one line; a failed step's output follows
# it; the last line counts the steps ("N passed, N failed").
set -uo pipefail
cd "$(dirname "$0")"

# go.mod's toolchain line (go1.26.10) is used even where GOTOOLCHAIN=local
# is the machine's default: the go command fetches it through the module proxy.
export GOTOOLCHAIN=auto

# govulncheck reads an offline database built from the golang.org/x/vulndb
# module at a pinned version: nothing but the module proxy is reached, and a
# run is repeatable. Move both pins forward together, on purpose.
GOVULNCHECK_VERSION=v1.9.0
# The nats CLI that TestOperatingCommands runs the README's "Operating"
# commands with; without it that test skips, saying so.
NATSCLI_VERSION=v0.5.1
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
cache="${SIMGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/simgate}"
logs=$(mktemp -d "${TMPDIR:-/tmp}/simgate-test-XXXXXX")

passed=0
failed=()

# step NAME COMMAND...: runs COMMAND with its output in a log; one line says
# how it went; a failure shows the log (its last 400 lines).
step() {
  local name=$1 begin=$SECONDS
  shift
  local log="$logs/${name// /-}.log"
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    printf 'ok    %-22s %4ds\n' "$name" $((SECONDS - begin))
  else
    failed+=("$name")
    printf 'FAIL  %-22s %4ds\n' "$name" $((SECONDS - begin))
    tail -n 400 "$log" | sed 's/^/      /'
  fi
}

gofmt_clean() {
  local out
  out=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
  [ -z "$out" ] || { echo "gofmt would change:"; echo "$out"; return 1; }
}

vulncheck() {
  local bin="$cache/govulncheck-$GOVULNCHECK_VERSION" db="$cache/vulndb-$VULNDB_VERSION"
  if [ ! -x "$bin/govulncheck" ]; then
    GOBIN="$bin" go install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION" || return
  fi
  if [ ! -f "$db/index/db.json" ]; then
    local src
    src=$(go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -n "$src" ] || { echo "golang.org/x/vulndb@$VULNDB_VERSION: not downloaded"; return 1; }
    rm -rf "$db.tmp"
    (cd "$src" && go run ./cmd/indexdb -vulns data/osv -out "$db.tmp") && mv "$db.tmp" "$db" || return
  fi
  "$bin/govulncheck" -db "file://$db" ./...
}

# natscli installs the pinned nats CLI into the cache once; a failure only
# makes TestOperatingCommands skip (it says why).
natscli() {
  local bin="$cache/natscli-$NATSCLI_VERSION"
  if [ ! -x "$bin/nats" ]; then
    GOBIN="$bin" go install "github.com/nats-io/natscli/nats@$NATSCLI_VERSION" >"$logs/natscli.log" 2>&1 \
      || { echo "warning: the nats CLI could not be installed (log: $logs/natscli.log); TestOperatingCommands will skip"; return 0; }
  fi
  export SIMGATE_NATS_CLI="$bin/nats"
}

echo "simgate tests with $(go version | cut -d' ' -f3), logs in $logs"
natscli
step gofmt gofmt_clean
step vet go vet ./...
step tidy go mod tidy -diff
step vulncheck vulncheck
# The e2e package takes about 8.5 minutes here; -timeout is a guard for a
# hung test on a machine busier than this one, not the suite's budget.
step tests go test -race -count=1 -timeout 15m ./...
# Each fuzz target for 50,000 inputs, a few seconds (FUZZTIME=5m for a real
# session): a time limit failed with "context deadline exceeded" when it
# ran out while a new input was being minimised, on a busy machine.
for target in "FuzzDecode ./internal/schema" "FuzzParse ./internal/config"; do
  set -- $target
  step "fuzz $1" go test -run '^$' -fuzz "^$1\$" -fuzztime "${FUZZTIME:-50000x}" "$2"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "failed steps: ${failed[*]} (logs in $logs)"
else
  rm -rf "$logs"
fi
echo "steps: $passed passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]

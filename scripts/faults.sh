#!/usr/bin/env bash
# The cluster's fault suite (README, High availability): runs each fault
# scenario RUNS times (default 10) with the real coordinators, agents and
# test SMTP server, and prints a table: runs passed and failed, and the
# figures each run logs (election time, longest heartbeat gap, refusals).
# A failed run's output is kept in the log folder named at the end.
#   scripts/faults.sh            # every scenario, 10 times
#   RUNS=3 scripts/faults.sh TestHungMemberCostsNoServer
set -uo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto
runs=${RUNS:-10}
scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
  scenarios=(
    TestFailureDuringElectionIsMailed   # kill -9 of the leader and, within 1 s, an agent
    TestHungMemberCostsNoServer         # SIGSTOP of the member holding the agents, 20 s
    TestStalledCoordinatorInventsNoFailure
    TestNoSessionToADrainedServerAfterRestart
    TestQuorumLossIsLoud
    TestClusterSurvivesAMember          # kill -9 of the leader under load, mails pending, SMTP down
    TestRollingUpgradeRefusesNoVisitor  # the README's rolling upgrade, visitors sent to ready members
  )
fi
logs=$(mktemp -d "${TMPDIR:-/tmp}/simgate-faults-XXXXXX")
go test -c -race -o "$logs/e2e.test" ./e2e || exit 1
printf '%-42s %6s %6s  %s\n' scenario passed failed "figures (last run)"
total_failed=0
for s in "${scenarios[@]}"; do
  pass=0 fail=0 figures=""
  for i in $(seq 1 "$runs"); do
    out="$logs/$s-$i.log"
    if (cd e2e && "$logs/e2e.test" -test.run "^$s\$" -test.count 1 -test.v >"$out" 2>&1); then
      ok=1; pass=$((pass + 1))
    else
      ok=0; fail=$((fail + 1))
    fi
    figures=$(grep -hoE '(a new leader in [0-9.]+m?s|longest heartbeat gap[^:]*: [0-9.]+m?s|[0-9]+ /session on the survivors during the failover, [0-9]+ refused|[0-9]+ visitors during the rolling upgrade, [0-9]+ refused)' "$out" 2>/dev/null | tr '\n' ';' || true)
    [ "$ok" -eq 0 ] || rm -f "$out"
  done
  total_failed=$((total_failed + fail))
  printf '%-42s %6d %6d  %s\n' "$s" "$pass" "$fail" "$figures"
done
echo "failed runs: $total_failed (logs of failed runs in $logs)"
[ "$total_failed" -eq 0 ]

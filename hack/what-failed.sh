#!/usr/bin/env bash
# what-failed.sh LOG: from the output of a go test run, the tests that
# failed, with the first lines of their messages, and, after a -timeout,
# the tests that were still running. A timeout prints every goroutine's
# stack; printed last, this is what a truncated CI log still shows.
set -euo pipefail
[ $# -eq 1 ] || {
	echo "usage: what-failed.sh GO-TEST-OUTPUT" >&2
	exit 2
}
echo "== what failed (go test's whole output: $1)"
grep -E -A3 '^(--- FAIL|FAIL|panic: |running tests:)|^\s+--- FAIL' "$1" | grep -v '^goroutine ' || true

#!/usr/bin/env bash
# what-failed.sh LOG: from the output of a go test run, the tests that
# failed with their last lines of output, the packages' results, and, after
# a -timeout, the tests that were still running. A timeout prints every
# goroutine's stack; printed last, this is what a truncated CI log shows.
set -euo pipefail
[ $# -eq 1 ] || {
	echo "usage: what-failed.sh GO-TEST-OUTPUT" >&2
	exit 2
}
echo "== what failed (go test's whole output: $1)"
# Under -v a test's messages come before its --- FAIL line, without -v
# after it: a few lines of each.
grep -E -B4 -A3 '^\s*--- FAIL' "$1" || true
# A timeout: the panic's line and the tests it names, up to a blank line.
awk '/^panic: test timed out/, /^$/' "$1"
grep -E '^(FAIL|ok)\s' "$1" || true

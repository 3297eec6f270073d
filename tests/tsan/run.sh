#!/bin/sh
# Runs a ThreadSanitizer test binary. A TSan runtime that cannot start on
# this kernel's address layout ("unexpected memory mapping", before main)
# is tried again without address randomization, then skipped (exit 77);
# anything else, a race included, is the test's own result.
out=$("$@" 2>&1)
rc=$?
case $out in
*"unexpected memory mapping"*) ;;
*) printf '%s\n' "$out"; exit $rc ;;
esac
out=$(setarch "$(uname -m)" -R "$@" 2>&1)
rc=$?
case $out in
*"unexpected memory mapping"* | *"setarch:"*)
    printf '%s\n' "$out"
    echo "ThreadSanitizer cannot start on this machine: skipped"
    exit 77 ;;
esac
printf '%s\n' "$out"
exit $rc

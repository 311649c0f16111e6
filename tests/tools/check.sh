# Sourced by the tool checks in this directory: a scratch directory removed on
# exit ($tmp), fail MESSAGE to count a failed check, and finish NAME to print
# the summary and exit non-zero if any check failed.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bad=0
fail() {
  echo "FAIL: $*"
  bad=$((bad + 1))
}
finish() {
  [ "$bad" = 0 ] && echo "$1: all checks passed"
  [ "$bad" = 0 ]
  exit
}

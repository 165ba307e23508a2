#!/usr/bin/env bash
# The house lint (STYLE R16): clang-format over our C, and the grep rules.
# usage: hack/lint.sh [--fix]
set -uo pipefail
cd "$(dirname "$0")/.."

fail=0
mapfile -t files < <(git ls-files -co --exclude-standard -- '*.c' '*.h' | grep -v '^build/' || true)

if [ "${1:-}" = --fix ]; then
  clang-format -i "${files[@]}"
fi
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "lint: $f is not clang-formatted (hack/lint.sh --fix)"
    fail=1
  fi
done

rule() { # rule MESSAGE REGEX PATHS...
  local msg=$1 re=$2; shift 2
  local hits
  hits=$(grep -rnE --include='*.c' --include='*.h' "$re" "$@" 2>/dev/null | grep -v 'lint: allow')
  if [ -n "$hits" ]; then
    printf 'lint: %s\n%s\n' "$msg" "$hits"
    fail=1
  fi
}
src=(common cri stream podmgr imagemgr netmgr backends)
rule "no sprintf (use snprintf)" '\bv?sprintf\(' "${src[@]}" test
rule "no strcpy/strcat (use snprintf or memcpy with a checked length)" '\b(strcpy|strcat)\(' "${src[@]}" test
rule "no while (1) (write for (;;))" 'while \(1\)' "${src[@]}" test
rule "no // comments in C (STYLE R17)" '^\s*//' "${src[@]}"
rule "no protobuf or grpc outside cri/ (STYLE R9)" 'pb-c\.h|<grpc/|protobuf-c' stream podmgr imagemgr netmgr backends common
rule "stream/ reaches pods only through its stream_ops (stream/stream.h)" \
  '#include "(cri-internal|events|podmgr|imagemgr|netmgr|be|agent[a-z-]*)\.h"' stream
mapfile -t exits < <(grep -rlnE '(^|[^_a-z])exit\(' "${src[@]}" --include='*.c' | grep -v '/main\.c$' || true)
for f in "${exits[@]}"; do
  [ -n "$f" ] && { echo "lint: exit() below main() in $f"; fail=1; }
done

[ $fail -eq 0 ] && echo "lint: ok (${#files[@]} files)"
exit $fail

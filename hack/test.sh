#!/usr/bin/env bash
# Builds runt and runs every test: lint, unit tests (cmocka, under ctest) in the dev and
# asan presets, the libFuzzer targets for a bounded time, the e2e suite (pytest over a real
# runtd) and one e2e pass under valgrind. Installs what is missing first.
# The last line is the total: "runt: N passed, N failed, N skipped".
# usage: sudo hack/test.sh        env: FUZZ_SECONDS (default 30), SKIP_VALGRIND=1, SKIP_FUZZ=1
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD
logs=$top/build/test-logs
mkdir -p "$logs"

hack/deps.sh test || { echo "runt: 0 passed, 1 failed"; exit 1; }

passed=0 failed=0 skipped=0
failures=()
count() { # count NAME PASSED FAILED SKIPPED
  passed=$((passed + $2)); failed=$((failed + $3)); skipped=$((skipped + $4))
  [ "$3" -gt 0 ] && failures+=("$1")
  return 0
}
step() { printf '\n==== %s\n' "$*"; }

step "lint"
if hack/lint.sh; then count lint 1 0 0; else count lint 0 1 0; fi

for preset in dev asan; do
  step "build ($preset)"
  if ! { cmake --preset "$preset" >"$logs/cmake-$preset.log" 2>&1 &&
         cmake --build --preset "$preset" -j"$(nproc)" >"$logs/build-$preset.log" 2>&1; }; then
    tail -40 "$logs/build-$preset.log" "$logs/cmake-$preset.log" 2>/dev/null
    count "build-$preset" 0 1 0
    continue
  fi
  step "unit tests ($preset)"
  ctest --preset "$preset" -j2 2>&1 | tee "$logs/ctest-$preset.log" | grep -vE '^\s+Start ' 
  t=$(grep -Eo 'tests passed, [0-9]+ tests failed out of [0-9]+' "$logs/ctest-$preset.log" | tail -1)
  if [ -z "$t" ]; then count "ctest-$preset" 0 1 0; continue; fi
  f=$(awk '{print $3}' <<<"$t"); total=$(awk '{print $NF}' <<<"$t")
  s=$(grep -c '(Skipped)' "$logs/ctest-$preset.log" || true)
  count "ctest-$preset" $((total - f - s)) "$f" "$s"
done

# The build hack/run.sh makes (-O3 finds warnings -O2 does not).
step "build (release)"
if cmake --preset release >"$logs/cmake-release.log" 2>&1 &&
   cmake --build --preset release -j"$(nproc)" --target runtd >"$logs/build-release.log" 2>&1; then
  count build-release 1 0 0
else
  tail -40 "$logs/build-release.log"; count build-release 0 1 0
fi

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  # Thirteen targets: 15 s each keeps the step near three minutes (FUZZ_SECONDS overrides).
  fuzz_targets="fuzz_cri_request fuzz_config fuzz_image_ref fuzz_stream_http fuzz_spdy fuzz_websocket
                fuzz_seccomp fuzz_cni_result fuzz_lxc_files fuzz_image_manifest fuzz_agent_host
                fuzz_agent_guest fuzz_agent_layer"
  step "fuzz (libFuzzer, ${FUZZ_SECONDS:-15} s per target)"
  if cmake --preset fuzz >"$logs/cmake-fuzz.log" 2>&1 &&
     cmake --build --preset fuzz -j"$(nproc)" --target $fuzz_targets \
       >"$logs/build-fuzz.log" 2>&1; then
    for t in $fuzz_targets; do
      work=$(mktemp -d) dict=
      [ -f "test/fuzz/$t.dict" ] && dict=-dict=$top/test/fuzz/$t.dict
      cp -r "test/fuzz/corpus/$t/." "$work/" 2>/dev/null || true
      if (cd "$work" && "$top/build/fuzz/test/fuzz/$t" $dict -max_total_time="${FUZZ_SECONDS:-15}" \
            -rss_limit_mb=2048 -print_final_stats=1 . >"$logs/$t.log" 2>&1); then
        grep -E 'stat::number_of_executed_units|stat::peak_rss' "$logs/$t.log" | sed "s/^/$t: /"
        count "$t" 1 0 0
      else
        tail -30 "$logs/$t.log"; count "$t" 0 1 0
        mkdir -p "$logs/crash-$t"; cp "$work"/crash-* "$logs/crash-$t/" 2>/dev/null || true
      fi
      rm -rf "$work"
    done
  else
    tail -30 "$logs/build-fuzz.log"; count fuzz-build 0 1 0
  fi
fi

py=/usr/bin/python3
pytest_count() { # pytest_count NAME LOG
  local line p f e s
  line=$(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|error)' "$2" | tail -1)
  p=$(grep -Eo '[0-9]+ passed' <<<"$line" | awk '{print $1}'); f=$(grep -Eo '[0-9]+ failed' <<<"$line" | awk '{print $1}')
  e=$(grep -Eo '[0-9]+ errors?' <<<"$line" | awk '{print $1}'); s=$(grep -Eo '[0-9]+ skipped' <<<"$line" | awk '{print $1}')
  if [ -z "$line" ]; then count "$1" 0 1 0; return; fi
  count "$1" "${p:-0}" $(( ${f:-0} + ${e:-0} )) "${s:-0}"
}

step "e2e (pytest over runtd, dev build)"
RUNTD=$top/build/dev/cri/runtd $py -m pytest test/e2e -q -p no:cacheprovider 2>&1 | tee "$logs/e2e.log" | tail -25
pytest_count e2e "$logs/e2e.log"

if [ "${SKIP_VALGRIND:-0}" != 1 ]; then
  step "e2e under valgrind (subset)"
  RUNT_VALGRIND=1 RUNTD=$top/build/dev/cri/runtd $py -m pytest test/e2e -q -p no:cacheprovider \
    -m valgrind 2>&1 | tee "$logs/e2e-valgrind.log" | tail -15
  pytest_count e2e-valgrind "$logs/e2e-valgrind.log"
fi

step "summary"
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]} (logs in build/test-logs)"
echo "runt: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]

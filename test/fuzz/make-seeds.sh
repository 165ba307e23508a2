#!/bin/sh
# Regenerates corpus/fuzz_cri_request/ from the golden request encodings in
# ../shared/cri-golden: each seed is one method-index byte (the method's line in RPCS.txt,
# counted from 0, which is also its index in cri/dispatch.c) followed by <Request>.bin.
# The YAML seeds in corpus/fuzz_config/ are written by hand and are not touched here.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
golden=${1:-$here/../../../shared/cri-golden}
out=$here/corpus/fuzz_cri_request
methods="Version RunPodSandbox CreateContainer ListContainers ContainerStatus
UpdateContainerResources ExecSync Exec Attach PortForward ListPodSandboxStats Status
CheckpointContainer GetContainerEvents UpdatePodSandboxResources ListImages ImageStatus
PullImage RemoveImage"

mkdir -p "$out"
for m in $methods; do
        idx=$(awk -v m="$m" '{ split($1, a, "/"); if (a[2] == m) { print NR - 1; exit } }' \
                "$golden/RPCS.txt")
        [ -n "$idx" ] || { echo "$m: not in RPCS.txt" >&2; exit 1; }
        req=${m}Request
        [ "$m" = GetContainerEvents ] && req=GetEventsRequest
        name=$(printf '%02d-%s' "$idx" "$m")
        { printf "\\$(printf '%03o' "$idx")"; cat "$golden/$req.bin"; } >"$out/$name"
done
# A method byte past the table wraps around (modulo the method count): 41 + 1 is RunPodSandbox.
{ printf '\052'; cat "$golden/RunPodSandboxRequest.bin"; } >"$out/42-wraps-to-RunPodSandbox"

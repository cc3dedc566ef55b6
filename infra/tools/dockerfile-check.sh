#!/usr/bin/env bash
# dockerfile-check.sh [--publish] DOCKERFILE CONTEXT
# Checks a Dockerfile's structure without a Docker daemon (none is available on the CI machine, and base images cannot
# be pulled there): known instructions only; every FROM pinned to a tag other than latest; COPY sources present in the
# build context and COPY --from naming an earlier stage; the final stage runs as a non-root USER with an exec-form
# ENTRYPOINT. With --publish, the build stage's `RUN dotnet publish ...` runs here exactly as written (WORKDIR mapped to
# the context, its -o directory to a temporary one) and the published entry point must run (--help).
# Prints one line per problem; exit 0 only when there is none.
set -euo pipefail
publish=0
if [ "${1:-}" = "--publish" ]; then publish=1; shift; fi
file="$1"; context="$(cd "$2" && pwd)"
problems=0
problem() { echo "dockerfile-check: $file: $*"; problems=$((problems + 1)); }

# Instructions with continuation lines joined, comments and blank lines dropped.
mapfile -t lines < <(sed -e 's/\r$//' "$file" | awk '
    /^[[:space:]]*#/ && cont == "" { next }
    { line = cont $0; if (line ~ /\\$/) { sub(/\\$/, "", line); cont = line " "; next } cont = ""; if (line ~ /[^[:space:]]/) print line }')

known=" FROM RUN CMD LABEL EXPOSE ENV ADD COPY ENTRYPOINT VOLUME USER WORKDIR ARG ONBUILD STOPSIGNAL HEALTHCHECK SHELL "
stages=()
workdir=/
final_user=""; final_entry=""; stage_index=-1
publish_line=""; publish_dir=""
for line in "${lines[@]}"; do
    read -r instr rest <<<"$line"
    instr="${instr^^}"
    [[ "$known" == *" $instr "* ]] || { problem "unknown instruction '$instr'"; continue; }
    case "$instr" in
        FROM)
            stage_index=$((stage_index + 1)); final_user=""; final_entry=""; workdir=/
            read -r image as name <<<"$rest"
            [[ "$image" == *:* ]] || problem "FROM $image is not pinned to a tag"
            [[ "$image" == *:latest ]] && problem "FROM $image uses the latest tag"
            if [ "${as^^}" = "AS" ] && [ -n "${name:-}" ]; then stages+=("$name"); else stages+=("#$stage_index"); fi ;;
        WORKDIR) workdir="$rest" ;;
        USER) final_user="$rest" ;;
        ENTRYPOINT) final_entry="$rest" ;;
        COPY|ADD)
            read -r -a words <<<"$rest"
            from=""; args=()
            for w in "${words[@]}"; do
                case "$w" in --from=*) from="${w#--from=}" ;; --*) ;; *) args+=("$w") ;; esac
            done
            if [ "${#args[@]}" -lt 2 ]; then problem "$instr needs a source and a destination: $rest"; continue; fi
            if [ -n "$from" ]; then
                found=0; for s in "${stages[@]:0:$stage_index}"; do [ "$s" = "$from" ] && found=1; done
                [ "$found" -eq 1 ] || problem "$instr --from=$from names no earlier stage"
            else
                for src in "${args[@]:0:${#args[@]}-1}"; do
                    [ -e "$context/$src" ] || problem "$instr source $src does not exist in the build context $context"
                done
            fi ;;
        RUN)
            if [[ "$rest" == "dotnet publish "* ]]; then publish_line="$rest"; publish_dir="$workdir"; fi ;;
    esac
done
[ "$stage_index" -ge 0 ] || problem "no FROM"
case "$final_user" in
    "") problem "the final stage sets no USER (it would run as root)" ;;
    root|0|0:*|root:*) problem "the final stage runs as $final_user" ;;
esac
[[ "$final_entry" == \[* ]] || problem "the final stage's ENTRYPOINT is not in exec form: '${final_entry}'"

if [ "$publish" -eq 1 ] && [ "$problems" -eq 0 ]; then
    if [ -z "$publish_line" ]; then
        problem "no RUN dotnet publish step to try"
    else
        out="$(mktemp -d)"
        trap 'rm -rf "$out"' EXIT
        read -r -a cmd <<<"$publish_line"
        target=""
        for i in "${!cmd[@]}"; do
            if [ "${cmd[$i]}" = "-o" ]; then target="${cmd[$((i + 1))]}"; cmd[$((i + 1))]="$out/publish"; fi
        done
        [ -n "$target" ] || problem "the publish step has no -o directory"
        # WORKDIR of the build stage is the context's root: the same relative paths.
        if ! (cd "$context" && DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 "${cmd[@]}" --nologo -v q >"$out/log" 2>&1); then
            tail -20 "$out/log"
            problem "the publish step failed: $publish_line"
        elif ! "$out/publish/cloudmem" --help >/dev/null 2>&1; then
            problem "the published entry point $target/cloudmem does not run"
        fi
    fi
fi
[ "$problems" -eq 0 ]

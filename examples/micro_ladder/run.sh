#!/usr/bin/env bash
# Reproduce bayesladder/data/micro_ladder.nc: train the micro ladder (models/micro.toml: 5 sizes x 1/2/5/10xC
# with warmup-stable-decay branches, plus a 468k-parameter target at 2xC) on the KJV corpus and evaluate every
# checkpoint on 4 tasks x 640 questions. About 2,600 s of CPU time on one thread (BAYESLADDER_THREADS, default
# 1; see README.md). Needs: pip install -e '.[train]'
#
#   bash examples/micro_ladder/run.sh [OUT_DIR]      (default: micro_ladder_out; pass --copy as $2 to
#                                                     overwrite the packaged bayesladder/data/micro_ladder.nc)
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-micro_ladder_out}"
start=$(date +%s)
bayesladder train --spec models/micro.toml --all --out "$out" --threads "${BAYESLADDER_THREADS:-1}"
echo "micro ladder trained and evaluated in $(( $(date +%s) - start )) s; dataset: $out/ladder.nc"
if [[ "${2:-}" == "--copy" ]]; then
    cp "$out/ladder.nc" bayesladder/data/micro_ladder.nc
    echo "copied to bayesladder/data/micro_ladder.nc"
fi

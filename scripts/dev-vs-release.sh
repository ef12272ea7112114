#!/usr/bin/env bash
# A training step of the default model (tiny-shakespeare, batch 32 on flex, batch 8 on wgpu)
# in the three builds a user can end up with: `cargo run --release` (release), `cargo run`
# (the dev profile as Cargo.toml sets it: Burn and the kernels optimized), and the dev profile
# without those settings (everything unoptimized, as before them), built in target directories
# of their own. Prints each build's median step time; wgpu runs where a Vulkan device is
# (lavapipe here). COLD=1 first removes those target directories and times the cold builds.
#
#   [COLD=1] scripts/dev-vs-release.sh
set -euo pipefail
cd "$(dirname "$0")/.."
text=${TEXT:-../shared/datasets/tinyshakespeare.txt}
unoptimized=(--config 'profile.dev.package."*".opt-level=0'
    --config 'profile.dev.package.char-lstm-kernels.opt-level=0'
    --config 'profile.dev.package.char-lstm-kernels.overflow-checks=true'
    --config 'profile.dev.package.char-lstm.opt-level=0')
build() {
    local name=$1; shift
    [ -z "${COLD:-}" ] || rm -rf "target/$name"
    local start=$SECONDS
    cargo "$@" build -q -p trainer --target-dir "target/$name" >&2
    echo "$name: built in $((SECONDS - start)) s" >&2
}
build release-build --release
build dev-build
build dev-unoptimized "${unoptimized[@]}"
for name in release-build/release dev-build/debug dev-unoptimized/debug; do
    for backend in flex wgpu; do
        batch=$([ "$backend" = flex ] && echo 32 || echo 8)
        steps=$([ "$name" = dev-unoptimized/debug ] && echo 1 || echo 3)
        out=$("target/$name/trainer" bench --backend "$backend" --config configs/default.toml \
            --set "data.path=\"$text\"" --set "training.batch_size=$batch" --steps "$steps" \
            --warmup 1 --sample-length 10 2>/dev/null) || { echo "$name $backend: no run"; continue; }
        echo "$name $backend (batch $batch): $(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["train_step_ms_median"], "ms per step")')"
    done
done

#!/usr/bin/env bash
# The page's second build: the same crate with WebAssembly threads (shared memory, atomics) and
# the `threads` feature, whose CPU path splits its work across a rayon pool of Web Workers. The
# page's worker loads it where the page is cross-origin isolated (SharedArrayBuffer exists), and
# Trunk's plain build everywhere else. Trunk runs this as a hook (Trunk.toml) with
# TRUNK_STAGING_DIR and TRUNK_PROFILE set; by hand: `TRUNK_STAGING_DIR=dist bash scripts/build-threads.sh`.
#
# Threads need std rebuilt with +atomics, which only a nightly (or bootstrapping) toolchain with
# the standard library's source can do: Debian's rustc-web and rust-web-src (scripts/setup.sh
# installs them), with RUSTC_BOOTSTRAP letting its stable cargo take -Zbuild-std.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${TRUNK_STAGING_DIR:?the folder the build goes to}/threads"
profile="${TRUNK_PROFILE:-release}"
target_dir=target/threads

# Code with atomics, and a memory the threads share: imported (wasm-bindgen's glue creates it
# and hands it to each thread), with each thread's TLS set up through the exports wasm-bindgen
# looks for. (rustc 1.96 no longer passes these link arguments itself.) Its maximum must be
# declared: 4 GiB, as much as a wasm32 memory can have (1 GiB is less than a large dataset
# needs); browsers reserve it as address space and commit only what is used.
link_args=(--shared-memory --import-memory --max-memory=4294967296
  --export=__wasm_init_tls --export=__tls_size --export=__tls_align --export=__tls_base)
RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128"
for arg in "${link_args[@]}"; do RUSTFLAGS+=" -C link-arg=$arg"; done
export RUSTFLAGS
export RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
flags=(--lib --target wasm32-unknown-unknown --features threads -Z build-std=std,panic_abort --target-dir "$target_dir")
if [ "$profile" = release ]; then flags+=(--release); fi
cargo build "${flags[@]}"

mkdir -p "$out"
wasm-bindgen --target web --no-typescript --out-dir "$out" --out-name webvae \
  "$target_dir/wasm32-unknown-unknown/$profile/webvae.wasm"

#!/usr/bin/env bash
# Installs whatever `make serve` and `make test` need and is missing; a second run only checks
# and takes seconds. Needs root or sudo for apt-get (Debian 12 or similar).
#
#   - the wasm32 target: rustup's where it can be had, otherwise Debian's rustc-web route
#     (rustc-web + rust-web-src + lld, building std with -Zbuild-std; see scripts/wasm-env.sh);
#     that route is installed either way, for the threaded build (scripts/build-threads.sh),
#     whose std must be rebuilt with atomics
#   - wasm-bindgen-cli at exactly the crate's version, wasm-pack, trunk, geckodriver
#   - Chromium + ChromeDriver and Firefox ESR (browser tests in two engines, two WGSL
#     compilers), Mesa's Vulkan drivers (lavapipe, a Vulkan adapter on the CPU; radv, whose
#     null device reports what AMD's compiler makes of our kernels), Debian's Fashion-MNIST
#     (parser tests on real IDX files)
#   - the end-to-end test's Node packages (playwright-core, driving the system Chromium)
#   - Python's `safetensors` in .venv (tests check that checkpoints load as PyTorch users load them)
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_BINDGEN_VERSION=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)"/\1/p' Cargo.toml)
WASM_PACK_VERSION=0.15.1
TRUNK_VERSION=0.21.14   # 0.22 needs rustc >= 1.96.1
GECKODRIVER_VERSION=0.37.1

say() { echo "setup: $*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

command -v cargo >/dev/null || { say "cargo not found: install Rust first (rustup, or apt-get install cargo)"; exit 1; }
command -v npm >/dev/null || NEED_NODE=1

# The wasm32 target: rustup's if it has it or can download it; otherwise Debian's route.
WASM_ROUTE=rustup
if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  :
elif command -v rustup >/dev/null && timeout 300 rustup target add wasm32-unknown-unknown; then
  :
else
  say "rustup cannot provide wasm32-unknown-unknown; using Debian's rustc-web with -Zbuild-std"
  WASM_ROUTE=debian
fi

packages=(chromium chromium-driver firefox-esr mesa-vulkan-drivers libvulkan1 dataset-fashion-mnist python3-venv
  rustc-web cargo-web rust-web-src rust-web-llvm lld-22)
if [ "${NEED_NODE:-0}" = 1 ]; then packages+=(nodejs npm); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Cargo tools at fixed versions ("tool --version" prints "tool X.Y.Z").
has_version() { command -v "$1" >/dev/null && "$1" --version 2>/dev/null | grep -q " $2\$"; }
if ! has_version wasm-bindgen "$WASM_BINDGEN_VERSION"; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes)"
  # Not --locked: its lock file pins a crate version that has since been yanked.
  cargo install -q wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION" --force
fi
if ! has_version wasm-pack "$WASM_PACK_VERSION"; then
  say "installing wasm-pack $WASM_PACK_VERSION (a few minutes)"
  cargo install -q wasm-pack --version "=$WASM_PACK_VERSION" --locked --force
fi
if ! has_version trunk "$TRUNK_VERSION"; then
  say "installing trunk $TRUNK_VERSION (several minutes)"
  cargo install -q trunk --version "=$TRUNK_VERSION" --locked --force
fi

# (Its --version goes on for lines: read them all, or it panics on the closed pipe.)
if [ "$(geckodriver --version 2>/dev/null | sed -n 1p)" != "geckodriver $GECKODRIVER_VERSION" ]; then
  say "installing geckodriver $GECKODRIVER_VERSION (a minute or two)"
  cargo install -q geckodriver --version "=$GECKODRIVER_VERSION" --locked --force
fi

if [ ! -d e2e/node_modules/playwright-core ]; then
  say "installing the end-to-end test's Node packages"
  (cd e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
if ! .venv/bin/python -c "import safetensors, numpy" 2>/dev/null; then
  say "installing Python's safetensors and numpy into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check "safetensors==0.8.0" "numpy==2.4.6"
fi
say "ok (wasm32 via $WASM_ROUTE)"

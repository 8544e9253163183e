# Sourced before wasm builds and browser tests (`. scripts/wasm-env.sh`).
#
# Where rustup has the wasm32 target, nothing is needed. Where it does not (rustup cannot
# download it), Debian's rustc-web builds wasm32 by compiling std from rust-web-src:
# RUSTC_BOOTSTRAP lets stable tools use -Zbuild-std.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  export RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
  export CARGO_UNSTABLE_BUILD_STD=std,panic_abort
fi
# Browser tests: the system ChromeDriver (wasm-pack would try to download one), and a timeout
# for the whole test binary that allows for software WebGPU (default: 20 s).
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-600}"

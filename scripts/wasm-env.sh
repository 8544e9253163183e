# Sourced before wasm builds and browser tests (`. scripts/wasm-env.sh`).
# Browser tests need nothing from here: the test timeout is in .cargo/config.toml, Chromium's
# flags in webdriver.json, and wasm-pack finds chromedriver on PATH.
#
# Where rustup has the wasm32 target, nothing is needed. Where it does not (rustup cannot
# download it), Debian's rustc-web builds wasm32 by compiling std from rust-web-src:
# RUSTC_BOOTSTRAP lets stable tools use -Zbuild-std.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  export RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
  export CARGO_UNSTABLE_BUILD_STD=std,panic_abort
fi

# The two commands: `make serve` (build and serve the page) and `make test` (every test).
# Both run `make setup` first, which installs whatever is missing (see scripts/setup.sh).
SHELL := /bin/bash
WASM_ENV := . scripts/wasm-env.sh &&

.PHONY: setup serve build test test-native test-browser test-e2e quality bench gpu-report

setup:
	@bash scripts/setup.sh

# Serves http://127.0.0.1:8080/ and rebuilds on change.
serve: setup
	$(WASM_ENV) trunk serve --release --offline

# The static site, in dist/.
build: setup
	$(WASM_ENV) trunk build --release --offline

test: setup
	$(MAKE) --no-print-directory test-native test-browser test-e2e

# CPU oracle, parsers, naga validation, and kernels on the native adapter (lavapipe here).
test-native:
	@# lavapipe complains on every start when XDG_RUNTIME_DIR is unset (as under CI): give it one.
	XDG_RUNTIME_DIR="$${XDG_RUNTIME_DIR:-$$(mktemp -d)}" cargo test -- --nocapture

# The same kernels, in both kernel shapes, in headless Chromium on WebGPU (SwiftShader, Tint
# compiling the WGSL) and in headless Firefox ESR on WebGPU (wgpu and naga on Vulkan, lavapipe
# here): the commands users type. They need nothing from this Makefile: .cargo/config.toml sets
# the test timeout, webdriver.json each browser's flags and prefs, and wasm-pack finds Debian's
# chromedriver and cargo's geckodriver on PATH. (wasm-env.sh exports nothing where rustup has
# the wasm32 target.)
test-browser:
	$(WASM_ENV) wasm-pack test --headless --chrome
	$(WASM_ENV) PATH="$$HOME/.cargo/bin:$$PATH" wasm-pack test --headless --firefox

# The built page (both builds: Trunk's, and the threaded one its hook makes), served on
# localhost and driven in headless Chromium: the checks of e2e.mjs (on a server that isolates
# the page, so the threaded build; one check on a plain static server), then the restless user
# (random clicks from the first second) with each seed, on WebGPU and on the CPU path, seed 2
# on the plain static server.
RESTLESS_SEEDS ?= 1,2,3
test-e2e:
	$(WASM_ENV) trunk build --release --offline
	cd e2e && node e2e.mjs
	cd e2e && node restless.mjs --seeds $(RESTLESS_SEEDS) --unisolated-seeds 2 --devices webgpu,cpu --actions 200

# A preset (MODEL=mlp, the reference; conv; mlp-gauss-var or conv-gauss-var, with a mean and a
# variance per pixel; mlp-categorical or conv-categorical, 20 x 10 categorical latents), 10 epochs
# on the bundled digits,
# natively (DEVICE=cpu: on the CPU path); last line: test_nelbo <nats>. MODEL=hvae DEVICE=cpu:
# the hierarchy of latents, 50 epochs at batch 64, about 26 minutes (on lavapipe, without
# DEVICE=cpu, about 9 hours; EPOCHS=1 BATCH=128 gives the first epoch, to compare).
MODEL ?= mlp
quality:
	XDG_RUNTIME_DIR="$${XDG_RUNTIME_DIR:-$$(mktemp -d)}" MODEL=$(MODEL) DEVICE=$(DEVICE) cargo run --release --example quality

# The reference training step timed side by side: natively (lavapipe here) and in headless
# Chromium on WebGPU (SwiftShader here), then on the CPU path natively and in the page's worker,
# each on one thread and on every core; lines `bench <backend> model <m> ... ms_per_step ...`.
bench: setup
	XDG_RUNTIME_DIR="$${XDG_RUNTIME_DIR:-$$(mktemp -d)}" cargo run --release -q --example bench
	$(WASM_ENV) trunk build --release --offline >/dev/null
	cd e2e && node bench.mjs

# What AMD's compiler (radv's null device, no GPU needed) makes of every kernel in both shapes,
# for GFX9 and GFX10.3: lines `gpu-report family F shape S kernel K vgprs ... waves_per_simd N`.
gpu-report: setup
	cargo run --release -q --example gpu_report

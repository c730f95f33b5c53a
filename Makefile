# xmacvlan — the two commands: `make demo` and `make test` (both as root).
SHELL := /bin/bash
CARGO ?= cargo
APT_PACKAGES := clang llvm libbpf-dev libelf-dev zlib1g-dev pkg-config make iproute2 iputils-ping arping ethtool procps iperf3 podman runc containernetworking-plugins busybox-static docker.io python3-prometheus-client

.PHONY: all deps build demo test unit lint bench bench-smoke bench-decide soak fuzz-deps fuzz-build fuzz-smoke fuzz clean

all: build

# Installs what a fresh Debian 12 machine lacks (only when something is missing).
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (rustup)"; exit 1; }

build: deps
	$(CARGO) build --release --workspace

demo: build
	XMACVLAN_BIN=$(CURDIR)/target/release/xmacvlan bash scripts/demo.sh

# Unit tests (no root needed) and the end-to-end tests in network namespaces (root), serially:
# each e2e test builds its own lab and runs a daemon with busy-polling workers.
# Then the semantic suites again in the forced-userspace configuration (every frame through AF_XDP
# and the workers: `daemon --fast-path off`); tests about one configuration name it themselves.
# The end-to-end tests are #[ignore]d (a plain `cargo test` lists them as needing root); this runs them.
test: deps
	$(CARGO) test --workspace -- --test-threads=1 --include-ignored
	XMACVLAN_TEST_FAST_PATH=off $(CARGO) test --test bridge --test modes --test vlan --test control --test cni --test hotplug --test guard --test ipvlan -- --test-threads=1 --include-ignored

unit:
	$(CARGO) test --workspace --lib --bins

# Formatting, clippy with warnings as errors (the workspace's lints: every unsafe block says why it
# is sound), and the criterion benchmarks compiled. CI runs it.
lint:
	@if command -v rustup >/dev/null; then rustup component add rustfmt clippy >/dev/null 2>&1 || true; fi
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) bench --workspace --no-run

# `xmacvlan bench --help` lists the options, e.g. make bench BENCH_ARGS="--sizes 64 --out /tmp/run".
bench: build
	$(CURDIR)/target/release/xmacvlan bench $(BENCH_ARGS)

# About a minute: every test once at 64 B, all six backends (CI runs it so the harness cannot rot).
bench-smoke: build
	$(CURDIR)/target/release/xmacvlan bench --smoke --backends kernel,xmacvlan,xmacvlan-xdp,xmacvlan-afxdp,tc-floor,xmacvlan-ipvlan

# Not in CI (ten minutes and more, as root): 80 % of the default configuration's max rate with unicast,
# 1 % broadcast, container-sourced frames and an endpoint connect/disconnect every 2.5 s; then 0 frames
# unaccounted, the daemon's RSS and descriptors flat, no UMEM frame lost. Writes $(SOAK_OUT)/soak.json;
# docs/soak.md has the figures. A short run: make soak SOAK_ARGS="--duration 60".
SOAK_OUT ?= $(CURDIR)/target/soak
soak: build
	$(CURDIR)/target/release/xmacvlan bench soak --out $(SOAK_OUT) $(SOAK_ARGS)

# The per-frame decision, parse + lookup, with 1, 1k and 64k MACs (criterion).
bench-decide:
	$(CARGO) bench -p xmacvlan-datapath --bench decide

# Fuzzing (fuzz/, docs/fuzzing.md): cargo-fuzz on the stable toolchain — RUSTC_BOOTSTRAP=1 lets
# stable rustc take the -Z flags of libFuzzer's instrumentation — with AddressSanitizer, debug
# assertions and overflow checks (-a). Its build and the corpus it grows stay in fuzz/target.
# fuzz-smoke (CI): each target for FUZZ_SECONDS from the seed corpus; fuzz: each for FUZZ_RUNS
# executions, one after the other. Any crash fails the run and is kept in fuzz/artifacts/<target>/.
FUZZ_TARGETS := frame request cni_conf state
FUZZ_SECONDS ?= 30
FUZZ_RUNS ?= 10000000
FUZZ := RUSTC_BOOTSTRAP=1 $(CARGO) fuzz
# frame: a frame of up to a UMEM chunk (2 KiB) behind the table's bytes; the others: JSON.
FUZZ_RUN = for t in $(FUZZ_TARGETS); do \
		case $$t in frame) len=2048;; *) len=4096;; esac; \
		mkdir -p fuzz/target/corpus/$$t; \
		echo "== fuzz $$t: $(1)"; start=$$(date +%s); \
		$(FUZZ) run -a --fuzz-dir fuzz $$t fuzz/target/corpus/$$t fuzz/corpus/$$t -- \
			$(1) -max_len=$$len -timeout=10 -print_final_stats=1 || exit 1; \
		echo "== fuzz $$t: $$(( $$(date +%s) - start )) s"; \
	done

fuzz-deps:
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked

fuzz-build: fuzz-deps
	$(FUZZ) build -a --fuzz-dir fuzz

fuzz-smoke: fuzz-build
	@$(call FUZZ_RUN,-max_total_time=$(FUZZ_SECONDS))

# e.g. make fuzz FUZZ_RUNS=10000000 (docs/fuzzing.md has the figures of such a run);
# FUZZ_MAX_SECONDS=N also stops each target after N seconds.
fuzz: fuzz-build
	@$(call FUZZ_RUN,-runs=$(FUZZ_RUNS) $(if $(FUZZ_MAX_SECONDS),-max_total_time=$(FUZZ_MAX_SECONDS)))

clean:
	$(CARGO) clean

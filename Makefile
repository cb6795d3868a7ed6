# roomcast — the two commands: `make run` and `make test`. See README.md.
SHELL := /bin/bash
JOBS ?= 2
ARGS ?=

.PHONY: deps build run test dev-build clean tsan fuzz soak cluster cluster-stop bench bench-deps format check-format tidy

deps:
	@./scripts/install-deps.sh

build: deps
	cmake --preset release >/dev/null
	cmake --build --preset release -j$(JOBS)

# One node on :8091 with the embedded local bus and the demo pages of web/.
run: build
	./build/release/roomcast --config deploy/roomcast.example.toml $(ARGS)

dev-build: deps
	cmake --preset dev >/dev/null
	cmake --build --preset dev -j$(JOBS)

# Sanitized build (ASan + UBSan) and every test through ctest.
test: dev-build
	./scripts/run-tests.sh build/dev

# ThreadSanitizer build, and every test but the browser and JS ones (their node runs as in make
# test): unit, multi-shard nodes, the buses, recovery, clusters. A TSan report in a node fails its
# test (tests/integration/support/node_process.cpp). CI runs this after make test.
TSAN_CTEST ?= -E "^(e2e|js)\."
tsan: deps
	cmake --preset tsan >/dev/null
	cmake --build --preset tsan -j$(JOBS)
	./scripts/run-tests.sh build/tsan $(TSAN_CTEST)

# libFuzzer targets (tests/fuzz, clang, ASan + UBSan), FUZZ_SECONDS each on tests/fuzz/corpus/;
# fails on a crash, leak or timeout (docs/security.md). FUZZ_MERGE=1 keeps what they found.
FUZZ_SECONDS ?= 60
# make cluster TLS=1 (nginx terminates TLS) or TLS=passthrough (the nodes do)
TLS ?=
FUZZ_TARGETS ?=
FUZZ_MERGE ?= 0
fuzz: deps
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz -j$(JOBS)
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_TARGETS="$(FUZZ_TARGETS)" FUZZ_MERGE=$(FUZZ_MERGE) ./scripts/fuzz.sh

# Soak (not in CI): SOAK_MINUTES on a three-node cluster behind nginx with churn, fan-out, slow
# consumers, kicks, a node restart and a broker restart; checked clients must lose nothing.
# Writes build/soak/result.json, then docs/soak.md and docs/soak/*.svg (tools/soak/).
SOAK_MINUTES ?= 30
soak: build
	status=0; node --experimental-websocket tools/soak/soak.mjs --bin build/release/roomcast \
	  --minutes $(SOAK_MINUTES) || status=$$?; \
	node tools/soak/report.mjs --command "make soak SOAK_MINUTES=$(SOAK_MINUTES)" && exit $$status

# Redis + RabbitMQ + three nodes (:8091-:8093) + nginx on :8090, on this machine.
cluster: build
	ROOMCAST_CLUSTER_TLS=$(TLS) ./scripts/cluster.sh start

cluster-stop:
	./scripts/cluster.sh stop

# Standard scenarios S1-S8 against the limit baseline and roomcast, then S1-S4 against Socket.IO 4
# and Nchan (not tests; ~40 min at full size; BENCH_COMPARE= skips the comparison).
# One scenario at a time, limit then roomcast, so that each pair is measured back to back; every
# step is capped by `timeout` and stops its own server. Results: build/bench-results/{limit,roomcast}/
# (JSON, text, SVG, commands.txt, loadavg.txt); then tools/bench/report.py rewrites the generated part
# of docs/benchmarks.md and copies the plots to docs/bench/.
#   make bench BENCH_SCENARIOS="S1 S3" BENCH_FLAGS="--scale 0.1"     a quick partial run
BENCH_SCENARIOS ?= S1 S2 S3 S4 S5 S6 S7 S8
BENCH_FLAGS ?=
BENCH_LIMIT_PORT ?= 18400
BENCH_ROOMCAST_PORT ?= 18300
BENCH_STEP_TIMEOUT ?= 900
BENCH_RESULTS ?= build/bench-results
# Systems to compare with (tools/bench/run-compare.sh: S1-S4, two nodes each with Redis); empty = skip.
BENCH_COMPARE ?= socketio nchan
BENCH_COMPARE_FLAGS ?=
bench: build $(if $(BENCH_COMPARE),bench-deps)
	rm -rf $(BENCH_RESULTS)/limit $(BENCH_RESULTS)/roomcast $(BENCH_RESULTS)/compare
	set -e; for s in $(BENCH_SCENARIOS); do \
	  timeout $(BENCH_STEP_TIMEOUT) ./tools/bench/run-standard.sh --append $(BENCH_FLAGS) --out $(BENCH_RESULTS)/limit \
	    --port $(BENCH_LIMIT_PORT) --server "build/release/tools/bench/limit-server --port {port} --threads 2 --max-seconds $(BENCH_STEP_TIMEOUT)" $$s; \
	  timeout $(BENCH_STEP_TIMEOUT) ./tools/bench/run-standard.sh --append $(BENCH_FLAGS) --out $(BENCH_RESULTS)/roomcast \
	    --port $(BENCH_ROOMCAST_PORT) $$s; \
	done
	set -e; for sys in $(BENCH_COMPARE); do \
	  timeout 1800 ./tools/bench/run-compare.sh $(BENCH_COMPARE_FLAGS) --out $(BENCH_RESULTS)/compare/$$sys $$sys; \
	done
	python3 tools/bench/report.py --results $(BENCH_RESULTS) limit=$(BENCH_RESULTS)/limit roomcast=$(BENCH_RESULTS)/roomcast \
	  $(foreach s,$(BENCH_COMPARE),$(s)=$(BENCH_RESULTS)/compare/$(s))

# What the Socket.IO and Nchan comparison needs (not needed by build, run or test).
bench-deps:
	./scripts/install-deps.sh deploy/packages-bench.txt
	cd tools/bench/socketio && npm ci --no-audit --no-fund

# Layout (.clang-format) and static checks (.clang-tidy) of our C++; CI runs check-format.
format:
	git ls-files --cached --others --exclude-standard '*.cpp' '*.hpp' | xargs clang-format -i --style=file

check-format: deps
	./scripts/check-format.sh

tidy: dev-build
	./scripts/tidy.sh

clean:
	rm -rf build

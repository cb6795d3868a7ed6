# roomcast — the two commands: `make run` and `make test`. See README.md.
SHELL := /bin/bash
JOBS ?= 2
ARGS ?=

.PHONY: deps build run test dev-build clean tsan cluster cluster-stop bench

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

tsan: deps
	cmake --preset tsan >/dev/null
	cmake --build --preset tsan -j$(JOBS)
	./scripts/run-tests.sh build/tsan

# Redis + RabbitMQ + three nodes (:8091-:8093) + nginx on :8090, on this machine.
cluster: build
	./scripts/cluster.sh start

cluster-stop:
	./scripts/cluster.sh stop

# Standard scenarios S1-S8 against the limit baseline and roomcast (not tests; minutes each).
# Results: build/bench-results/{limit,roomcast}/ (JSON, text, SVG); docs/benchmarks.md records them.
# BENCH_ARGS="--scale 0.1 S1 S3" for a quick run.
BENCH_ARGS ?= all
bench: build
	./tools/bench/run-standard.sh --server "build/release/tools/bench/limit-server --port {port} --threads 2 --max-seconds 900" \
	    --out build/bench-results/limit --port 18400 $(BENCH_ARGS)
	./tools/bench/run-standard.sh --out build/bench-results/roomcast --port 18300 $(BENCH_ARGS)

clean:
	rm -rf build

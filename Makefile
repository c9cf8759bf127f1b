# Apus: `make run` starts the broker on 127.0.0.1:1883, `make test` runs every test.
# Both install what is missing first (Debian packages, PyPI packages); re-running is cheap.

SWIFT        ?= swift
PYTHON       ?= python3
APT_PACKAGES := gcc liburing-dev libjemalloc-dev libssl-dev openssl mosquitto mosquitto-clients pkg-config curl chromium etcd-server iptables
PY_PACKAGES  := paho-mqtt pytest websocket-client
FUZZ_SECONDS ?= 60
RELEASE_BIN  := .build/release/apus

.PHONY: all deps build bench-build bench-standard bench-ci bench-micro run test unit-test blackbox-test deploy-test fuzz clean

all: build

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@$(PYTHON) -c "import paho.mqtt, pytest, websocket" 2>/dev/null || $(PYTHON) -m pip install -q $(PY_PACKAGES)

build: deps
	$(SWIFT) build -c release --product apus

bench-build: deps
	$(SWIFT) build -c release --product apus-bench

# The standard suite against Apus and Mosquitto (about 7 minutes), compared with the latest
# committed standard report (see docs/benchmarks.md).
bench-standard: build bench-build
	.build/release/apus-bench suite IntegrationTests/load/standard.json --against mosquitto --out .build/standard-latest.json
	.build/release/apus-bench compare reports/standard-20261207c.json .build/standard-latest.json --gate apus

# The CI load suite against Apus and Mosquitto, compared with the committed baseline. Gates only on
# gross regressions of Apus (this machine is shared and noisy) and on any loss at QoS >= 1; then
# checks that the gate fails on an injected regression, that apus-bench's counts agree with
# mosquitto_sub's, and that apus-bench measures at least what an independent C tool measures;
# then the large-payload suite against its own baseline.
bench-ci: build bench-build
	.build/release/apus-bench suite IntegrationTests/load/ci.json --against mosquitto --out .build/ci-latest.json
	.build/release/apus-bench compare reports/baseline.json .build/ci-latest.json --gate apus \
	  --max-throughput-drop 60 --max-p99-rise 300
	IntegrationTests/load/compare-gate.sh .build/ci-latest.json
	IntegrationTests/load/agreement.sh
	IntegrationTests/load/tool-agreement.sh
	.build/release/apus-bench suite IntegrationTests/load/ci-large.json --against mosquitto --out .build/ci-large-latest.json
	.build/release/apus-bench compare reports/baseline-large.json .build/ci-large-latest.json --gate apus \
	  --max-throughput-drop 60 --max-p99-rise 300

# Micro-benchmarks (Benchmarks/, ordo-one/benchmark) with the malloc gate: fails when a benchmark
# allocates more per operation than Benchmarks/malloc-limits.json allows (the publish path: 0).
# Wall-clock is printed, not gated. The benchmark package's first release build takes ~3 minutes.
bench-micro: deps
	SWIFT=$(SWIFT) $(PYTHON) Benchmarks/check-mallocs.py

run: build
	$(RELEASE_BIN)

# Unit tests, the micro-benchmarks' malloc gate (~4 minutes with its first build), a short fuzz
# run of the decoder, the CI load suite with its regression gate, and the black-box tests against
# the real `apus` (last, so that pytest's summary closes the output).
test: deps unit-test bench-micro fuzz bench-ci deploy-test blackbox-test

unit-test:
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# The deployment artifacts (deploy/) checked by real tools: hadolint, systemd-analyze, kubernetes-validate,
# seccomp and the unit's filter against the real apus, the Grafana dashboard's queries in a real
# Prometheus scraping a real apus (docs/operations.md). Installs what it needs (~30 s after that).
deploy-test: build
	APUS_BIN=$(CURDIR)/$(RELEASE_BIN) bash IntegrationTests/deploy/run.sh

blackbox-test: build
	APUS_BIN=$(CURDIR)/$(RELEASE_BIN) $(PYTHON) -m pytest -q IntegrationTests/blackbox

fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh

clean:
	rm -rf .build fuzz/corpus-run fuzz/apus-fuzz-decoder fuzz/apus-fuzz-records

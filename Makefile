# Apus: `make run` starts the broker on 127.0.0.1:1883, `make test` runs every test.
# Both install what is missing first (Debian packages, PyPI packages); re-running is cheap.

SWIFT        ?= swift
PYTHON       ?= python3
APT_PACKAGES := liburing-dev libjemalloc-dev mosquitto mosquitto-clients pkg-config
PY_PACKAGES  := paho-mqtt pytest
FUZZ_SECONDS ?= 60
RELEASE_BIN  := .build/release/apus

.PHONY: all deps build bench-build bench-pairs run test unit-test blackbox-test fuzz clean

all: build

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@$(PYTHON) -c "import paho.mqtt, pytest" 2>/dev/null || $(PYTHON) -m pip install -q $(PY_PACKAGES)

build: deps
	$(SWIFT) build -c release --product apus

bench-build: deps
	$(SWIFT) build -c release --product apus-bench

# Apus vs Mosquitto, pairs scenario, QoS 0 and 1 (see docs/benchmarks.md).
bench-pairs: build bench-build
	tests/load/pairs-vs-mosquitto.sh

run: build
	$(RELEASE_BIN)

# Unit tests, the black-box tests against the real `apus`, and a short fuzz run of the decoder.
test: deps unit-test fuzz blackbox-test

unit-test:
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

blackbox-test: build
	APUS_BIN=$(CURDIR)/$(RELEASE_BIN) $(PYTHON) -m pytest -q tests/blackbox

fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh

clean:
	rm -rf .build fuzz/corpus-run fuzz/apus-fuzz-decoder

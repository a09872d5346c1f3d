# DIVDS build, test, benchmark and demo targets.
# `make test` and `make demo` work on a fresh Debian machine as root: they
# install what they need and start only private services of their own.

SHELL        := /bin/bash
export PATH  := /usr/local/go/bin:$(PATH)
GO           ?= go
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS      := -X main.version=$(VERSION)
BIN          := bin/divds-authz
# Empty: each fuzz target runs its own execution count (see fuzz).
FUZZTIME     ?=
# Packages the end-to-end tests and the demo need from Debian (and, for
# the Docker 29 build of scripts/engine.sh, runc's seccomp headers).
APT_PACKAGES := docker.io docker-registry rsyslog zstd time systemd libseccomp-dev pkg-config
# The engines the end-to-end suite runs on: Debian's dockerd 20.10, and
# Docker 29 (built once per machine by scripts/engine.sh, cached outside
# the checkout) with the classic store and with the containerd store.
E2E_ENGINES  ?= debian 29-overlay2 29-containerd

PREFIX       ?= /usr/local
DESTDIR      ?=
PLUGIN_NAME  ?= divds:latest
PLUGIN_DIR   ?= build/plugin

.PHONY: all build test unit crash e2e engine fuzz bench demo deps gomod vet fmt clean install uninstall plugin plugin-rootfs

all: build

build: gomod
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/divds-authz

# deps installs the Debian packages once; it never starts or touches the
# host's own docker service (see test/ for the private daemons).
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing packages:$$missing (run as root, or apt-get install them)"; exit 1; fi; \
	  echo "installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

gomod:
	$(GO) mod download

vet: gomod
	$(GO) vet ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Every package but the end-to-end suite, under the race detector (the
# plugin is heavily concurrent). -short leaves out the kill test only:
# its children are CLI imports, about ten times slower under -race, and
# `crash` runs it without.
UNIT_PKGS = $$($(GO) list ./... | grep -v '/test/e2e$$')
unit: gomod
	$(GO) test -race -short -count=1 -timeout 30m $(UNIT_PKGS)

crash: gomod
	$(GO) test -count=1 -run '^TestKillDuringUpdate$$' ./cmd/divds-authz

# Docker 29, containerd and runc from the Go module proxy, once per
# machine (about 5 minutes on 2 cores); prints where the binaries are.
engine: deps
	@bash scripts/engine.sh

# The end-to-end suite on private dockerd, registry and rsyslog, once per
# engine of E2E_ENGINES. The plugin it tests is built with -race
# (DIVDS_E2E_RACE): a data race under the real daemon's concurrency ends
# it and fails the test.
e2e: deps gomod
	@set -e; bin=""; \
	case " $(E2E_ENGINES) " in *" 29-"*) bin=$$(bash scripts/engine.sh);; esac; \
	for e in $(E2E_ENGINES); do \
	  echo "== end-to-end suite on $$e"; \
	  DIVDS_E2E_ENGINE=$$e DIVDS_ENGINE_BIN=$$bin DIVDS_E2E_RACE=1 $(GO) test -count=1 -timeout 40m ./test/e2e/; \
	done

# Each fuzz target runs a fixed number of executions, a few seconds here:
# a count, not a duration, because Go 1.26's fuzz coordinator can fail a
# duration-bound run at its deadline with "context deadline exceeded" and
# no failing input (go.dev/issue/75804, fixed in Go 1.27). For a longer
# search, `make fuzz FUZZTIME=5m` runs every target for that time.
FUZZ_TARGETS := scoring:FuzzParse:100000x authz:FuzzParse:60000x report:FuzzRead:200000x \
	scanner/bundle:FuzzImport:1000x scanner/index:FuzzIndex:5000x scanner/vulnstore:FuzzDecodeRecord:100000x \
	scanner/layerfs:FuzzFromTar:100000x scanner/source:FuzzReadArchive:3000x
fuzz: gomod
	@set -e; for t in $(FUZZ_TARGETS); do \
	  IFS=: read -r pkg fn count <<<"$$t"; ft=$${FUZZTIME:-$$count}; \
	  echo "fuzz $$fn in ./$$pkg for $$ft"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $$ft ./$$pkg; \
	done

test: deps fmt vet unit crash e2e fuzz

# Every benchmark, printed as a table beside its target. Needs root (it
# starts a private dockerd), like make test.
bench: deps build
	@bash scripts/bench.sh

# The main job end to end on private daemons, with the embedded database
# (or fresh data when the network is there). Needs root, like dockerd.
demo: deps build
	@bash scripts/demo.sh

# Install on this host (as root): binary, systemd units, default policy,
# database, then Docker's configuration in the safe order. With DESTDIR,
# only stage the files. INSTALL_DB=sample installs the shipped sample
# database instead of running db update.
install: build
	DESTDIR='$(DESTDIR)' PREFIX='$(PREFIX)' bash scripts/install.sh

uninstall:
	@test -x bin/divds-authz || $(MAKE) build
	DESTDIR='$(DESTDIR)' PREFIX='$(PREFIX)' bash scripts/uninstall.sh

# The managed plugin: a static binary in a minimal rootfs, created in the
# Docker daemon DOCKER_HOST names as $(PLUGIN_NAME).
plugin-rootfs: gomod
	rm -rf $(PLUGIN_DIR)
	mkdir -p $(PLUGIN_DIR)/rootfs/etc/ssl/certs $(PLUGIN_DIR)/rootfs/etc/divds $(PLUGIN_DIR)/rootfs/var/lib/divds \
	  $(PLUGIN_DIR)/rootfs/var/lib/docker $(PLUGIN_DIR)/rootfs/run/docker/plugins $(PLUGIN_DIR)/rootfs/tmp $(PLUGIN_DIR)/rootfs/dev
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(PLUGIN_DIR)/rootfs/divds-authz ./cmd/divds-authz
	if [ -f /etc/ssl/certs/ca-certificates.crt ]; then cp /etc/ssl/certs/ca-certificates.crt $(PLUGIN_DIR)/rootfs/etc/ssl/certs/; fi
	cp config.json $(PLUGIN_DIR)/config.json

plugin: plugin-rootfs
	docker plugin create $(PLUGIN_NAME) $(PLUGIN_DIR)
	@echo "created $(PLUGIN_NAME); see docs/admin-guide.md to set its mounts and enable it"

clean:
	rm -rf bin build

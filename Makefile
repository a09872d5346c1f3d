# DIVDS build, test, benchmark and demo targets.
# `make test` and `make demo` work on a fresh Debian machine as root: they
# install what they need and start only private services of their own.

SHELL        := /bin/bash
export PATH  := /usr/local/go/bin:$(PATH)
GO           ?= go
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS      := -X main.version=$(VERSION)
BIN          := bin/divds-authz
FUZZTIME     ?= 10s
# Packages the end-to-end tests and the demo need from Debian.
APT_PACKAGES := docker.io docker-registry rsyslog zstd

.PHONY: all build test unit fuzz bench demo deps gomod vet fmt clean

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

unit: gomod
	$(GO) test -count=1 ./...

# Each fuzz target runs for a short, fixed time; `make fuzz FUZZTIME=5m` for longer.
fuzz: gomod
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./scoring

test: deps fmt vet unit fuzz

bench: gomod
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Until the plugin lands (issue #6), the demo runs the IVE on saved reports:
# it scores them under the default policy and under an admin's what-if.
demo: build
	@bash scripts/demo.sh

clean:
	rm -rf bin

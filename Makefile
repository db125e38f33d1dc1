# Tocsin — the two commands a newcomer needs are `make demo` and `make test`.
GO       ?= go
PKGS     := ./...
SOAK_COUNT ?= 10
FUZZTIME   ?= 2m
# Random sequences the model test (priority.TestModel) runs in make soak;
# make test runs rapid's default (100).
RAPID_CHECKS ?= 1000
# Sequences of the whole-gateway model test (gateway.TestGatewayModel) in
# make soak; make test runs 6.
GATEWAY_MODEL_CHECKS ?= 60

.PHONY: all build test demo bench soak fuzz lint fmt deps clean screenshots deploy-check

all: build

build:
	$(GO) build -o bin/tocsin ./cmd/tocsin

# Runs Tocsin in one process: in-process Redis stand-in and MQTT broker,
# simulated sirens, nothing to install and nothing kept.
demo:
	@echo "make demo: building bin/tocsin (the first build fetches modules and compiles: a minute or two; later ones take seconds)..."
	@$(GO) build -o bin/tocsin ./cmd/tocsin
	@echo "make demo: starting the demo (Ctrl-C stops it)..."
	@./bin/tocsin demo

# The whole suite with the race detector, against real redis-server and
# mosquitto processes the tests start themselves (installed with apt-get when
# missing and running as root).
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 9m $(PKGS)

# Repeats the chaos tests (Redis and broker kill -9, instance kill -9, SIGTERM)
# and the fence race, and runs the model test on many more random sequences;
# CI runs it shortened (SOAK_COUNT=2 RAPID_CHECKS=300 GATEWAY_MODEL_CHECKS=20).
soak:
	$(GO) test -race -count=$(SOAK_COUNT) -timeout 30m \
		-run 'TestRedisDown|TestBrokerKilled|TestInstanceKilled|TestSIGTERM|TestRetractionMidDelivery|TestDeadSirens|TestSentinelFailover|TestClusterFailover|TestSiteGateway' ./gateway/
	$(GO) test -race -count=$(SOAK_COUNT) -run 'TestFence|TestExpiredLease|TestSentinelFailover|TestClusterFailover' ./priority/
	$(GO) test -race -count=1 -timeout 30m -run '^TestModel(OnRedisCluster)?$$' ./priority/ -rapid.checks=$(RAPID_CHECKS)
	TOCSIN_GATEWAY_MODEL_CHECKS=$(GATEWAY_MODEL_CHECKS) $(GO) test -race -count=1 -timeout 30m -run '^TestGatewayModel$$' ./gateway/

# Fuzzes the CAP parser, the JSON alert body and the MQTT trigger payload
# (their seed corpora, the real CAP documents among them, also run in make
# test); CI runs it shortened.
# FUZZTIME is a duration (2m) or a count of executions (60000x, as CI runs it).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./cap/
	$(GO) test -run '^$$' -fuzz '^FuzzAlertJSON$$' -fuzztime $(FUZZTIME) ./gateway/
	$(GO) test -run '^$$' -fuzz '^FuzzTrigger$$' -fuzztime $(FUZZTIME) ./gateway/

# Micro-benchmarks of the hot paths against a real Redis, with peers in the
# same run, then ingest through the load generator against Tocsin, the asynq
# peer and the bare ceiling (loadtest/bench.sh prints a Markdown table).
# Results go in BENCHMARKS.md by hand, with the command and machine.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3s ./priority/ ./gateway/ ./routing/ ./cap/
	bash loadtest/bench.sh 10s

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet -tags helm ./deploy/

fmt:
	gofmt -w $$(git ls-files '*.go')

# Walks the demo's story through the web console in a headless Chromium
# (cmd/tocsin TestConsoleStory) and keeps its screenshots in docs/screenshots.
screenshots:
	TOCSIN_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run '^TestConsole(Story|Maintenance)$$' ./cmd/tocsin/

# The Debian packages the tests use (the tests install them themselves as root).
# The Helm chart: helm lint --strict, and the rendered manifests checked
# against each other and against Tocsin (deploy/helm_test.go). Debian has no
# helm package, so helm is built from its module (a minute, once). CI runs it.
HELM_VERSION ?= v3.21.4
deploy-check:
	GOBIN=$(CURDIR)/bin $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	HELM=$(CURDIR)/bin/helm $(GO) test -tags helm -count=1 -run '^TestHelmChart$$' ./deploy/

deps:
	apt-get update && apt-get install -y --no-install-recommends redis-server mosquitto mosquitto-clients

clean:
	rm -rf bin

# eiplb build and test entry points. `make` (or `make help`) lists the targets.

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
.DEFAULT_GOAL := help

GO ?= go

# Pinned tools, installed through the Go module proxy into bin/tools/ (git-ignored).
# The file name carries the version, so bumping a version reinstalls it.
# CI points TOOLS_DIR at a cache outside the clone so fresh clones reuse them.
TOOLS_DIR ?= $(abspath bin/tools)
override TOOLS_DIR := $(abspath $(TOOLS_DIR))
CONTROLLER_TOOLS_VERSION ?= v0.23.0
KUSTOMIZE_VERSION ?= v5.8.2
CONTROLLER_GEN := $(TOOLS_DIR)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
KUSTOMIZE := $(TOOLS_DIR)/kustomize-$(KUSTOMIZE_VERSION)
GOLANGCI_LINT_VERSION ?= v2.15.0
GOLANGCI_LINT := $(TOOLS_DIR)/golangci-lint-$(GOLANGCI_LINT_VERSION)

# Extra flags for `go test`, e.g. make test TEST_ARGS='-run TestFoo -v'.
TEST_ARGS ?=
# Packages with privileged tests (build tag privileged); the end-to-end
# scenarios (make e2e) and the system benchmark (make bench) run separately.
PRIVILEGED_PKGS ?= ./pkg/dataplane/nft/... $(shell grep -rl --include='*_test.go' '^//go:build privileged' test 2>/dev/null | xargs -r -n1 dirname | sort -u | grep -v -e '^test/e2e/scenarios$$' -e '^test/e2e/bench$$' -e '^test/e2e/realcluster$$' | sed 's|^|./|')
# How long `make fuzz` runs each fuzz target.
FUZZTIME ?= 10s

# Folders whose content is generated; `make verify` fails when they are stale.
GENERATED_PATHS := pkg/apis config deploy

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9\/.-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

# The version stamped into the binaries and images (their --version,
# `kubectl eiplb version`, the start-up log line).
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/eiplb/eiplb/pkg/version.Version=$(VERSION)
# Where make build writes the binaries.
BINDIR ?= bin

.PHONY: build
build: ## Build bin/eiplb-manager, bin/eiplb-agent and the kubectl plugin bin/kubectl-eiplb, stamped with VERSION (git describe).
	@mkdir -p $(BINDIR)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BINDIR)/eiplb-manager ./cmd/manager
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BINDIR)/eiplb-agent ./cmd/agent
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BINDIR)/kubectl-eiplb ./cmd/kubectl-eiplb

# Where make plugin-release writes the kubectl-eiplb archives and the krew
# manifest; RELEASE_URL is the URL they will be published under.
RELEASE_DIR ?= dist
RELEASE_URL ?= RELEASE_URL

.PHONY: plugin-release
plugin-release: ## Build kubectl-eiplb_VERSION_OS_ARCH.tar.gz (linux, darwin × amd64, arm64) and the krew manifest RELEASE_DIR/eiplb.yaml (from deploy/krew/eiplb.yaml, with sha256s).
	VERSION=$(VERSION) RELEASE_URL=$(RELEASE_URL) GO=$(GO) hack/plugin-release.sh $(RELEASE_DIR)

# The release: appVersion of the chart. deploy/eiplb.yaml and the chart pull
# the images tagged v$(RELEASE_VERSION) (config/default/kustomization.yaml).
RELEASE_VERSION := $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$$/\1/p' deploy/helm/eiplb/Chart.yaml)

# Container images: make images IMAGE_REPO=ghcr.io/you IMAGE_TAG=v0.1.0
IMAGE_REPO ?= ghcr.io/eiplb
IMAGE_TAG ?= v$(RELEASE_VERSION)
CONTAINER_TOOL ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)

# Where make images writes the static binaries and the image archives.
IMAGES_DIR ?= $(BINDIR)/images
override IMAGES_DIR := $(abspath $(IMAGES_DIR))
IMAGE_LDFLAGS := -s -w $(LDFLAGS)

.PHONY: images
images: ## Build the eiplb-manager, eiplb-agent and the cluster lab's test-backend and pause images offline (no daemon, hack/images) as docker archives in IMAGES_DIR (bin/images).
	@mkdir -p $(IMAGES_DIR)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(IMAGE_LDFLAGS)' -o $(IMAGES_DIR)/eiplb-manager ./cmd/manager
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(IMAGE_LDFLAGS)' -o $(IMAGES_DIR)/eiplb-agent ./cmd/agent
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(IMAGES_DIR)/eiplb-test-backend ./test/e2e/cluster/backend
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(IMAGES_DIR)/eiplb-test-pause ./test/e2e/cluster/pause
	cd hack/images && $(GO) build -o $(IMAGES_DIR)/imagebuild .
	$(IMAGES_DIR)/imagebuild -o $(IMAGES_DIR)/eiplb-manager.tar -tag $(IMAGE_REPO)/eiplb-manager:$(IMAGE_TAG) \
		-file $(IMAGES_DIR)/eiplb-manager=/eiplb-manager -user 65532:65532 -entrypoint /eiplb-manager
	$(IMAGES_DIR)/imagebuild -o $(IMAGES_DIR)/eiplb-agent.tar -tag $(IMAGE_REPO)/eiplb-agent:$(IMAGE_TAG) \
		-file $(IMAGES_DIR)/eiplb-agent=/eiplb-agent -entrypoint /eiplb-agent
	$(IMAGES_DIR)/imagebuild -o $(IMAGES_DIR)/eiplb-test-backend.tar -tag $(IMAGE_REPO)/eiplb-test-backend:$(IMAGE_TAG) \
		-file $(IMAGES_DIR)/eiplb-test-backend=/backend -user 65532:65532 -entrypoint /backend
	$(IMAGES_DIR)/imagebuild -o $(IMAGES_DIR)/eiplb-test-pause.tar -tag $(IMAGE_REPO)/eiplb-test-pause:$(IMAGE_TAG) \
		-file $(IMAGES_DIR)/eiplb-test-pause=/pause -user 65535:65535 -entrypoint /pause
	@echo "images: $(IMAGES_DIR)/{eiplb-manager,eiplb-agent,eiplb-test-backend,eiplb-test-pause}.tar tagged $(IMAGE_TAG)"

.PHONY: images-docker
images-docker: ## Build the eiplb-manager and eiplb-agent images from build/*.Dockerfile with docker or podman, where one runs.
	@if [ -z "$(CONTAINER_TOOL)" ]; then echo "images-docker: neither docker nor podman is installed" >&2; exit 1; fi
	@if ! $(CONTAINER_TOOL) info >/dev/null 2>&1; then echo "images-docker: $(CONTAINER_TOOL) is installed but its daemon/service does not answer ($(CONTAINER_TOOL) info fails)" >&2; exit 1; fi
	$(CONTAINER_TOOL) build --build-arg VERSION=$(VERSION) -f build/manager.Dockerfile -t $(IMAGE_REPO)/eiplb-manager:$(IMAGE_TAG) .
	$(CONTAINER_TOOL) build --build-arg VERSION=$(VERSION) -f build/agent.Dockerfile -t $(IMAGE_REPO)/eiplb-agent:$(IMAGE_TAG) .

# Where make release writes, and the plugin's platforms.
DIST ?= dist
PLUGIN_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64

.PHONY: release
release: ## Write $(DIST)/: eiplb-vX.yaml (deploy/eiplb.yaml), the alert rules, the packaged chart (helm package) and the kubectl plugin's archives with SHA256SUMS, for the chart's appVersion; offline (GOPROXY=off).
	hack/release.sh "$(DIST)" "$(PLUGIN_PLATFORMS)"

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate DeepCopy code for the API types (pkg/apis).
	@if [ -d pkg/apis ]; then \
		echo "$(CONTROLLER_GEN) object paths=./pkg/apis/..."; \
		$(CONTROLLER_GEN) object paths=./pkg/apis/...; \
	else \
		echo "generate: pkg/apis does not exist yet, skipping"; \
	fi

.PHONY: manifests
manifests: $(CONTROLLER_GEN) $(KUSTOMIZE) ## Generate CRDs (config/crd/bases), RBAC (config/rbac/role.yaml), deploy/eiplb.yaml and the chart's copies (CRDs, alert rules).
	$(CONTROLLER_GEN) crd paths=./pkg/apis/... output:crd:artifacts:config=config/crd/bases
	rm -f deploy/helm/eiplb/crds/*.yaml && cp config/crd/bases/*.yaml deploy/helm/eiplb/crds/
	cp deploy/prometheus/alerts.yaml deploy/helm/eiplb/files/alerts.yaml
	$(CONTROLLER_GEN) rbac:roleName=eiplb-manager paths="./pkg/controller/...;./pkg/manager/...;./pkg/serving/..." output:rbac:artifacts:config=config/rbac
	$(CONTROLLER_GEN) rbac:roleName=eiplb-agent paths="./pkg/agent/...;./pkg/serving/..." output:rbac:artifacts:config=config/rbac/agent
	@if [ -f config/default/kustomization.yaml ] || [ -f config/default/kustomization.yml ] || [ -f config/default/Kustomization ]; then \
		mkdir -p deploy; \
		echo "$(KUSTOMIZE) build config/default > deploy/eiplb.yaml"; \
		$(KUSTOMIZE) build config/default > deploy/eiplb.yaml.tmp && mv deploy/eiplb.yaml.tmp deploy/eiplb.yaml \
			|| { rm -f deploy/eiplb.yaml.tmp; echo "manifests: kustomize build config/default failed" >&2; exit 1; }; \
	else \
		echo "manifests: config/default/kustomization.yaml does not exist yet, skipping deploy/eiplb.yaml"; \
	fi

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Check formatting (gofmt -l), run go vet, and golangci-lint (.golangci.yml, also over the privileged build tag).
	@files=$$(find . -name '*.go' -not -path './bin/*' -not -path './testbin/*' -not -path './.lab/*' -not -path './vendor/*' -not -path './.git/*' -print0 | xargs -0 -r gofmt -l) || { echo "lint: gofmt failed" >&2; exit 1; }; \
	if [ -n "$$files" ]; then \
		echo "lint: these files are not gofmt-formatted (run gofmt -w on them):" >&2; \
		echo "$$files" | sed 's/^/  /' >&2; \
		exit 1; \
	fi
	$(GO) vet ./...
	$(GOLANGCI_LINT) run ./...

.PHONY: verify
verify: generate manifests ## Fail when generated code/manifests are stale (pkg/apis, config/, deploy/) or the plugin or pkg/announce links GoBGP, then lint.
	@changes=$$(git status --porcelain --untracked-files=all -- $(GENERATED_PATHS)) || { echo "verify: git status failed" >&2; exit 1; }; \
	if [ -n "$$changes" ]; then \
		echo "verify: generated files are out of date or uncommitted; run 'make generate manifests' and commit these files:" >&2; \
		echo "$$changes" | sed 's/^/  /' >&2; \
		exit 1; \
	fi; \
	echo "verify: generated files are up to date"
	GO=$(GO) hack/verify-deps.sh
	$(MAKE) --no-print-directory lint

.PHONY: clean
clean: ## Remove bin/ (binaries and installed tools).
	rm -rf bin

##@ Test

.PHONY: k8s-bins
k8s-bins: ## Build etcd + kube-apiserver for envtest (cached outside the tree) and print their folder.
	hack/k8s-binaries.sh

.PHONY: test
test: ## Run unit + envtest tests, the alert rules with promtool, the Helm chart against the API server, docs/routers through FRR's and BIRD's parsers (no root needed; FRR and BIRD from hack/install-deps.sh). Extra flags: TEST_ARGS=...
	@assets=$$(hack/k8s-binaries.sh) || { echo "test: hack/k8s-binaries.sh failed" >&2; exit 1; }; \
	promtool=$$(hack/promtool.sh) || { echo "test: hack/promtool.sh failed" >&2; exit 1; }; \
	helm=$$(hack/helm.sh) || { echo "test: hack/helm.sh failed" >&2; exit 1; }; \
	echo "KUBEBUILDER_ASSETS=$$assets PROMTOOL=$$promtool HELM=$$helm EIPLB_REQUIRE_ROUTERS=1 $(GO) test ./... -count=1 $(TEST_ARGS)"; \
	KUBEBUILDER_ASSETS=$$assets PROMTOOL=$$promtool HELM=$$helm EIPLB_REQUIRE_ROUTERS=1 $(GO) test ./... -count=1 $(TEST_ARGS)

.PHONY: e2e
e2e: ## Run the end-to-end scenarios in the lab (test/e2e/scenarios; root). Extra flags: TEST_ARGS=...
	@if [ "$$(id -u)" != 0 ]; then echo "e2e: must run as root (network namespaces, nftables, FRR); try: sudo make e2e" >&2; exit 1; fi
	@assets=$$(hack/k8s-binaries.sh) || { echo "e2e: hack/k8s-binaries.sh failed" >&2; exit 1; }; \
	echo "KUBEBUILDER_ASSETS=$$assets $(GO) test -tags privileged ./test/e2e/scenarios -count=1 -v -timeout 10m $(TEST_ARGS)"; \
	KUBEBUILDER_ASSETS=$$assets $(GO) test -tags privileged ./test/e2e/scenarios -count=1 -v -timeout 10m $(TEST_ARGS)

.PHONY: e2e-diff
e2e-diff: ## The differential test (root): the same clients against eiplb's data plane and against kube-proxy (ipMode VIP); prints the outcome table. make e2e runs it too.
	@if [ "$$(id -u)" != 0 ]; then echo "e2e-diff: must run as root (network namespaces, nftables, FRR); try: sudo make e2e-diff" >&2; exit 1; fi
	@assets=$$(hack/k8s-binaries.sh) || { echo "e2e-diff: hack/k8s-binaries.sh failed" >&2; exit 1; }; \
	KUBEBUILDER_ASSETS=$$assets $(GO) test -tags privileged ./test/e2e/scenarios -run '^TestDifferential$$' -count=1 -v -timeout 10m $(TEST_ARGS)

# The image tag the cluster lab runs (make images builds it).
CLUSTER_IMAGE_TAG ?= lab

.PHONY: e2e-cluster
e2e-cluster: ## Run the cluster lab's scenarios (test/e2e/realcluster: kubelet + containerd nodes, eiplb from its chart and images; root). First run builds kubelet and kube-scheduler. Extra flags: TEST_ARGS=...
	@if [ "$$(id -u)" != 0 ]; then echo "e2e-cluster: must run as root (network namespaces, containerd, kubelet); try: sudo make e2e-cluster" >&2; exit 1; fi
	@assets=$$(WITH_NODE=1 hack/k8s-binaries.sh) || { echo "e2e-cluster: hack/k8s-binaries.sh failed" >&2; exit 1; }; \
	helm=$$(hack/helm.sh) || { echo "e2e-cluster: hack/helm.sh failed" >&2; exit 1; }; \
	$(MAKE) --no-print-directory images IMAGE_TAG=$(CLUSTER_IMAGE_TAG) >/dev/null || { echo "e2e-cluster: make images failed" >&2; exit 1; }; \
	echo "KUBEBUILDER_ASSETS=$$assets HELM=$$helm EIPLB_IMAGES_DIR=$(IMAGES_DIR) EIPLB_IMAGE_REPO=$(IMAGE_REPO) EIPLB_IMAGE_TAG=$(CLUSTER_IMAGE_TAG) $(GO) test -tags privileged ./test/e2e/realcluster -count=1 -v -timeout 20m $(TEST_ARGS)"; \
	KUBEBUILDER_ASSETS=$$assets HELM=$$helm EIPLB_IMAGES_DIR=$(IMAGES_DIR) EIPLB_IMAGE_REPO=$(IMAGE_REPO) EIPLB_IMAGE_TAG=$(CLUSTER_IMAGE_TAG) $(GO) test -tags privileged ./test/e2e/realcluster -count=1 -v -timeout 20m $(TEST_ARGS)

.PHONY: test-privileged
test-privileged: ## Run the privileged tests (tag privileged: network namespaces, real routers, nftables); needs root.
	@if [ "$$(id -u)" != 0 ]; then \
		echo "test-privileged: must run as root (tests create network namespaces, links and nftables rules); try: sudo make test-privileged" >&2; \
		exit 1; \
	fi
	@assets=$$(hack/k8s-binaries.sh) || { echo "test-privileged: hack/k8s-binaries.sh failed" >&2; exit 1; }; \
	echo "KUBEBUILDER_ASSETS=$$assets $(GO) test -tags privileged $(PRIVILEGED_PKGS) -count=1 -p 1 $(TEST_ARGS)"; \
	KUBEBUILDER_ASSETS=$$assets $(GO) test -tags privileged $(PRIVILEGED_PKGS) -count=1 -p 1 $(TEST_ARGS)

.PHONY: bench-go
bench-go: ## Run the Go micro-benchmarks of pkg/ (allocator, next hops, data-plane computation).
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/...

.PHONY: fuzz
fuzz: ## Run each fuzz target of pkg/ for FUZZTIME (default 10s).
	@found=0; \
	for file in $$(grep -rl --include='*_test.go' '^func Fuzz' pkg 2>/dev/null | sort); do \
		if grep -q '^//go:build.*privileged' "$$file"; then echo "fuzz: skipping $$file (privileged build tag)"; continue; fi; \
		dir=$$(dirname "$$file"); \
		for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$file"); do \
			found=1; \
			echo "==> $$name in ./$$dir"; \
			$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "./$$dir" || exit 1; \
		done; \
	done; \
	if [ "$$found" = 0 ]; then echo "fuzz: no fuzz targets in pkg/"; fi

##@ Tools

.PHONY: tools
tools: $(CONTROLLER_GEN) $(KUSTOMIZE) $(GOLANGCI_LINT) ## Install the pinned tools into bin/tools/.

# go-install-tool: $(1) versioned target file, $(2) package, $(3) version.
# Installs into a temporary GOBIN, then moves the binary to its versioned name
# and points an unversioned symlink (bin/tools/<name>) at it.
define go-install-tool
	@set -e; \
	tmp=$$(mktemp -d "$(TOOLS_DIR)/.install.XXXXXX"); \
	trap 'rm -rf "$$tmp"' EXIT; \
	echo "installing $(2)@$(3) into $(TOOLS_DIR)"; \
	GOBIN="$$tmp" $(GO) install "$(2)@$(3)"; \
	bin=$$(basename "$(2)"); \
	case "$$bin" in v[0-9]*) bin=$$(basename "$$(dirname "$(2)")");; esac; \
	mv "$$tmp/$$bin" "$(1)"; \
	ln -sf "$$(basename "$(1)")" "$(TOOLS_DIR)/$$bin"
endef

$(TOOLS_DIR):
	@mkdir -p $(TOOLS_DIR)

$(CONTROLLER_GEN): | $(TOOLS_DIR)
	$(call go-install-tool,$(CONTROLLER_GEN),sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_TOOLS_VERSION))

$(KUSTOMIZE): | $(TOOLS_DIR)
	$(call go-install-tool,$(KUSTOMIZE),sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))

$(GOLANGCI_LINT): | $(TOOLS_DIR)
	$(call go-install-tool,$(GOLANGCI_LINT),github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION))

# Unversioned names, so `make bin/tools/controller-gen` works as expected.
$(TOOLS_DIR)/controller-gen bin/tools/controller-gen: $(CONTROLLER_GEN)
$(TOOLS_DIR)/kustomize bin/tools/kustomize: $(KUSTOMIZE)
$(TOOLS_DIR)/golangci-lint bin/tools/golangci-lint: $(GOLANGCI_LINT)

##@ Lab

.PHONY: demo
demo: ## The whole system in network namespaces (API server, FRR, 3 nodes, 2 managers, 3 agents, pods, client): bring it up, show it, tear it down (root).
	@if [ "$$(id -u)" != 0 ]; then echo "demo: must run as root (network namespaces, nftables); try: sudo make demo" >&2; exit 1; fi
	@assets=$$(WITH_KUBECTL=1 hack/k8s-binaries.sh) || { echo "demo: hack/k8s-binaries.sh failed" >&2; exit 1; }; \
	KUBEBUILDER_ASSETS=$$assets $(GO) run -tags privileged ./test/e2e/lab -dir .lab/demo

.PHONY: lab-up
lab-up: ## Like demo, but keep the lab running in the background until `make lab-down` (idempotent; root).
	hack/lab.sh up

##@ Benchmarks

.PHONY: bench
bench: ## The system benchmark in the lab (root): one table, p50/p99 next to the targets, also written to bench/results/. BENCH=quick for a smoke run.
	@if [ "$$(id -u)" != 0 ]; then echo "bench: must run as root (network namespaces, nftables, FRR); try: sudo make bench" >&2; exit 1; fi
	@mkdir -p bin; assets=$$(hack/k8s-binaries.sh) || exit 1; \
	EIPLB_BENCH=$(or $(BENCH),1) KUBEBUILDER_ASSETS=$$assets $(GO) test -tags privileged ./test/e2e/bench -count=1 -run TestBench -v -timeout 45m 2>&1 \
		| tee bin/bench.log | grep -E '^(#|Lab of|\||written to|---|ok|FAIL|panic)'

# Extra flags for the benchmark programs, e.g.
# make bench-ipam BENCH_ARGS='-services 500 -burst 200'.
BENCH_ARGS ?=

.PHONY: bench-ipam
bench-ipam: ## IPAM scale scenario: 3 managers, leader killed, 5000 Services, burst (real API server). Flags: BENCH_ARGS=...
	@mkdir -p bin
	$(GO) build -o bin/eiplb-manager ./cmd/manager
	@assets=$$(hack/k8s-binaries.sh) || { echo "bench-ipam: hack/k8s-binaries.sh failed" >&2; exit 1; }; \
	echo "KUBEBUILDER_ASSETS=$$assets $(GO) run ./test/e2e/benchipam $(BENCH_ARGS)"; \
	KUBEBUILDER_ASSETS=$$assets $(GO) run ./test/e2e/benchipam $(BENCH_ARGS)

.PHONY: lab-down
lab-down: ## Stop the lab and remove every namespace, router, file and orphaned API server a lab or crashed test left (root).
	hack/lab.sh down

.PHONY: bench-agent
bench-agent: ## Agent: kernel writes at 10,000 Services (go bench) and, in the lab, node cut -> FIB and data-plane cost (needs root).
	@if [ "$$(id -u)" != 0 ]; then echo "bench-agent: must run as root (nftables, network namespaces)" >&2; exit 1; fi
	$(GO) test -tags privileged -run '^$$' -bench . -benchtime 20x ./pkg/dataplane/nft/ | tee bin/bench-agent.log
	@assets=$$(hack/k8s-binaries.sh) || exit 1; \
	EIPLB_BENCH=1 KUBEBUILDER_ASSETS=$$assets $(GO) test -tags privileged ./test/e2e/agent -count=1 -run TestBenchAgent -v -timeout 20m 2>&1 \
		| tee -a bin/bench-agent.log | grep -E '^(\||---|ok|FAIL)'

.PHONY: bench-bgp
bench-bgp: ## BGP scenario: Service -> next hops in FRR's kernel FIB, single and bursts, ours vs the router's part (needs root).
	@assets=$$(hack/k8s-binaries.sh) || exit 1; \
	EIPLB_BENCH=1 KUBEBUILDER_ASSETS=$$assets $(GO) test -tags privileged ./test/e2e/bgp -count=1 -run TestBenchServiceToFIB -v -timeout 20m 2>&1 \
		| tee bin/bench-bgp.log | grep -E '^(\||Burst|One endpoint|\(| by|---|ok|FAIL)'

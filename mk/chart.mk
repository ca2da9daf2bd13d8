# Packaging: the Helm chart (charts/wattwise), the real Helm CLI built from its Go module, the CRD copies in the
# chart, and the kind end-to-end check (machines with Docker only).
.PHONY: helm-bin helm-path crds-sync crds-sync-check chart-lint chart-template e2e-kind

# Helm v3 from its Go module, cached outside the checkout so every clone shares one build. The latest v3 whose
# go.mod accepts the installed Go. The build lands in a temporary folder renamed into place under a lock, so
# concurrent callers (parallel test sessions) never see a half-written binary; a cached binary costs no `go` call.
HELM_VERSION ?= v3.22.0
# The Kubernetes minor of that release's client-go (its Makefile stamps it; `helm template` and `helm lint`
# assume this cluster version when none is given).
HELM_K8S_MINOR ?= 37
HELM_DIR     := $(or $(WATTWISE_BIN_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/wattwise/bin)/helm-$(HELM_VERSION)
HELM         := $(HELM_DIR)/helm
HELM_LDFLAGS := -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
  $(foreach pkg,pkg/chartutil pkg/lint/rules,-X helm.sh/helm/v3/$(pkg).k8sVersionMajor=1 \
  -X helm.sh/helm/v3/$(pkg).k8sVersionMinor=$(HELM_K8S_MINOR))
CHART        := charts/wattwise

helm-bin: $(HELM) ## build the Helm CLI from its Go module (cached) and print its path
	@echo "$(HELM)"

# The binary itself: build progress goes to stderr, so `make -s chart-template > file` stays clean.
$(HELM):
	@command -v go >/dev/null || { echo "helm $(HELM_VERSION) needs Go to build (no go on PATH)" >&2; exit 2; }
	@mkdir -p "$(dir $(HELM_DIR))"; \
	exec 9>"$(HELM_DIR).lock"; flock 9; \
	if [[ ! -x "$(HELM)" ]]; then \
	  tmp="$$(mktemp -d "$(HELM_DIR).tmp.XXXXXX")"; trap 'rm -rf "$$tmp"' EXIT; \
	  echo "building helm $(HELM_VERSION) into $(HELM_DIR) (minutes on a cold Go cache)" >&2; \
	  GOBIN="$$tmp" GOFLAGS=-trimpath CGO_ENABLED=0 go install -ldflags "$(HELM_LDFLAGS)" \
	    "helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)" >&2; \
	  rm -rf "$(HELM_DIR)"; mv "$$tmp" "$(HELM_DIR)"; trap - EXIT; \
	fi

helm-path: ## print where the Helm CLI lives (nothing is built)
	@echo "$(HELM)"

# The chart's crds/ holds byte-identical copies of crds/*.yaml and of the CRD the operator's deployment needs
# besides (kopf's ClusterKopfPeering, deploy/rbac/kopf-peering-crd.yaml, which crds/ does not hold: not a
# Wattwise API).
PEERING_CRD       := deploy/rbac/kopf-peering-crd.yaml
CHART_PEERING_CRD := $(CHART)/crds/kopf.dev_clusterkopfpeerings.yaml

crds-sync: ## copy crds/*.yaml and the kopf peering CRD into the chart's crds/ (byte-identical copies)
	@rm -f $(CHART)/crds/*.yaml
	@cp crds/*.yaml $(CHART)/crds/
	@cp $(PEERING_CRD) $(CHART_PEERING_CRD)
	@echo "synced $$(ls $(CHART)/crds/*.yaml | wc -l) CRDs into $(CHART)/crds/"

crds-sync-check: ## fail when the chart's CRDs differ from crds/ and the peering CRD
	@diff -r --exclude=$(notdir $(CHART_PEERING_CRD)) crds $(CHART)/crds >/dev/null \
	  && cmp -s $(PEERING_CRD) $(CHART_PEERING_CRD) \
	  || { echo "$(CHART)/crds differs from crds/ or $(PEERING_CRD): run make crds-sync" >&2; exit 1; }

chart-lint: $(HELM) ## helm lint the chart with default and sim values
	@$(HELM) lint --strict $(CHART)
	@$(HELM) lint --strict $(CHART) --set agent.backend=sim

CHART_RELEASE   ?= wattwise
CHART_NAMESPACE ?= wattwise-system

chart-template: $(HELM) ## render the chart to stdout (CHART_RELEASE, CHART_NAMESPACE; CHART_ARGS adds helm flags)
	@$(HELM) template $(CHART_RELEASE) $(CHART) --namespace $(CHART_NAMESPACE) $(CHART_ARGS)

e2e-kind: $(HELM) ## kind cluster + image + chart (sim backend) + a short check; needs Docker and kind
	HELM="$(HELM)" hack/e2e-kind.sh

# Test control plane: etcd, kube-apiserver, kube-scheduler, kubectl and kwok built from their Go modules
# (hack/k8s, hack/etcd, kwok by tag) into a cache folder shared by every clone; see hack/cluster-bins.sh.
.PHONY: cluster-bins cluster-bin-dir cluster

cluster-bins: ## build the control-plane binaries (cached: no work when already built)
	@hack/cluster-bins.sh build >/dev/null

cluster-bin-dir: ## print the folder that holds the control-plane binaries
	@hack/cluster-bins.sh dir

cluster: venv cluster-bins ## run the test control plane in the foreground for kubectl (Ctrl-C stops it)
	$(BIN)/python -m tests.support.controlplane $(CLUSTER_ARGS)

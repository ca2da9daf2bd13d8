# Operator (`wattwise operator`): run it by hand against a cluster, time it.
.PHONY: operator-run operator-bench

operator-run: venv ## run the operator standalone against KUBECONFIG (e.g. `make cluster`'s), on 127.0.0.1:8443
	$(BIN)/wattwise operator --standalone --listen 127.0.0.1:8443

operator-bench: venv ## time one control tick at 10,000 GPUs and the report ingest rate
	$(BIN)/python -m benchmarks operator

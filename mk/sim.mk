# Simulator targets (wattwise/sim). `make demo` (in the Makefile) runs the headline scenario and prints the table.
.PHONY: demo-check demo-json bench-sim

demo-check: venv ## headline scenario; exit 1 if a "done when" criterion fails
	$(BIN)/wattwise simulate --scenario headline --check

demo-json: venv ## headline scenario as one JSON object on stdout
	@$(BIN)/wattwise simulate --scenario headline --json

bench-sim: venv ## simulated seconds per wall second of the headline fleet
	$(BIN)/python -m benchmarks sim

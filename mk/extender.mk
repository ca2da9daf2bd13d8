# Scheduler extender: regenerate the shipped scheduler configuration, run the extender locally.
.PHONY: extender-config extender

extender-config: venv ## regenerate deploy/scheduler/kube-scheduler-config.yaml from schedconfig.py
	$(BIN)/python -m wattwise.scheduler_extender.schedconfig > deploy/scheduler/kube-scheduler-config.yaml

extender: venv ## run the scheduler extender on :8888 (OPERATOR_URL=http://... to point it at an operator)
	$(BIN)/wattwise extender --port 8888 $(if $(OPERATOR_URL),--operator-url $(OPERATOR_URL))

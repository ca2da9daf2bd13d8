# Node agent (`wattwise agent`): regenerate the kubelet PodResources gRPC code from proto/.
.PHONY: agent-proto agent-run

PODRES_PROTO := proto/wattwise/node_agent/podresources/api.proto

agent-proto: venv ## regenerate the committed PodResources gRPC code (api_pb2*.py) from proto/
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. $(PODRES_PROTO)
	@# generated code is not ours to lint or type-check (the .pyi stubs type the messages for mypy)
	sed -i '1i # ruff: noqa\n# mypy: ignore-errors' wattwise/node_agent/podresources/api_pb2.py \
	  wattwise/node_agent/podresources/api_pb2_grpc.py
	sed -i '1i # ruff: noqa\n# mypy: ignore-errors' wattwise/node_agent/podresources/api_pb2.pyi

agent-run: venv ## run the node agent on 8 simulated H100s, metrics on :9402 (no operator: standalone)
	$(BIN)/python -m wattwise.node_agent --backend sim --sim-gpus 8 --sim-model h100 --node-name $$(hostname)

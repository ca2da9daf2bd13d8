"""The kubelet PodResources v1 API: the minimal proto's generated code (`api_pb2*`) and a client."""

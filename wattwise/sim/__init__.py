"""The simulator: simulated GPUs (`gpu`), curves fitted on shipped data (`calibration`), request traces
(`trace`), a fleet of inference replicas with the real policy in the loop (`fleet`), named scenarios
(`scenarios`) and their reports (`report`, `plot`). Everything runs without a GPU or a cluster.
"""

"""Wattwise: keeps a Kubernetes GPU inference cluster inside its facility power budget.

Components live in subpackages (`operator`, `scheduler_extender`, `node_agent`); shared pure code (the CRD
models in `wattwise.crd`, the allocation policy, the simulator) sits beside them. Run roles through
`python -m wattwise <role>` or the `wattwise` console script, never by file path.
"""

__version__ = "0.1.0"

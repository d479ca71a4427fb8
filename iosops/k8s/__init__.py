"""Kubernetes target: render/validate/policy gates and the blue-green deploy with kubectl."""

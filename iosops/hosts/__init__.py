"""SSH hosts of compose envs: `inv provision` (provision.py) and `inv verify-hosts` (verify.py, testinfra)."""

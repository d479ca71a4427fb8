"""Day-2 operations on a deployed env (inv status, logs, exec, db.psql, maintenance, images.prune): the
commands operators type during an incident, on this machine, on SSH hosts (web and data roles) and, where
it applies, on Kubernetes through kubectl. Probes are a command plus a pure parser (probes.py)."""

"""The tools tier: tests that run real programs on this machine but need no service and no Docker engine.

`inv` as a subprocess (the CLI as a user meets it), hadolint, promtool, amtool, nginx -t, kubectl
kustomize, kubernetes-validate, docker-compose config, nft -c, dpkg, make -n, sh with the host-side
scripts. Seconds each, not milliseconds; tests/unit holds what runs in-process only.
`inv ci.test --tier tools` runs them."""

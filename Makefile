# The CI/CD stages as make targets, one-to-one with .github/workflows/ci-cd.yml: each target is ONE
# `inv` call (tests/unit/test_pipeline.py checks the mapping). `make bootstrap` sets the machine up.
INV ?= .venv/bin/inv

.PHONY: bootstrap lint test scan build deploy-staging deploy-prod

bootstrap:
	./scripts/bootstrap.sh

lint:
	$(INV) ci.lint

test:
	$(INV) ci.test

scan:
	$(INV) ci.scan

build:
	$(INV) build --push

deploy-staging:
	$(INV) deploy --env staging

deploy-prod:
	$(INV) deploy --env prod

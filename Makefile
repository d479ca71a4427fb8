# The CI/CD stages as make targets, one-to-one with .github/workflows/ci-cd.yml: each target is ONE
# `inv` call (tests/tools/test_pipeline.py checks the mapping). `make bootstrap` sets the machine up.
# TAG is the release (the tag `inv build --push` made): the workflow passes the build job's output;
# promote-prod and deploy-prod refuse to run without it (prod is Kubernetes: there is no "build it here").
INV ?= .venv/bin/inv
TAG ?=

need_tag = $(if $(TAG),,$(error make $@: TAG is required, e.g. make $@ TAG=<the tag inv build --push made>))

.PHONY: bootstrap lint test scan build deploy-staging promote-prod deploy-prod

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

# Without TAG, staging (compose hosts) builds and deploys the current tree, as `inv deploy` does.
deploy-staging:
	$(INV) deploy --env staging$(if $(TAG), --tag "$(TAG)")

promote-prod:
	$(need_tag)$(INV) images.promote --tag "$(TAG)" --from-env staging --to-env prod

deploy-prod:
	$(need_tag)$(INV) deploy --env prod --tag "$(TAG)"

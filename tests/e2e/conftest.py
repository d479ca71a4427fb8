# e2e tests reuse the integration fixtures for images (built once, "no change" afterwards).
from tests.integration.conftest import docker_api, offline_images  # noqa: F401  pytest fixtures, re-exported for this tier

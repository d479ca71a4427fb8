# The infra tier reuses the integration fixtures (real engine, images, stack).
from tests.integration.conftest import api_image, build_cas, docker_api, offline_images, stack, stack_env  # noqa: F401  pytest fixtures, re-exported for this tier

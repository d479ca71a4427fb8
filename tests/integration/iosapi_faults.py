"""TEST ONLY: the real API plus a route that always raises, to make unhandled errors on demand.

It never reaches the production image: `fault_image()` (tests/integration/conftest.py) builds an image FROM
a built API image, copies this file to /app and points gunicorn at `iosapi_faults:app`. Everything else
(middleware, handlers, datastores) is the app as shipped.
"""
from iosapi.main import app


@app.get("/_test/fail", include_in_schema=False)
async def fail() -> dict:
    raise RuntimeError("injected failure (test image only)")

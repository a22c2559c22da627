"""The application factory: settings in, the ASGI app the server runs out.

`create_app` builds the shared upstream, the FastAPI app for endpoints of your own (`api`), and
`Service`, which answers the relay prefixes itself and hands every other request to `api`. Add
your routers to `api` below.
"""

from fastapi import FastAPI

from {{ cookiecutter.package_name }}.apidocs import install_docs
from {{ cookiecutter.package_name }}.errors import install_error_handlers
{%- if cookiecutter.metrics %}
from {{ cookiecutter.package_name }}.metrics import Metrics
{%- endif %}
from {{ cookiecutter.package_name }}.observability import configure_logging
from {{ cookiecutter.package_name }}.openapi import install_openapi
{%- if cookiecutter.metrics and cookiecutter.tracing %}
from {{ cookiecutter.package_name }}.pool import Pool
{%- endif %}
from {{ cookiecutter.package_name }}.routes import health, items
from {{ cookiecutter.package_name }}.service import RELAYS, Service
from {{ cookiecutter.package_name }}.settings import Settings, load_settings
{%- if cookiecutter.tracing %}
from {{ cookiecutter.package_name }}.tracing import Tracing
{%- endif %}
{%- if cookiecutter.metrics and cookiecutter.tracing %}
from {{ cookiecutter.package_name }}.transport import ConnectionPool
{%- endif %}
from {{ cookiecutter.package_name }}.upstream import Upstream, lifespan_for


{% if cookiecutter.tracing -%}
def create_app(settings: Settings | None = None, tracing: Tracing | None = None) -> Service:
    """Build the app; tests pass their own settings and tracing, production reads the
    environment."""
{%- else -%}
def create_app(settings: Settings | None = None) -> Service:
    """Build the app; tests pass their own settings, production reads the environment."""
{%- endif %}
    settings = settings or load_settings()
    configure_logging(settings)
{%- if cookiecutter.metrics %}
    metrics = Metrics()
{%- endif %}
{%- if cookiecutter.tracing %}
    tracing = tracing or Tracing.from_environment()
{%- endif %}
{%- if cookiecutter.metrics and cookiecutter.tracing %}

    def instrument(pool: ConnectionPool) -> Pool:
        """Each upstream call measured, then traced."""
        return tracing.traced(metrics.measured(pool))

    upstream = Upstream(settings, instrument)
{%- elif cookiecutter.metrics %}
    upstream = Upstream(settings, metrics.measured)
{%- elif cookiecutter.tracing %}
    upstream = Upstream(settings, tracing.traced)
{%- else %}
    upstream = Upstream(settings)
{%- endif %}
    lifespan = lifespan_for(upstream, settings)
    api = FastAPI(
        title={{ cookiecutter.project_name | tojson }},
        lifespan=lifespan,
        # apidocs.py serves the pages, with no CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(api)
    for router in [health.router, items.router]:
        api.include_router(router)
{%- if cookiecutter.metrics %}
    metrics.install(api, upstream.breaker, upstream.tally)
{%- endif %}
    install_openapi(api, RELAYS)
    install_docs(api)
{%- set observers = (", metrics" if cookiecutter.metrics else "") + (", tracing" if cookiecutter.tracing else "") %}
    return Service(api, upstream, settings{{ observers }})

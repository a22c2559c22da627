"""The application factory: settings in, a ready FastAPI app out."""
{%- set both = cookiecutter.metrics and cookiecutter.tracing %}

{% if both -%}
{{ cookiecutter.__httpx_import }}
{% endif -%}
from fastapi import FastAPI

from {{ cookiecutter.package_name }}.auth import CallerKeys
from {{ cookiecutter.package_name }}.errors import install_error_handlers
from {{ cookiecutter.package_name }}.limits import HeaderSizeLimit
{%- if cookiecutter.metrics %}
from {{ cookiecutter.package_name }}.metrics import Metrics
{%- endif %}
from {{ cookiecutter.package_name }}.observability import RequestLogMiddleware, configure_logging
from {{ cookiecutter.package_name }}.openapi import install_openapi
{%- set routes = {"both": "buffered, health, items, stream", "stream": "health, items, stream", "buffered": "buffered, health, items"} %}
{%- set relays = {"both": "buffered.router, stream.router", "stream": "stream.router", "buffered": "buffered.router"} %}
from {{ cookiecutter.package_name }}.routes import {{ routes[cookiecutter.response_mode] }}
from {{ cookiecutter.package_name }}.settings import Settings, load_settings
{%- if cookiecutter.tracing %}
from {{ cookiecutter.package_name }}.tracing import Tracing
{%- endif %}
{%- if both %}
from {{ cookiecutter.package_name }}.transport import UpstreamTransport
{%- endif %}
from {{ cookiecutter.package_name }}.upstream import lifespan_for


{% if cookiecutter.tracing -%}
def create_app(settings: Settings | None = None, tracing: Tracing | None = None) -> FastAPI:
    """Build the app; tests pass their own settings and tracing, production reads the
    environment."""
{%- else -%}
def create_app(settings: Settings | None = None) -> FastAPI:
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
{%- if both %}

    def instrument(pool: UpstreamTransport) -> httpx.AsyncBaseTransport:
        """Each upstream call measured, then traced."""
        return tracing.traced(metrics.measured(pool))
{% endif %}
{%- set instrument = ", instrument" if both else (", metrics.measured" if cookiecutter.metrics else (", tracing.traced" if cookiecutter.tracing else "")) %}
{%- if cookiecutter.tracing %}
    app = FastAPI(
        title={{ cookiecutter.project_name | tojson }},
        lifespan=lifespan_for(settings{{ instrument }}),
        telemetry=tracing.telemetry(),
    )
{%- else %}
    app = FastAPI(title={{ cookiecutter.project_name | tojson }}, lifespan=lifespan_for(settings{{ instrument }}))
{%- endif %}
    if keys := settings.caller_keys():
        app.add_middleware(CallerKeys, keys=keys)
    app.add_middleware(HeaderSizeLimit, max_bytes=settings.max_header_bytes)
    relays = [{{ relays[cookiecutter.response_mode] }}]
{%- if cookiecutter.metrics %}
    # Measures what the callers see, refusals included.
    metrics.install(app, relays)
{%- endif %}
    # Added last, so it runs first: even refused requests get an id and a log line.
    app.add_middleware(RequestLogMiddleware)
    install_error_handlers(app)
    # The relays first: every route tried before the one that matches costs each request
    # microseconds, and the relays carry nearly all of them.
    for router in [*relays, health.router, items.router]:
        app.include_router(router)
    install_openapi(app, relays)
    return app

"""The application factory: settings in, a ready FastAPI app out."""

from fastapi import FastAPI

from {{ cookiecutter.package_name }}.errors import install_error_handlers
from {{ cookiecutter.package_name }}.limits import HeaderSizeLimit
from {{ cookiecutter.package_name }}.observability import RequestLogMiddleware, configure_logging
{%- set routes = {"both": "buffered, health, stream", "stream": "health, stream", "buffered": "buffered, health"} %}
from {{ cookiecutter.package_name }}.routes import {{ routes[cookiecutter.response_mode] }}
from {{ cookiecutter.package_name }}.settings import Settings, load_settings
from {{ cookiecutter.package_name }}.upstream import lifespan_for


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; tests pass their own settings, production reads the environment."""
    settings = settings or load_settings()
    configure_logging(settings)
    app = FastAPI(title={{ cookiecutter.project_name | tojson }}, lifespan=lifespan_for(settings))
    app.add_middleware(HeaderSizeLimit, max_bytes=settings.max_header_bytes)
    # Added last, so it runs first: even refused requests get an id and a log line.
    app.add_middleware(RequestLogMiddleware)
    install_error_handlers(app)
    app.include_router(health.router)
{%- if cookiecutter.response_mode != "buffered" %}
    app.include_router(stream.router)
{%- endif %}
{%- if cookiecutter.response_mode != "stream" %}
    app.include_router(buffered.router)
{%- endif %}
    return app

"""The application factory: settings in, a ready FastAPI app out."""

from fastapi import FastAPI

from {{ cookiecutter.package_name }}.auth import CallerKeys
from {{ cookiecutter.package_name }}.errors import install_error_handlers
from {{ cookiecutter.package_name }}.limits import HeaderSizeLimit
from {{ cookiecutter.package_name }}.observability import RequestLogMiddleware, configure_logging
from {{ cookiecutter.package_name }}.openapi import install_openapi
{%- set routes = {"both": "buffered, health, items, stream", "stream": "health, items, stream", "buffered": "buffered, health, items"} %}
{%- set relays = {"both": "buffered.router, stream.router", "stream": "stream.router", "buffered": "buffered.router"} %}
from {{ cookiecutter.package_name }}.routes import {{ routes[cookiecutter.response_mode] }}
from {{ cookiecutter.package_name }}.settings import Settings, load_settings
from {{ cookiecutter.package_name }}.upstream import lifespan_for


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; tests pass their own settings, production reads the environment."""
    settings = settings or load_settings()
    configure_logging(settings)
    app = FastAPI(title={{ cookiecutter.project_name | tojson }}, lifespan=lifespan_for(settings))
    if keys := settings.caller_keys():
        app.add_middleware(CallerKeys, keys=keys)
    app.add_middleware(HeaderSizeLimit, max_bytes=settings.max_header_bytes)
    # Added last, so it runs first: even refused requests get an id and a log line.
    app.add_middleware(RequestLogMiddleware)
    install_error_handlers(app)
    relays = [{{ relays[cookiecutter.response_mode] }}]
    # The relays first: every route tried before the one that matches costs each request
    # microseconds, and the relays carry nearly all of them.
    for router in [*relays, health.router, items.router]:
        app.include_router(router)
    install_openapi(app, relays)
    return app

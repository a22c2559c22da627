"""The API's pages, `/docs` (Swagger UI) and `/redoc` (ReDoc), with their scripts and styles.

FastAPI's own pages load Swagger UI and ReDoc from a public CDN and start Swagger UI with an
inline script: a blank page wherever only the service can be reached (an air-gapped cluster,
strict egress) or a Content-Security-Policy forbids inline scripts. Here the assets come from
the fastapi-offline package, which ships them (its `static` folder), and Swagger UI starts from
a file of this package (`static/swagger-init.js`). Every URL in the pages is relative, so they
also work behind a proxy that serves the service under a path prefix. The pages send their own
Content-Security-Policy, as strict as the two UIs allow: they set styles inline, and ReDoc runs
its search in a worker made from a `blob:` URL.
"""

from html import escape

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

# Where the pages' scripts and styles are served; the pages name them relative to themselves.
ASSETS = "/docs-assets"
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

SWAGGER_UI = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - Swagger UI</title>
<link rel="icon" href="{assets}/favicon.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/swagger-init.js"></script>
</body>
</html>
"""

REDOC = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - ReDoc</title>
<link rel="icon" href="{assets}/favicon.png">
</head>
<body>
<redoc spec-url="{openapi}"></redoc>
<script src="{assets}/redoc.standalone.js"></script>
</body>
</html>
"""


def install_docs(app: FastAPI) -> None:
    """Serve `/docs`, `/redoc` and their assets, in place of FastAPI's own pages (which `app` is
    built without: `docs_url=None, redoc_url=None`)."""
    assert app.openapi_url is not None, "the pages draw the API's description"
    # The pages are at the root, as the description is: its URL relative to them.
    fields = {
        "title": escape(app.title),
        "openapi": escape(app.openapi_url.lstrip("/")),
        "assets": ASSETS.lstrip("/"),
    }
    headers = {"content-security-policy": CONTENT_SECURITY_POLICY}
    swagger_ui = SWAGGER_UI.format(**fields)
    redoc = REDOC.format(**fields)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui_page() -> HTMLResponse:
        return HTMLResponse(swagger_ui, headers=headers)

    @app.get("/redoc", include_in_schema=False)
    async def redoc_page() -> HTMLResponse:
        return HTMLResponse(redoc, headers=headers)

    # This package's start-up script first, then the assets fastapi-offline ships.
    packages: list[str | tuple[str, str]] = [
        ("{{ cookiecutter.package_name }}", "static"),
        ("fastapi_offline", "static"),
    ]
    app.mount(ASSETS, StaticFiles(packages=packages), name="docs-assets")

"""Not a way to start the service: run `{{ cookiecutter.project_slug }}` (or `python -m {{ cookiecutter.package_name }}`).

`uvicorn {{ cookiecutter.package_name }}.main:app` and `fastapi run` would serve the app with uvicorn's
defaults, under which it would pass a chunked request's trailers upstream as headers, believe
any local caller's X-Forwarded-For, log each request twice and wait forever on shutdown. So this
module stops them, with one line that says how to start the service (`server.py`).
"""

raise SystemExit(
    "Start the service with `{{ cookiecutter.project_slug }}` (or `python -m {{ cookiecutter.package_name }}`), which sets up "
    "the server it needs; `uvicorn {{ cookiecutter.package_name }}.main:app` and `fastapi run` cannot."
)

"""The ASGI entry point: `uvicorn {{ cookiecutter.package_name }}.main:app`."""

from {{ cookiecutter.package_name }}.app import create_app

app = create_app()

"""{{ cookiecutter.project_name }}.

A FastAPI service that relays requests to an upstream HTTP API through one shared client.
"""

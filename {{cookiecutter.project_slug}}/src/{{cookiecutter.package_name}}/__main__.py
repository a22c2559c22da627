"""`python -m {{ cookiecutter.package_name }}`: the same as the `{{ cookiecutter.project_slug }}` command."""

from {{ cookiecutter.package_name }}.server import main

# Guarded: worker processes import this module again as they start.
if __name__ == "__main__":
    raise SystemExit(main())

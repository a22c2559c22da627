"""Bad prompt answers stop generation with a clear line and leave nothing behind."""

from pathlib import Path

import pytest

from tests.projects import render


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("project_slug", "Not A Slug"),
        ("package_name", "import"),
        ("author_email", "nobody"),
        ("upstream_base_url", "ftp://files.example.com"),
        ("upstream_base_url", "https://api.example.com/v1?key=secret"),
        ("description", '"""; import os; os.system("touch pwned") #\nsecond line'),
    ],
)
def test_bad_answer_stops_generation_and_leaves_no_directory(tmp_path: Path, field: str, value: str) -> None:
    result = render(tmp_path, {field: value})
    assert result.returncode != 0
    assert f"error: {field}={value!r}: " in result.stderr
    assert list(tmp_path.iterdir()) == []
    assert not list(Path.cwd().glob("pwned"))


@pytest.mark.parametrize(("field", "value"), [("response_mode", "sometimes"), ("metrics", "maybe")])
def test_answer_outside_the_choices_is_refused_naming_the_field(
    tmp_path: Path, field: str, value: str
) -> None:
    """cookiecutter itself refuses these, before the hooks run; its last line names the field."""
    result = render(tmp_path, {field: value})
    assert result.returncode != 0
    assert field in (result.stdout + result.stderr).strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []

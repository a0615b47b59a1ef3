from pathlib import Path

from agentline.settings_doc import replace_table

ROOT = Path(__file__).resolve().parents[2]


def test_readme_configuration_table_is_current():
    readme = (ROOT / "README.md").read_text()
    assert replace_table(readme) == readme, (
        "run: uv run python -m agentline.settings_doc --write README.md"
    )


def test_readme_shows_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make dev" in readme and "make test" in readme

"""README's config reference is generated from the config models and cannot drift."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from monitor import config as cfg
from monitor.notify import PROVIDERS
from monitor.notify.alertmanager import AlertmanagerConfig
from monitor.notify.log import LogNotifierConfig
from monitor.notify.opsgenie import OpsgenieConfig
from monitor.notify.pagerduty import PagerDutyConfig
from monitor.notify.slack import SlackConfig
from monitor.notify.webhook import WebhookConfig
from tools import config_reference as docs

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FIX = "run `.venv/bin/python tools/config_reference.py --write README.md`"

# The models the brief names; sections() must find each of them from Config.
EXPECTED_SECTIONS = [
    cfg.Config, cfg.MonitorSettings, cfg.Defaults, cfg.PlatformConfig, cfg.HttpRules,
    cfg.Match, cfg.AbsentRule, cfg.ErrorRule, cfg.AccountConfig, PagerDutyConfig,
    OpsgenieConfig, SlackConfig, WebhookConfig, AlertmanagerConfig,
    LogNotifierConfig, cfg.Routing, cfg.Route, cfg.RouteMatch,
]


def _section_text(reference: str, model: type) -> str:
    start = reference.index(f'<a id="{docs.anchor(model)}"></a>')
    end = reference.find('<a id="', start + 1)
    return reference[start:end if end > 0 else None]


def test_readme_section_is_the_generated_reference() -> None:
    current = docs.extract_section(README.read_text(encoding="utf-8"))
    assert current.strip() == docs.config_reference().strip(), \
        f"README's config reference is out of date: {FIX}"


def test_every_config_model_is_a_section() -> None:
    found = docs.sections()
    missing = [m.__name__ for m in EXPECTED_SECTIONS if m not in found]
    assert not missing


def test_every_field_of_every_model_appears_in_its_section() -> None:
    reference = docs.config_reference()
    for model in docs.sections():
        text = _section_text(reference, model)
        for attribute, info in docs.model_fields(model).items():
            name = info.alias or attribute
            assert re.search(rf"^\| `{re.escape(name)}` \|", text, re.MULTILINE), \
                f"{model.__name__}.{attribute} is missing from the reference"


def test_every_field_has_a_description() -> None:
    undocumented = [f"{model.__name__}.{row.attribute}"
                    for model in docs.sections()
                    for row in docs.section_doc(model).fields
                    if row.description == docs.UNDOCUMENTED]
    assert not undocumented, (
        f"add Field(description=...) to the model's field for: {', '.join(undocumented)}; "
        f"then {FIX}")


def test_every_description_and_intro_is_the_models_own() -> None:
    """The generator describes nothing itself, so a renamed or removed field takes its
    description along: each row is its field's (or its base class field's) description and
    each intro its model's docstring."""
    for model in docs.sections():
        doc = docs.section_doc(model)
        assert doc.intro, f"{model.__name__} needs a docstring: its first paragraph is the intro"
        assert doc.intro.split(" Default routing")[0] in " ".join((model.__doc__ or "").split())
        for row in doc.fields:
            own = [docs.model_fields(klass)[row.attribute].description
                   for klass in model.__mro__ if docs.is_section(klass)
                   and row.attribute in docs.model_fields(klass)]
            assert row.description == next(d for d in own if d), (model, row.attribute)


def test_notifier_sections_come_from_the_registry_and_say_whether_they_page() -> None:
    reference = docs.config_reference()
    for cls in PROVIDERS:
        text = _section_text(reference, cls.config_model)
        assert f"#### `notifiers.NAME` with `type: {cls.type}` ({cls.config_model.__name__})" \
            in text
        assert ("sends it **pages**" if cls.pages else "sends it **chat**") in text


def test_types_and_defaults_read_like_the_yaml() -> None:
    monitor = _section_text(docs.config_reference(), cfg.MonitorSettings)
    assert "| `shutdown_grace` | duration | `5s` |" in monitor
    assert "| `listen_port` | integer (0 to 65535) | `9464` |" in monitor
    defaults = _section_text(docs.config_reference(), cfg.Defaults)
    assert "| `max_body_bytes` | size | `1MiB` |" in defaults
    assert "| `interval` | duration | `1m` |" in defaults
    pagerduty = _section_text(docs.config_reference(), PagerDutyConfig)
    assert "`routing_key_file`" in pagerduty and "**required**" in pagerduty
    route = _section_text(docs.config_reference(), cfg.Route)
    assert "| `continue` |" in route, "fields are listed by their YAML alias"
    routing = _section_text(docs.config_reference(), cfg.Routing)
    assert "| `max_age` | duration | `1d` |" in routing


@pytest.mark.parametrize(("seconds", "text"), [
    (0.25, "250ms"), (5.0, "5s"), (90.0, "90s"), (300.0, "5m"), (3600.0, "1h"),
    (86400.0, "1d"), (5400.0, "90m"),
])
def test_durations_are_printed_as_the_config_writes_them(seconds: float, text: str) -> None:
    assert docs.format_duration(seconds) == text
    assert cfg.parse_duration(text) == seconds


def test_a_new_field_shows_up_undocumented() -> None:
    class Extra(BaseModel):
        """A model not in the config."""

        brand_new: int = 3

    doc = docs.section_doc(Extra)
    assert [(f.name, f.type, f.default, f.description) for f in doc.fields] == [
        ("brand_new", "integer", "`3`", docs.UNDOCUMENTED)]
    assert doc.intro == "A model not in the config."


def test_write_replaces_only_the_marked_section(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n\n{docs.START}\nold text\n{docs.END}\n\nafter\n")
    assert docs.main(["--check", str(readme)]) == 1
    assert docs.main(["--write", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n\n") and text.endswith(f"{docs.END}\n\nafter\n")
    assert "old text" not in text
    assert docs.extract_section(text).strip() == docs.config_reference().strip()
    assert docs.main(["--check", str(readme)]) == 0
    assert docs.main(["--write", str(readme)]) == 0
    assert readme.read_text() == text, "writing twice changes nothing"


def test_write_refuses_a_file_without_markers(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    assert docs.main(["--write", str(readme)]) == 2
    assert "markers" in capsys.readouterr().err
    assert readme.read_text() == "# no markers\n"


def test_module_prints_the_reference() -> None:
    result = subprocess.run([sys.executable, "tools/config_reference.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True, timeout=60)
    assert result.stdout == docs.config_reference()

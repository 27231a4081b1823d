"""Config: typed values, and mistakes reported precisely (file, key, what is wrong, exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.channels import configure
from bot.config import ConfigError, load_config, parse_duration
from tests.support.cli import run_cli


def load(tmp_path: Path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return configure(load_config(path))


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, text)
    message = str(raised.value)
    assert message.startswith(str(tmp_path / "config.toml") + ": ")
    return message


def test_every_key_is_optional(tmp_path):
    config = load(tmp_path, "")

    assert config.bot.interval == 900
    assert config.source.format is None
    assert config.guard.max_missing_share == 0.10
    assert config.guard.removal_confirmations == 2
    assert config.alerts.digest_threshold == 5
    assert config.source.max_bytes == 50 * 1024 * 1024
    assert config.console_enabled


def test_values_are_read_and_typed(tmp_path):
    config = load(
        tmp_path,
        '[bot]\nstate_dir = "data"\ninterval = "30s"\n'
        '[source]\nurl = "file:///srv/map.kml"\nformat = "kml"\ntimeout = "1m"\n'
        "[guard]\nmax_missing_share = 0\nremoval_confirmations = 3\n",
    )

    assert config.state_dir == tmp_path / "data"
    assert config.db_path == tmp_path / "data" / "ringwatch.db"
    assert (config.bot.interval, config.source.timeout) == (30, 60)
    assert config.guard.max_missing_share == 0.0
    assert config.guard.removal_confirmations == 3


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h", 3600), ("2d", 172800), ("0.05s", 0.05), ("250ms", 0.25),
     (" 1 h ", 3600), (45, 45)],
)  # fmt: skip
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


def test_jitter_and_backoff_can_be_turned_off(tmp_path):
    config = load(tmp_path, '[bot]\njitter = "0s"\n[source]\nbackoff = 0\n')

    assert (config.bot.jitter, config.source.backoff) == (0, 0)


def test_a_negative_duration_is_refused(tmp_path):
    assert "bot.jitter: a duration cannot be negative" in error(tmp_path, "[bot]\njitter = -5\n")


def test_templates_dir_is_relative_to_the_config_file_and_must_exist(tmp_path):
    (tmp_path / "my-templates").mkdir()
    config = load(tmp_path, '[alerts]\ntemplates_dir = "my-templates"\n')
    assert config.templates_path == tmp_path / "my-templates"

    message = error(tmp_path, '[alerts]\ntemplates_dir = "my-templats"\n')
    assert f"alerts.templates_dir names no directory: {tmp_path / 'my-templats'}" in message


def test_a_list_of_the_wrong_type_is_named_plainly(tmp_path):
    message = error(tmp_path, '[telegram]\nadmins = ["me"]\n')

    assert "telegram.admins must be a list of integers, got ['me']" in message


def test_a_relative_source_path_is_relative_to_the_config_file(tmp_path):
    config = load(tmp_path, '[source]\nurl = "exports/map.kml"\n')

    assert config.source.url == str(tmp_path / "exports" / "map.kml")
    assert load(tmp_path, '[source]\nurl = "https://example.org/m.kml"\n').source.url == (
        "https://example.org/m.kml"
    )


def test_a_field_mapping_to_an_unknown_field_is_refused(tmp_path):
    message = error(tmp_path, '[source.fields]\nnam = "Agency"\n')

    assert "source.fields.nam is not a field ringwatch knows (did you mean 'name'?)" in message


def test_an_unknown_key_is_named_with_a_suggestion(tmp_path):
    message = error(tmp_path, "[guard]\nmax_mising_share = 0.2\n")

    assert "unknown key guard.max_mising_share (did you mean 'max_missing_share'?)" in message


def test_an_unknown_key_without_a_close_match_lists_the_known_keys(tmp_path):
    message = error(tmp_path, "[guard]\nzzz = 1\n")

    assert "unknown key guard.zzz" in message
    assert "removal_confirmations" in message


def test_an_unknown_section_is_named_with_a_suggestion(tmp_path):
    message = error(tmp_path, "[sorce]\nurl = 'x'\n")

    assert "unknown section [sorce] (did you mean 'source'?)" in message


def test_a_wrong_type_says_what_was_expected(tmp_path):
    message = error(tmp_path, '[guard]\nremoval_confirmations = "two"\n')

    assert "guard.removal_confirmations must be an integer, got 'two'" in message


def test_a_bool_is_not_an_integer(tmp_path):
    message = error(tmp_path, "[guard]\nremoval_confirmations = true\n")

    assert "guard.removal_confirmations must be an integer" in message


def test_a_bad_duration_is_explained(tmp_path):
    message = error(tmp_path, '[bot]\ninterval = "every 15 minutes"\n')

    assert "bot.interval" in message
    assert "is not a duration such as '30s', '15m' or '1h'" in message


def test_a_zero_interval_is_refused(tmp_path):
    assert "bot.interval: a duration must be positive" in error(
        tmp_path, '[bot]\ninterval = "0s"\n'
    )


@pytest.mark.parametrize("value", ["inf", "1e400"])
def test_an_infinite_interval_is_refused(tmp_path, value):
    assert "bot.interval: a duration must be a finite number of seconds" in error(
        tmp_path, f"[bot]\ninterval = {value}\n"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('send_grace = "6s"', "bot.send_grace must not be longer than bot.shutdown_grace"),
        ('shutdown_grace = "1s"', "bot.send_grace must not be longer than bot.shutdown_grace"),
        ('shutdown_grace = "a while"', "bot.shutdown_grace: 'a while' is not a duration"),
    ],
)
def test_the_shutdown_graces_are_checked(tmp_path, text, expected):
    assert expected in error(tmp_path, f"[bot]\n{text}\n")


def test_the_removed_max_attempts_points_to_give_up_after(tmp_path):
    message = error(tmp_path, "[alerts]\nmax_attempts = 8\n")
    assert "alerts.max_attempts was removed" in message and "alerts.give_up_after" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max_in_flight = 0", "alerts.max_in_flight must be at least 1"),
        ('send_timeout = "0s"', "alerts.send_timeout: a duration must be positive"),
        ('give_up_after = "soon"', "alerts.give_up_after: 'soon' is not a duration"),
    ],
)
def test_delivery_limits_are_checked(tmp_path, text, expected):
    assert expected in error(tmp_path, f"[alerts]\n{text}\n")


def test_a_bad_format_names_the_choices(tmp_path):
    message = error(tmp_path, '[source]\nformat = "xml"\n')

    assert "source.format must be one of kml, json, csv, got 'xml'" in message


def test_a_share_above_one_is_refused(tmp_path):
    message = error(tmp_path, "[guard]\nmax_missing_share = 10\n")

    assert "guard.max_missing_share must be between 0 and 1" in message


def test_an_unknown_alert_field_is_named(tmp_path):
    message = error(tmp_path, '[alerts]\nalert_fields = ["name", "video_request"]\n')

    assert "alerts.alert_fields names an unknown field 'video_request'" in message
    assert "did you mean 'video_requests'?" in message


def test_a_section_that_is_not_a_table(tmp_path):
    assert "[guard] must be a table" in error(tmp_path, 'guard = "strict"\n')


def test_invalid_toml_is_reported_with_its_position(tmp_path):
    message = error(tmp_path, "[bot\ninterval = 1\n")

    assert "not valid TOML" in message and "line 1" in message


def test_an_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


def test_the_config_file_can_come_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "elsewhere.toml"
    path.write_text("[guard]\nremoval_confirmations = 4\n", encoding="utf-8")
    monkeypatch.setenv("RINGWATCH_CONFIG", str(path))

    assert load_config().guard.removal_confirmations == 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[guard]\nmax_mising_share = 0.2\n", "did you mean 'max_missing_share'?"),
        ('[bot]\ninterval = "soon"\n', "bot.interval"),
        ('[source]\nformat = "xml"\n', "source.format"),
        ("[telegramm]\n", "unknown section [telegramm]"),
        ('[source]\nallow_hosts = ["https://evil.example/"]\n', "source.allow_hosts lists"),
        ('[source]\ndeadline = "0s"\n', "source.deadline: a duration must be positive"),
        ("[telegram]\ncommands_per_user = 0\n", "telegram.commands_per_user must be at least 1"),
    ],
)
def test_the_cli_reports_config_errors_with_exit_2_and_no_traceback(tmp_path, text, expected):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")

    result = run_cli("check-config", "--config", str(path))

    assert result.returncode == 2
    assert result.stderr.startswith(f"ringwatch: {path}: ")
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_the_cli_config_path_from_the_environment(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[guard]\nremoval_confirmations = 0\n", encoding="utf-8")

    result = run_cli("poll", env={"RINGWATCH_CONFIG": str(path)})

    assert result.returncode == 2
    assert "guard.removal_confirmations must be at least 1" in result.stderr

"""The `segstream` command: its commands, and clear errors for bad settings."""

from __future__ import annotations

import pytest

from services.cli import build_parser, main


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("infra", "ops", "demo"):
        assert f"    {command} " in out


def test_infra_actions() -> None:
    parser = build_parser()
    for action in ("up", "down", "status", "prepare"):
        assert parser.parse_args(["infra", action]).action == action
    with pytest.raises(SystemExit):
        parser.parse_args(["infra", "restart"])


def test_bad_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SEGSTREAM_KAFKA_PORT", "not-a-port")
    assert main(["infra", "status"]) == 2
    err = capsys.readouterr().err
    assert "bad settings" in err and "kafka_port" in err


def test_infra_error_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no java, no mvn
    monkeypatch.setenv("SEGSTREAM_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["infra", "prepare"]) == 1
    err = capsys.readouterr().err
    assert "java not found" in err and "apt-get install" in err


def test_workers_name_a_taken_metrics_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("SEGSTREAM_METRICS_PORT", str(taken.getsockname()[1]))
        assert main(["ingest"]) == 1
    err = capsys.readouterr().err
    assert "ingest: cannot serve metrics" in err and "SEGSTREAM_METRICS_PORT" in err


def test_streams_and_watch_need_an_api_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SEGSTREAM_API_TOKEN", raising=False)
    assert main(["streams", "ls"]) == 1
    assert "SEGSTREAM_API_TOKEN" in capsys.readouterr().err
    assert main(["watch", "door"]) == 1
    assert "SEGSTREAM_API_TOKEN" in capsys.readouterr().err


def test_streams_report_an_api_that_does_not_answer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SEGSTREAM_API_TOKEN", "t" * 20)
    monkeypatch.setenv("SEGSTREAM_API_URL", "http://127.0.0.1:9")
    assert main(["streams", "ls"]) == 1
    assert "the API at http://127.0.0.1:9 did not answer" in capsys.readouterr().err
    for command in (["streams", "rm", "x"], ["watch", "x", "--count", "3"], ["api"]):
        assert build_parser().parse_args(command)


def test_demo_runs_the_model_it_is_given(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(["demo"]).model == "yolact_r18_demo"
    assert parser.parse_args(["demo", "--model", "panet_r18_demo"]).model == "panet_r18_demo"
    assert main(["demo", "--model", "no_such_model"]) == 2  # refused before anything starts
    err = capsys.readouterr().err
    assert "unknown model 'no_such_model'" in err and "panet_r18_demo" in err

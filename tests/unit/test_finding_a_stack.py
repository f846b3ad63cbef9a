"""How a client finds a stack (pipeline/client.py): each URL from a flag, else the variable
`wordpipe up` printed, else the default stack's; the token from $WORDPIPE_TOKEN, else
$WORDPIPE_TOKENS, else $WORDPIPE_TOKEN_FILE's file, else the default stack's file."""

from __future__ import annotations

import pytest

from pipeline import config
from pipeline.cli.main import parser
from pipeline.cli.remote import _client
from pipeline.client import Client, RequestFailed, default_token, save_token, token_file
from pipeline.kafka.broker import free_port

VARIABLES = {
    "ingest_url": "WORDPIPE_INGEST_URL",
    "results_url": "WORDPIPE_RESULTS_URL",
    "autoscaler_url": "WORDPIPE_AUTOSCALER_URL",
}
DEFAULTS = {
    "ingest_url": "http://127.0.0.1:8080",
    "results_url": "http://127.0.0.1:8081",
    "autoscaler_url": "http://127.0.0.1:8082",
}


@pytest.fixture(autouse=True)
def nothing_set(tmp_path, monkeypatch):
    """No token or address of the machine's; the default stack's token file in tmp_path."""
    for name in ["WORDPIPE_TOKEN", "WORDPIPE_TOKENS", "WORDPIPE_TOKEN_FILE", *VARIABLES.values()]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.mark.parametrize("url", VARIABLES)
def test_a_url_is_the_given_one_else_the_environments_else_the_default(url, monkeypatch):
    assert getattr(Client(), url) == DEFAULTS[url]
    monkeypatch.setenv(VARIABLES[url], "http://127.0.0.1:9999/")
    assert getattr(Client(), url) == "http://127.0.0.1:9999"
    assert getattr(Client(**{url: "http://given:1"}), url) == "http://given:1"


def test_the_token_is_the_given_one_else_token_tokens_token_file_then_the_default_file(tmp_path, monkeypatch):
    token_file().parent.mkdir(parents=True)
    token_file().write_text("the default stack's\n")
    named = tmp_path / "named"
    named.write_text("a named file's\n")
    monkeypatch.setenv("WORDPIPE_TOKEN_FILE", str(named))
    monkeypatch.setenv("WORDPIPE_TOKENS", "first of tokens, second")
    monkeypatch.setenv("WORDPIPE_TOKEN", "token")
    assert Client(token="given").http.headers["Authorization"] == "Bearer given"
    assert default_token() == "token"
    monkeypatch.delenv("WORDPIPE_TOKEN")
    assert default_token() == "first of tokens"
    monkeypatch.delenv("WORDPIPE_TOKENS")
    assert default_token() == "a named file's"
    monkeypatch.delenv("WORDPIPE_TOKEN_FILE")
    assert default_token() == "the default stack's"


def test_the_default_stack_s_token_is_found_without_any_variable():
    """`wordpipe up` with the default settings saves its token where the CLI looks first."""
    s = config.Settings()
    save_token("default", token_file(s.ingest.port, s.kafka.state_dir))
    assert Client().http.headers["Authorization"] == "Bearer default"


def test_each_stack_s_token_file_is_its_own(tmp_path):
    files = {token_file(8080), token_file(9080), token_file(8080, str(tmp_path / "kept"))}
    assert len(files) == 3 and tmp_path / "kept" / "token" in files


def test_a_token_file_variable_naming_no_file_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("WORDPIPE_TOKEN_FILE", str(tmp_path / "gone"))
    with pytest.raises(config.ConfigError, match=r"\$WORDPIPE_TOKEN_FILE: cannot read .*gone"):
        default_token()


@pytest.mark.parametrize(
    "argv, variable",
    [
        (["count", "whale"], "WORDPIPE_RESULTS_URL"),
        (["top", "3"], "WORDPIPE_RESULTS_URL"),
        (["status"], "WORDPIPE_RESULTS_URL"),
        (["totals", "-q"], "WORDPIPE_RESULTS_URL"),
        (["autoscale", "status"], "WORDPIPE_AUTOSCALER_URL"),
    ],
)
def test_every_command_asks_the_stack_the_flag_else_the_environment_names(argv, variable, monkeypatch):
    """Nothing listens on either port: the error names the address the command asked."""
    exported, flagged = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv(variable, exported)
    with pytest.raises(RequestFailed, match=f"unreachable: {exported}: "):
        command(argv)
    with pytest.raises(RequestFailed, match=f"unreachable: {flagged}: "):
        command([*argv, "--url", flagged])


def test_ingest_uploads_to_the_flag_else_the_environment(monkeypatch):
    monkeypatch.setenv("WORDPIPE_INGEST_URL", "http://exported:1")
    assert _client(parser().parse_args(["ingest", "a.txt"])).ingest_url == "http://exported:1"
    assert _client(parser().parse_args(["ingest", "a.txt", "--url", "http://flag:2"])).ingest_url == "http://flag:2"


def command(argv: list[str]) -> int:
    """A command's handler, as `wordpipe` runs it (main() would also take this process's signals)."""
    args = parser().parse_args(argv)
    return args.func(args)

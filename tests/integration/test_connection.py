"""Connecting: both kinds of key, and one-line errors that never show the key."""

from __future__ import annotations

import http.server
import threading

import pytest

from labeling.studio.connection import connect, normalize_url
from labeling.studio.errors import NotLabelStudio, StudioAuthError, StudioError, StudioUnreachable
from pipeline.project.config import load_config
from pipeline.project.studio import studio_settings

pytestmark = pytest.mark.integration


def _one_line_without(err: Exception, secret: str) -> str:
    text = str(err)
    assert secret not in text and secret not in repr(err)
    assert "\n" not in text
    # Raised "from None": the SDK error (whose request carries the key) is not attached.
    assert err.__cause__ is None and err.__suppress_context__
    return text


def test_legacy_token_connects(studio_server):
    studio = connect(studio_server.url, studio_server.token)
    assert studio.version == "1.23.2"
    assert studio.user_email == "admin@labelloop.local"
    assert studio_server.token not in repr(studio)


def test_personal_access_token_connects(studio):
    with studio.errors("creating a personal access token"):
        pat = studio.client.tokens.create().token
    assert pat.count(".") == 2  # a JWT, exchanged for access tokens by the SDK
    again = connect(studio.url, pat)
    assert again.user_id == studio.user_id
    assert pat not in repr(again)


@pytest.mark.parametrize("bad_key", [
    "not-the-right-key-0123456789abcdef",
    # A JWT that expired long ago: refused before any request.
    "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjEsInRva2VuX3R5cGUiOiJyZWZyZXNoIn0.c2lnbmF0dXJl",
])
def test_wrong_key_is_a_clear_error_without_the_key(studio_server, bad_key):
    with pytest.raises(StudioAuthError) as caught:
        connect(studio_server.url, bad_key)
    text = _one_line_without(caught.value, bad_key)
    assert "refused the API key" in text and "LABEL_STUDIO_API_KEY" in text


@pytest.mark.parametrize("missing", [None, "", "   "])
def test_missing_key_is_a_clear_error(studio_server, missing):
    with pytest.raises(StudioAuthError, match="no API key .* LABEL_STUDIO_API_KEY"):
        connect(studio_server.url, missing)


def test_unreachable_url_is_a_clear_error(unused_port):
    secret = "secret-key-that-must-not-show-up"
    with pytest.raises(StudioUnreachable) as caught:
        connect(f"http://127.0.0.1:{unused_port}", secret)
    text = _one_line_without(caught.value, secret)
    assert "cannot reach" in text and "labelloop studio start" in text


def test_a_server_that_is_not_label_studio_is_named_as_such(tmp_path):
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(NotLabelStudio, match="not a Label Studio server"):
            connect(f"http://127.0.0.1:{httpd.server_address[1]}", "some-key-123456")
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_url_without_scheme_is_refused():
    with pytest.raises(StudioError, match="must start with http"):
        connect("localhost:8080", "some-key-123456")


def test_a_url_with_a_password_or_a_query_is_refused_without_showing_it():
    # LABEL_STUDIO_URL and --studio-url came this way unchecked, and the "cannot reach"
    # message printed the password (a review of the CLI).
    for url in ("http://bob:Pa55word@127.0.0.1:9", "http://127.0.0.1:9/?token=Pa55word",
                "https://bob@ls.example", "http://bob:Pa55word@host]:8080"):
        with pytest.raises(StudioError, match="holds a user, password, query|not a valid URL"
                           ) as err:
            connect(url, "some-key-123456")
        assert "Pa55word" not in str(err.value) and "bob" not in str(err.value)
    for url in ("http://host:8080/labelstudio/", "https://ls.example.com", "http://[::1]:8080",
                "http://[fe80::1%25eth0]:8080"):
        assert normalize_url(url) == url.rstrip("/")


def test_settings_take_the_environment_first_then_the_key_file_then_the_token_file(
        studio_server, tmp_path):
    config = load_config(studio_server.config_path)
    embedded = studio_settings(config, {})
    assert (embedded.url, embedded.api_key) == (studio_server.url, studio_server.token)
    assert embedded.embedded and "token file" in embedded.key_source
    assert studio_server.token not in repr(embedded)

    from_env = studio_settings(config, {"LABEL_STUDIO_URL": "http://studio.example:8080",
                                        "LABEL_STUDIO_API_KEY": "env-key-123456"})
    assert (from_env.url, from_env.api_key, from_env.embedded) == (
        "http://studio.example:8080", "env-key-123456", False)

    key_file = tmp_path / "key.txt"
    key_file.write_text("file-key-123456\n")
    with_file = config.model_copy(update={"studio": config.studio.model_copy(
        update={"api_key_file": key_file})})
    assert studio_settings(with_file, {}).api_key == "file-key-123456"
    assert studio_settings(with_file, {"LABEL_STUDIO_API_KEY": "env-key-123456"}).api_key == (
        "env-key-123456")
    # A key file that is not text, or a folder: one line naming it, not a traceback.
    key_file.write_bytes(b"\xff\xfebad")
    with pytest.raises(StudioError, match=r"api_key_file .* cannot be read \(not UTF-8 text\)"):
        studio_settings(with_file, {})
    key_file.unlink()
    key_file.mkdir()
    with pytest.raises(StudioError, match=r"cannot be read \(Is a directory\)"):
        studio_settings(with_file, {})

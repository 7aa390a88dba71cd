"""The Label Studio API key never shows: not in any output of the CLI (successful and failing
runs), not in any byte of the workspace, the report or the exports, not in MLflow, not in the
text or repr of errors and objects, not in debug logs. The embedded server listens on loopback
only and refuses sign-ups.

The CLI has no --verbose or debug flag; debug logging is covered in-process, as a program that
embeds labelloop and turns on DEBUG logging would see it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import subprocess
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from labeling.studio import server
from labeling.studio.errors import StudioAuthError, StudioUnreachable
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config
from pipeline.round import session as studio_session
from pipeline.round import sync as sync_step
from tests.integration.cli import cli_env, labelloop

pytestmark = [pytest.mark.integration, pytest.mark.slow]




def altered(key: str) -> str:
    """The key with one character changed: a refused key that is almost the real one."""
    i = len(key) // 2
    return key[:i] + ("0" if key[i] != "0" else "1") + key[i + 1:]


def needles(*keys: str) -> dict[bytes, str]:
    """What to look for: each key, and its first and last 16 characters (a truncated key in a
    message still gives most of it away)."""
    found = {}
    for n, key in enumerate(keys):
        for part, what in ((key, "whole"), (key[:16], "head"), (key[-16:], "tail")):
            found[part.encode()] = f"key {n} ({what})"
    return found


def hits_in(data: bytes, looking_for: dict[bytes, str]) -> list[str]:
    return [what for needle, what in looking_for.items() if needle in data]


def scan_files(root: Path, looking_for: dict[bytes, str], *, skip: set[Path]
               ) -> tuple[Counter[str], int, list[str]]:
    """Every file under ``root`` but ``skip``, read as bytes: (files by suffix, bytes, hits)."""
    kinds: Counter[str] = Counter()
    size = 0
    hits = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path in skip:
            continue
        data = path.read_bytes()
        kinds[path.suffix or path.name] += 1
        size += len(data)
        hits += [f"{path.relative_to(root)}: {what}" for what in hits_in(data, looking_for)]
    return kinds, size, hits


def mlflow_text(tracking_uri: str) -> tuple[int, str]:
    """Every experiment, run (params, tags, names) and model version (tags, descriptions,
    sources) of a tracking store as text, and the number of runs."""
    client = MlflowClient(tracking_uri=tracking_uri)
    parts, runs = [], 0
    for exp in client.search_experiments(view_type=ViewType.ALL):
        parts += [exp.name, exp.artifact_location, json.dumps(exp.tags)]
        for run in client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL,
                                      max_results=1000):
            runs += 1
            parts += [run.info.run_name or "", json.dumps(run.data.params),
                      json.dumps(run.data.tags), json.dumps(sorted(run.data.metrics))]
    for model in client.search_registered_models():
        parts += [model.name, model.description or "", json.dumps(model.tags)]
        for mv in client.search_model_versions(f"name='{model.name}'"):
            parts += [mv.source or "", mv.description or "", json.dumps(mv.tags)]
    return runs, "\n".join(parts)


def test_a_cli_session_shows_the_key_nowhere(studio_server, digits_project, small_digits,
                                             tmp_path, unused_port):
    key, wrong = studio_server.token, altered(studio_server.token)
    key_file = tmp_path / "secret" / "ls.key"
    key_file.parent.mkdir()
    key_file.write_text(key + "\n", encoding="utf-8")
    by_env = digits_project("secrets-env", folder=tmp_path / "env")
    by_file = digits_project("secrets-file", folder=tmp_path / "file",
                             studio_extra=f'api_key_file = "{key_file}"\n')
    env_key, env_none = cli_env(LABEL_STUDIO_API_KEY=key), cli_env()
    truth = str(small_digits / "labels.csv")
    runs: list[tuple[str, subprocess.CompletedProcess]] = []

    def session(folder: Path, env: dict[str, str], *, full: bool) -> None:
        c = ("--config", str(folder))
        steps = [("round", "--quiet", *c),
                 ("annotate-sim", "--truth", truth, "--noise", "0.05", "--skip", "0.02", *c),
                 ("round", "--quiet", *c), ("status", *c)]
        if full:
            out = folder / "out"
            steps += [("status", "--json", *c), ("report", "--out", str(out / "report.html"), *c),
                      ("export", "--format", "csv", "--out", str(out / "labels.csv"), *c),
                      ("export", "--format", "imagefolder", "--out", str(out / "images"), *c),
                      ("models", "list", *c), ("studio", "status", *c), ("studio", "sync", *c)]
        for args in steps:
            proc = labelloop(*args, env=env)
            runs.append((" ".join(args[:2]), proc))
            assert proc.returncode == 0, f"{args}: {proc.stderr[-2000:]}"

    # The two projects side by side: the session is long and the machine has two cores.
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = [pool.submit(session, by_env, env_key, full=True),
                pool.submit(session, by_file, env_none, full=False)]
        for future in done:
            future.result()

    # Failing runs: the server down (a wrong URL), and an almost-right key that is refused,
    # given through the environment and through the key file. Side by side, but never two
    # rounds on one workspace (the second would be refused by the lock instead).
    down = cli_env(LABEL_STUDIO_API_KEY=key, LABEL_STUDIO_URL=f"http://127.0.0.1:{unused_port}")
    refused = cli_env(LABEL_STUDIO_API_KEY=wrong)
    failing = [(("round", "--config", str(by_env)), down, "cannot reach"),
               (("studio", "sync", "--config", str(by_file)), down, "cannot reach"),
               (("round", "--config", str(by_file)), refused, "refused the API key"),
               (("annotate-sim", "--truth", truth, "--config", str(by_env)), refused,
                "refused the API key")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = list(pool.map(lambda f: labelloop(*f[0], env=f[1]), failing))
    key_file.write_text(wrong + "\n", encoding="utf-8")
    procs.append(labelloop("round", "--config", str(by_file), env=env_none))
    failing.append((("round (key file)",), env_none, "refused the API key"))
    key_file.write_text(key + "\n", encoding="utf-8")
    for (args, _env, expected), proc in zip(failing, procs, strict=True):
        runs.append((f"{' '.join(args[:2])} (failing)", proc))
        assert proc.returncode != 0 and expected in proc.stderr, f"{args}: {proc.stderr}"

    looking_for = needles(key, wrong)
    output_hits = [f"{name}: {what}" for name, proc in runs
                   for what in hits_in((proc.stdout + proc.stderr).encode(), looking_for)]
    kinds, size, file_hits = scan_files(tmp_path, looking_for, skip={key_file})
    # The server's log too: it logged every request that carried the key.
    log = server.ServerFiles(studio_server.data_dir).log_file.read_bytes()
    log_size, log_hits = len(log), hits_in(log, looking_for)
    n_runs, tracked = 0, []
    for folder in (by_env, by_file):
        project = open_project(find_config(folder))
        count, text = mlflow_text(project.registry.tracking_uri)
        project.close()
        n_runs += count
        tracked += [f"{folder.name} mlflow: {w}" for w in hits_in(text.encode(), looking_for)]
    print(f"scanned {len(runs)} CLI runs' output, {kinds.total()} files ({size:,} bytes) under "
          f"the projects {dict(kinds.most_common())}, the server log ({log_size:,} bytes), "
          f"{n_runs} MLflow runs")
    assert hits_in(key_file.read_bytes(), looking_for)  # the scan finds a key where one is
    assert output_hits == []
    assert file_hits == []
    assert log_hits == []
    assert tracked == []
    # The scan saw a real session: label stores, MLflow, checkpoints, the report, the exports.
    assert n_runs >= 2
    assert {".db", ".pt", ".html", ".png", ".csv", ".jsonl", ".npz"} <= set(kinds), kinds


def test_errors_objects_and_debug_logs_never_hold_the_key(studio_server, digits_project,
                                                        tmp_path, unused_port, caplog):
    key, wrong = studio_server.token, altered(studio_server.token)
    looking_for = needles(key, wrong)
    caplog.set_level(logging.DEBUG)  # everything the SDK, httpx and labelloop log
    config = find_config(digits_project("secrets-inproc"))
    texts: dict[str, str] = {}

    project = open_project(config, env={"LABEL_STUDIO_API_KEY": key})
    studio, sp = studio_session.session(project)
    sync_step.sync(project)
    texts.update({"repr(project)": repr(project), "str(project)": str(project),
                  "repr(studio)": repr(studio), "repr(studio project)": repr(sp)})
    project.close()

    attempts = {"refused key": ({"LABEL_STUDIO_API_KEY": wrong}, StudioAuthError),
                "server down": ({"LABEL_STUDIO_API_KEY": key,
                                 "LABEL_STUDIO_URL": f"http://127.0.0.1:{unused_port}"},
                                StudioUnreachable),
                "key plus a character": ({"LABEL_STUDIO_API_KEY": key + "x"}, StudioAuthError)}
    for name, (env, expected) in attempts.items():
        project = open_project(config, env=env)
        with pytest.raises(expected) as caught:
            studio_session.session(project)
        texts[f"{name}: repr(project)"] = repr(project)
        texts.update((f"{name}: {k}", v) for k, v in exception_texts(caught.value).items())
        project.close()

    texts.update((f"log {n}: {r.name}", f"{r.getMessage()} {r.exc_text or ''}")
                 for n, r in enumerate(caplog.records))
    found = [f"{name}: {what}" for name, text in texts.items()
             for what in hits_in(text.encode(), looking_for)]
    assert found == [], found
    assert len(caplog.records) > 0  # debug logging was on and saw the requests


def exception_texts(err: BaseException) -> dict[str, str]:
    """str, repr and the printed traceback of ``err`` and of every exception chained to it
    (also a suppressed context: error reporters walk the whole chain)."""
    texts = {"traceback": "".join(traceback.format_exception(err))}
    seen: BaseException | None = err
    depth = 0
    while seen is not None:
        texts.update({f"str(error {depth})": str(seen), f"repr(error {depth})": repr(seen)})
        seen, depth = seen.__cause__ or seen.__context__, depth + 1
    return texts


def test_the_embedded_server_listens_on_loopback_only(studio_server):
    listening = listening_addresses(studio_server.port)
    assert listening, f"nothing listens on port {studio_server.port}"
    assert all(addr in ("127.0.0.1", "::1", "::ffff:127.0.0.1") for addr in listening), listening
    # And from this machine's other addresses, if it has any, the port is closed.
    for addr in local_addresses() - {"127.0.0.1"}:
        with pytest.raises(ConnectionRefusedError):
            socket_connect(addr, studio_server.port)


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets in LISTEN state on ``port`` (from /proc/net)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(_proc_address(addr, width))
    return found


def _proc_address(hex_addr: str, width: int) -> str:
    # /proc prints each 32-bit word of the address in host (little-endian) byte order.
    raw = b"".join(bytes.fromhex(hex_addr[i:i + 8])[::-1] for i in range(0, width, 8))
    return str(ipaddress.ip_address(raw))


def local_addresses() -> set[str]:
    """This machine's IPv4 addresses (the LOCAL entries of /proc/net/fib_trie)."""
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except FileNotFoundError:
        return set()
    return {lines[i - 1].split()[-1] for i, line in enumerate(lines)
            if "/32 host LOCAL" in line and i > 0}


def socket_connect(addr: str, port: int) -> None:
    with socket.create_connection((addr, port), timeout=5):
        pass


def test_signup_is_refused_and_creates_no_user(studio_server):
    email = "intruder@example.com"
    with httpx.Client(base_url=studio_server.url, timeout=30) as web:
        # The form's CSRF token first, as a browser would, so the refusal is the server's
        # signup rule and not a missing token.
        csrf = web.get("/user/signup/").cookies.get("csrftoken") or web.cookies["csrftoken"]
        form = {"email": email, "password": "Intruder-pass-123", "csrfmiddlewaretoken": csrf}
        headers = {"Referer": f"{studio_server.url}/user/signup/"}
        signup = web.post("/user/signup/", data=form, headers=headers)
        # The same token passes the CSRF check on the login form (a wrong password: 200).
        login = web.post("/user/login/", data={**form, "password": "wrong"}, headers=headers)
        api = web.post("/api/users/", json={"email": email, "password": "Intruder-pass-123"},
                       headers={"Cookie": ""})
    assert login.status_code == 200
    assert signup.status_code == 403, signup.text[:500]
    assert api.status_code in (401, 403)
    users = httpx.get(f"{studio_server.url}/api/users/", timeout=30,
                      headers={"Authorization": f"Token {studio_server.token}"}).json()
    emails = {u["email"] for u in users}
    assert email not in emails and "admin@labelloop.local" in emails

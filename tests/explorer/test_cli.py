"""The command line: what it prints, refuses and warns about (the server itself replaced by a no-op)."""

import re

import pytest

uvicorn = pytest.importorskip("uvicorn")
from models.explorer.__main__ import main  # noqa: E402


@pytest.fixture
def served(monkeypatch):
    """Run ``main`` without serving: record the sockets uvicorn would have been given."""
    calls = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: calls.append(sockets))
    return calls


def test_prints_the_address_of_a_free_port_on_the_loopback(micro_run, served, capsys):
    assert main(["-c", str(micro_run), "-c", str(micro_run), "--port", "0"]) == 0
    out, err = capsys.readouterr()
    port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", out).group(1))
    assert port > 0 and served[0][0].getsockname() == ("127.0.0.1", port)
    assert "micro, micro-2" in out  # two models, two names
    assert err == ""
    served[0][0].close()


def test_another_host_is_served_with_a_warning(micro_run, served, capsys):
    assert main(["-c", str(micro_run), "--host", "0.0.0.0", "--port", "0"]) == 0
    assert "warning: listening on 0.0.0.0" in capsys.readouterr().err
    served[0][0].close()


@pytest.mark.parametrize("args, message", [
    (["-c", "/nonexistent/run"], "checkpoint not found: /nonexistent/run"),
    (["--port", "70000"], "is not a port number"),
])
def test_problems_are_one_line_errors(micro_run, served, capsys, args, message, tmp_path):
    argv = args if "-c" in args else ["-c", str(micro_run), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not served


def test_a_file_that_is_not_a_checkpoint_is_refused(served, capsys, tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert main(["-c", str(bad)]) == 2
    assert "error: cannot load" in capsys.readouterr().err


def test_a_port_in_use_is_an_error(micro_run, served, capsys):
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        assert main(["-c", str(micro_run), "--port", str(taken.getsockname()[1])]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


def test_a_missing_browser_skips_locally_and_fails_on_ci(monkeypatch):
    from tests.explorer import conftest

    monkeypatch.setattr(conftest.shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match="no chromium"):
        conftest.browser_executable(on_ci=False)
    with pytest.raises(pytest.fail.Exception, match="CI=true but no chromium"):
        conftest.browser_executable(on_ci=True)

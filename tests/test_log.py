"""mgnet.log: the package logs, the command prints (message only, to the current stdout)."""

from __future__ import annotations

import subprocess
import sys

from mgnet.log import get_logger, setup_cli_logging


def test_the_cli_handlers_print_messages_only_and_once(capsys):
    log = get_logger("train")
    assert log.name == "mgnet.train" and get_logger("mgnet.data").name == "mgnet.data"
    setup_cli_logging()
    setup_cli_logging()  # a second call replaces the handlers: no line printed twice
    log.info("epoch 1 done")
    log.debug("not shown")
    log.warning("a warning")
    captured = capsys.readouterr()
    assert captured.out == "epoch 1 done\n" and captured.err == "a warning\n"
    setup_cli_logging(quiet=True)
    log.info("quiet now")
    log.warning("a warning still shows")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "a warning still shows\n"
    setup_cli_logging()


def test_a_library_user_sees_nothing_unless_they_configure_logging():
    code = (
        "from mgnet.log import get_logger; get_logger('train').info('hidden'); "
        "import logging; logging.basicConfig(level=logging.INFO, format='%(name)s %(message)s');"
        "get_logger('train').info('shown')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "" and out.stderr == "mgnet.train shown\n"


def test_the_log_module_does_not_import_torch():
    """mgnet.log on its own (the package's __init__ is another matter) loads no torch."""
    import mgnet.log

    code = (
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('m', {mgnet.log.__file__!r}); "
        "spec.loader.exec_module(importlib.util.module_from_spec(spec)); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

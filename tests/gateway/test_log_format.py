"""The gateway logs the same JSON lines as every other role: creating the Litestar app must not
replace the process's handlers with Litestar's plain-text ones."""

from __future__ import annotations

import json
import logging

from core.config import Settings
from core.logs import JsonFormatter, setup_logging
from gateway.app import create_app


def test_the_app_keeps_the_process_json_logging(capsys) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging()
        create_app(Settings())
        assert [type(h.formatter) for h in root.handlers] == [JsonFormatter]
        logging.getLogger("inferq.gateway.errors").error("boom")
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert json.loads(line)["msg"] == "boom"
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])

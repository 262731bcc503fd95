"""The client end to end: ``inferq submit FILE.jsonl --wait -o results.jsonl`` against the
real service (inline, or through an uploaded file for a longer one), and the Python client
riding out real 429s by honouring Retry-After."""

from __future__ import annotations

import asyncio
import hashlib
import json

from inferq.cli import main
from inferq.client import Client
from tests.e2e.harness import KEYS
from tests.gateway.support import running, tenants_with


def inputs_file(path, n: int) -> list[str]:
    lines = [json.dumps({"text": f"sentence number {i}", "id": f"row-{i}"}) for i in range(n)]
    lines[5] = json.dumps("a bare string line")
    lines[7] = json.dumps({"text": "", "id": "empty"})
    path.write_text("\n".join(lines[:12]) + "\n\n" + "\n".join(lines[12:]) + "\n\n")
    return lines


async def test_inferq_submit_waits_and_writes_every_result(settings, tmp_path, capsys) -> None:
    """Up to --max-items-per-job inputs go inline, as one job (a blank line is skipped)."""
    src = tmp_path / "in.jsonl"
    inputs_file(src, 9)
    out = tmp_path / "out.jsonl"
    argv = ["submit", str(src), "--model", "minilm", "--wait", "-o", str(out),
            "--max-items-per-job", "10"]
    async with running(settings, runners=1, schedulers=1) as svc:
        argv += ["--url", svc.url, "--api-key", KEYS["alpha"]]
        assert await asyncio.to_thread(main, argv) == 0
        first = capsys.readouterr()
        [job_id] = first.out.split()
        assert "uploaded" not in first.err
        assert "succeeded" in first.err and "failed=1" in first.err
        items = [json.loads(line) for line in out.read_text().splitlines()]
        assert [i["index"] for i in items] == list(range(9))
        assert items[0]["id"] == "row-0" and len(items[0]["output"]["embedding"]) == 384
        assert "id" not in items[5] and items[5]["status"] == "succeeded"
        assert (items[7]["status"], items[7]["error"]["code"]) == ("failed", "empty_text")
        # The same command again returns the same job: the key derives from the inputs.
        assert await asyncio.to_thread(main, argv[:4] + argv[7:]) == 0  # no --wait this time
        assert capsys.readouterr().out.split() == [job_id]


async def test_inferq_submit_uploads_a_longer_file_as_one_file_job(settings, tmp_path,
                                                                   capsys) -> None:
    """More inputs than --max-items-per-job: the file is uploaded and submitted as one job
    from the file, waited for, and its results downloaded through the resumable,
    digest-checked download; run again, the same job (the key is bound to the content)."""
    src = tmp_path / "in.jsonl"
    inputs_file(src, 23)
    out = tmp_path / "out.jsonl"
    argv = ["submit", str(src), "--model", "minilm", "--wait", "-o", str(out),
            "--max-items-per-job", "10"]
    async with running(settings, runners=1, schedulers=1) as svc, svc.client() as c:
        argv += ["--url", svc.url, "--api-key", KEYS["alpha"]]
        assert await asyncio.to_thread(main, argv) == 0
        first = capsys.readouterr()
        [job_id] = first.out.split()
        file_id = first.err.split("uploaded ")[1].split()[0]
        assert (await c.get(f"/v1/files/{file_id}")).json()["lines"] == 23  # blanks dropped
        assert "(23 items)" in first.err and "failed=1" in first.err
        manifest = (await c.get(f"/v1/jobs/{job_id}/results/manifest")).json()
        assert hashlib.sha256(out.read_bytes()).hexdigest() == manifest["sha256"]
        assert not (tmp_path / "out.jsonl.part").exists()
        items = [json.loads(line) for line in out.read_text().splitlines()]
        assert [i["index"] for i in items] == list(range(23))
        assert [i.get("id") for i in items[:6]] == ["row-0", "row-1", "row-2", "row-3",
                                                    "row-4", None]
        assert (items[7]["status"], items[7]["error"]["code"]) == ("failed", "empty_text")
        assert items[22]["id"] == "row-22" and items[22]["status"] == "succeeded"
        assert await asyncio.to_thread(main, argv[:4] + argv[7:]) == 0  # uploads again ...
        again = capsys.readouterr()
        assert again.out.split() == [job_id]  # ... and gets the same job
        assert again.err.split("uploaded ")[1].split()[0] != file_id


def test_inferq_submit_reports_bad_input_and_a_missing_key(tmp_path, capsys,
                                                           monkeypatch) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"txt": 1}\n')
    assert main(["submit", str(bad), "--api-key", "k", "--url", "http://127.0.0.1:9"]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
    monkeypatch.delenv("INFERQ_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["submit", str(bad)]) == 2
    assert "no API key" in capsys.readouterr().err


async def test_the_client_rides_out_429s_with_one_job_per_submission(settings,
                                                                      tmp_path) -> None:
    tenants = tenants_with(tmp_path / "t.toml", alpha={"requests_per_s": 2.0})
    async with running(settings, tenants_file=tenants, rate_burst_s=1.0) as svc:
        async with Client(svc.url, KEYS["alpha"]) as c:
            docs = await asyncio.gather(*(c.submit([f"text {i}"], model="minilm")
                                          for i in range(5)))
            assert len({d["job_id"] for d in docs}) == 5
            assert c.attempts > 5  # some were refused and retried
            listed = [j["job_id"] async for j in c.jobs(page_size=2)]
            assert sorted(listed) == sorted(d["job_id"] for d in docs)
            cancelled = await c.cancel(docs[0]["job_id"])
            assert cancelled["error"]["code"] == "cancelled"
            assert [i["error"]["code"] async for i in c.results(docs[0]["job_id"])] == [
                "cancelled"]
            lines = [json.loads(x) async for x in c.jsonl(docs[0]["job_id"])]
            assert [x["status"] for x in lines] == ["failed"]

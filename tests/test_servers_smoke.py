"""Smoke tests of the real-server launchers in tests/servers (DESIGN.md section 8).

Each starts the real server through its fixture and does the smallest thing that proves
it works from Python the way keytrail uses it.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.servers import versions
from tests.servers._common import http_get


def test_beam_sdk_matches_job_server_release() -> None:
    """apache-beam (PyPI) and the Flink job server must be the same Beam release."""
    import apache_beam

    v = versions()
    assert apache_beam.__version__ == v["BEAM_VERSION"], (
        f"apache-beam {apache_beam.__version__} installed, .ci/versions.env pins the job "
        f"server to {v['BEAM_VERSION']}: align pyproject.toml and .ci/versions.env")


def _bound_to_loopback_only(port: int) -> bool:
    # Anything else but 127.0.0.1 must refuse: try the machine's own hostname address.
    try:
        other = socket.gethostbyname(socket.gethostname())
    except OSError:
        return True
    if other.startswith("127."):
        return True
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((other, port)) != 0


@pytest.mark.integration
def test_opensearch_node_restarts_on_same_data_and_port(opensearch: Any) -> None:
    url = opensearch.url
    assert url.startswith("http://127.0.0.1:")
    status, body = http_get(f"{url}/")
    assert status == 200 and json.loads(body)["version"]["number"].startswith("2.19")
    req = urllib.request.Request(f"{url}/smoke/_doc/1?refresh=true", data=b'{"k": "v"}',
                                 method="PUT", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status in (200, 201)
    assert _bound_to_loopback_only(opensearch.http_port)

    opensearch.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/", timeout=5)
    opensearch.start()
    assert opensearch.url == url
    status, body = http_get(f"{url}/smoke/_doc/1")
    assert status == 200 and json.loads(body)["_source"] == {"k": "v"}


@pytest.mark.integration
def test_elasticsearch_node_with_official_client(elasticsearch: Any) -> None:
    from elasticsearch import Elasticsearch

    es = Elasticsearch(elasticsearch.url, request_timeout=30)
    info = es.info()
    assert info["version"]["number"] == versions()["ELASTICSEARCH_VERSION"]
    es.index(index="smoke", id="1", document={"k": "v"}, refresh=True)
    assert es.get(index="smoke", id="1")["_source"] == {"k": "v"}
    assert es.count(index="smoke")["count"] == 1
    es.close()


class _Key:
    """Picklable helper DoFn-free functions for the pipeline below."""

    @staticmethod
    def split(line: str) -> tuple[str, int]:
        k, v = line.split("=")
        return k, int(v)

    @staticmethod
    def fmt(kv: tuple[str, Any]) -> str:
        return f"{kv[0]}:{sum(kv[1])}"


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_beam_pipeline_on_flink_cluster(flink_cluster: Any, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.utils import subprocess_server

    opts = flink_cluster.beam_options
    assert "--runner=FlinkRunner" in opts
    assert f"--flink_master={flink_cluster.flink_master}" in opts
    jar = Path(next(o.split("=", 1)[1] for o in opts if o.startswith("--flink_job_server_jar=")))
    assert jar.is_file()

    # Nothing may be downloaded at run time: fail loudly if Beam tries.
    def no_download(*a: Any, **k: Any) -> Any:
        raise AssertionError(f"Beam tried to download at run time: {a!r}")

    monkeypatch.setattr(subprocess_server, "urlopen", no_download)
    monkeypatch.setattr(subprocess_server.JavaJarServer, "path_to_beam_jar",
                        staticmethod(no_download))

    out = tmp_path / "out"
    with beam.Pipeline(options=PipelineOptions(opts)) as p:
        _ = (p
             | beam.Create(["a=1", "b=2", "a=3", "c=5", "b=10"])
             | beam.Map(_Key.split)
             | beam.GroupByKey()
             | beam.Map(_Key.fmt)
             | beam.io.WriteToText(str(out / "part"), shard_name_template="-SS-of-NN"))

    lines = sorted(line for f in out.glob("part*") for line in f.read_text().splitlines())
    assert lines == ["a:4", "b:12", "c:5"]
    # ... and it really ran on the cluster, not in-process
    status, body = http_get(f"{flink_cluster.rest_url}/jobs/overview")
    assert status == 200
    jobs = json.loads(body)["jobs"]
    assert any(j["state"] == "FINISHED" for j in jobs), jobs


@pytest.mark.integration
def test_seaweedfs_s3_bucket_put_list(seaweedfs: Any) -> None:
    import boto3

    s3 = boto3.client("s3", **seaweedfs.boto3_kwargs())
    assert seaweedfs.endpoint_url.startswith("http://127.0.0.1:")
    s3.create_bucket(Bucket="smoke-bucket")
    s3.put_object(Bucket="smoke-bucket", Key="logs/a.json", Body=b'{"x": 1}')
    s3.put_object(Bucket="smoke-bucket", Key="logs/b.json.gz", Body=b"\x1f\x8b")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="smoke-bucket",
                                                  Prefix="logs/")["Contents"]]
    assert keys == ["logs/a.json", "logs/b.json.gz"]
    assert s3.get_object(Bucket="smoke-bucket", Key="logs/a.json")["Body"].read() == b'{"x": 1}'
    bad = boto3.client("s3", **{**seaweedfs.boto3_kwargs(), "aws_secret_access_key": "wrong"})
    with pytest.raises(Exception, match=r"SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId"):
        bad.list_objects_v2(Bucket="smoke-bucket")


@pytest.mark.browser
def test_chromium_renders_and_captures_console_errors(chromium: Any, tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(
        "<!doctype html><html><head><title>smoke</title></head><body>"
        "<h1>keytrail</h1><script>console.error('smoke error', 42);"
        "console.log('fine'); fetch('https://example.invalid/x').catch(() => {});"
        "notDefined();</script></body></html>")
    png = tmp_path / "page.png"
    r = chromium.render(page, png, width=800, height=600)
    assert r.title == "smoke"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 1000
    texts = [m.text for m in r.errors]
    assert "smoke error 42" in texts
    assert any("notDefined" in t for t in texts)
    assert "fine" not in texts  # console.log is not an error
    assert r.network_requests == ["https://example.invalid/x"]

"""Artifacts on object storage: the working copy and an S3-compatible server (moto, started on localhost), and the
LanceDB table on that server with concurrent writers."""

import os

import lancedb
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from realrag_core.storage.sync import ArtifactSync
from realrag_core.config.loading import parse_config


def files(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".sync" not in p.parts
    }


def write(root, rel, data: bytes):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_push_then_pull_on_another_machine_gives_the_same_files(s3_bucket, tmp_path):
    uri = f"s3://{s3_bucket}/run"
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "generated/images/x/0.png", b"\x89PNG one")
    write(a, "checkpoints/retriever/seed0/model.safetensors", os.urandom(5_000_000))  # more than one 4 MB chunk
    write(a, "reports/fid.json", b"{}")
    write(a, "lancedb/image_embeddings.lance/data", b"not synced: the table lives on the store itself")
    report = ArtifactSync(uri, a).push()
    assert sorted(report.copied) == [
        "checkpoints/retriever/seed0/model.safetensors",
        "generated/images/x/0.png",
        "reports/fid.json",
    ]
    fs, base = pafs.FileSystem.from_uri(uri)
    assert not fs.get_file_info(f"{base}/lancedb/image_embeddings.lance/data").is_file
    pulled = ArtifactSync(uri, b).pull()
    assert sorted(pulled.copied) == sorted(report.copied) and pulled.bytes == report.bytes
    expected = files(a)
    del expected["lancedb/image_embeddings.lance/data"]
    assert files(b) == expected
    # nothing changed: nothing moves either way
    assert ArtifactSync(uri, a).push().copied == [] and ArtifactSync(uri, b).pull().copied == []


def test_each_machine_sends_only_its_own_changes_and_deletions_travel(s3_bucket, tmp_path):
    uri = f"s3://{s3_bucket}/run"
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "world/concepts.json", b"[1]")
    write(a, "generated/manifest/shard-00.parquet", b"shard 0 v1")
    write(a, "negatives/reflective_negatives.parquet", b"old negatives")
    ArtifactSync(uri, a).push()
    ArtifactSync(uri, b).pull()
    # two steps on two machines at once: a writes shard 0 again, b writes shard 1 and removes the negatives
    write(a, "generated/manifest/shard-00.parquet", b"shard 0 v2, longer")
    write(b, "generated/manifest/shard-01.parquet", b"shard 1")
    (b / "negatives/reflective_negatives.parquet").unlink()
    assert ArtifactSync(uri, a).push().copied == ["generated/manifest/shard-00.parquet"]
    pushed_b = ArtifactSync(uri, b).push()
    assert pushed_b.copied == ["generated/manifest/shard-01.parquet"]  # b's stale shard 0 is not sent back
    assert pushed_b.deleted == ["negatives/reflective_negatives.parquet"]
    pulled = ArtifactSync(uri, a).pull()
    assert pulled.copied == ["generated/manifest/shard-01.parquet"]
    assert pulled.deleted == ["negatives/reflective_negatives.parquet"]
    assert not (a / "negatives/reflective_negatives.parquet").exists()
    assert ArtifactSync(uri, b).pull().copied == ["generated/manifest/shard-00.parquet"]
    assert files(a) == files(b)
    assert files(a)["generated/manifest/shard-00.parquet"] == b"shard 0 v2, longer"
    c = tmp_path / "c"  # a third machine, only the reports
    write(a, "reports/results.json", b"[]")
    ArtifactSync(uri, a).push()
    assert ArtifactSync(uri, c).pull(("reports/",)).copied == ["reports/results.json"]
    assert files(c) == {"reports/results.json": b"[]"}


def test_the_profile_puts_the_table_on_the_store_and_refuses_a_folder_as_uri(smoke_data, tmp_path):
    cfg = parse_config({**smoke_data, "artifacts_uri": "s3://bucket/realrag/"}, tmp_path)
    assert cfg.artifacts_uri == "s3://bucket/realrag" and cfg.lancedb_uri == "s3://bucket/realrag/lancedb"
    assert parse_config(smoke_data, tmp_path).lancedb_uri == str(tmp_path / "artifacts" / "lancedb")
    with pytest.raises(ValueError, match="artifacts_uri is a URI"):
        parse_config({**smoke_data, "artifacts_uri": "/data/artifacts"}, tmp_path)


def _append(args):
    uri, worker = args
    table = lancedb.connect(uri).open_table("t")
    for j in range(5):
        table.add(pa.table({"id": [f"{worker}-{j}"], "v": [float(j)]}))


@pytest.mark.slow
def test_concurrent_writers_to_a_lancedb_table_on_the_store_lose_no_rows(s3_bucket):
    """Lance commits a table version with a conditional write (If-None-Match); a writer that loses the race
    retries on the new version. Four processes appending at once: every row arrives. (The server refuses a
    second conditional write of one key, which is what makes this safe; a store without it needs Lance's
    DynamoDB commit store, s3+ddb://.)"""
    import boto3
    from botocore.exceptions import ClientError

    from realrag_core.testing.spawned import run_spawned

    s3 = boto3.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="probe", Body=b"1")
    with pytest.raises(ClientError, match="PreconditionFailed"):
        s3.put_object(Bucket=s3_bucket, Key="probe", Body=b"2", IfNoneMatch="*")
    uri = f"s3://{s3_bucket}/lancedb"
    lancedb.connect(uri).create_table("t", schema=pa.schema([("id", pa.string()), ("v", pa.float64())]))
    run_spawned(_append, [(uri, w) for w in range(4)])
    rows = lancedb.connect(uri).open_table("t").to_arrow()
    assert sorted(rows["id"].to_pylist()) == sorted(f"{w}-{j}" for w in range(4) for j in range(5))

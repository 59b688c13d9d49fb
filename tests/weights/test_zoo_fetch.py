"""Fetching a zoo file (through a file:// URL, the same urllib path as https): verified before it
is renamed into the cache, and nothing is left behind when the checksum is wrong."""

import dataclasses
import hashlib

import pytest

from jaxcnn.weights import zoo


def _serve(tmp_path, monkeypatch, payload: bytes, prefix: str):
    src = tmp_path / "published" / "shufflenetv2_x0.5-abc.pth"
    src.parent.mkdir()
    src.write_bytes(payload)
    key, entry = zoo.zoo_entry("shufflenet_v2_x0_5")
    served = dataclasses.replace(entry, url=src.as_uri(), sha256_prefix=prefix)
    monkeypatch.setitem(zoo.ZOO, key, served)
    monkeypatch.setenv("JAXCNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("JAXCNN_OFFLINE", raising=False)
    return key


def test_fetch_verifies_then_places_the_file(tmp_path, monkeypatch):
    payload = b"weights" * 1000
    key = _serve(tmp_path, monkeypatch, payload, hashlib.sha256(payload).hexdigest()[:8])
    path = zoo.weights_file(key)
    assert path == tmp_path / "cache" / "weights" / "shufflenetv2_x0.5-abc.pth"
    assert path.read_bytes() == payload
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_fetch_with_a_wrong_checksum_leaves_nothing(tmp_path, monkeypatch):
    key = _serve(tmp_path, monkeypatch, b"not the published file", "0000000000")
    with pytest.raises(zoo.InitFromError, match="does not match the published checksum"):
        zoo.weights_file(key)
    assert list((tmp_path / "cache" / "weights").iterdir()) == []

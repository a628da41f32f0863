"""The replay source's input kinds: gzip read as is, JSON arrays as lists of bodies (byte for
byte), and what cannot be bodies refused with a reason before anything is read."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wahook.errors import InputError
from wahook.runtime.files import FileSource
from wahook.testing import webhook_traffic

BODIES = list(webhook_traffic(5))


async def read(*paths: str, stdin: bytes | None = None) -> list[tuple[str, bytes]]:
    source = FileSource(list(paths), batch_max=2, stdin=io.BytesIO(stdin or b""))
    return [(m.id, m.body) async for batch in source for m in batch]


def jsonl(bodies: list[bytes]) -> bytes:
    return b"\n".join(bodies) + b"\n"


async def test_gzip_is_read_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "dump.jsonl.gz").write_bytes(gzip.compress(jsonl(BODIES)))
    (tmp_path / "one.json.gz").write_bytes(gzip.compress(BODIES[0]))
    got = await read(str(tmp_path / "dump.jsonl.gz"), str(tmp_path / "one.json.gz"))
    assert [b for _, b in got] == [*BODIES, BODIES[0]]
    assert got[0][0] == f"{tmp_path / 'dump.jsonl.gz'}:1"
    assert await read("-", stdin=gzip.compress(jsonl(BODIES))) == [
        (f"stdin:{i}", b) for i, b in enumerate(BODIES, 1)
    ]


async def test_a_directory_holds_gzipped_files_too(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(jsonl(BODIES[:2])))
    (tmp_path / "b.json").write_bytes(BODIES[2])
    (tmp_path / "c.txt.gz").write_bytes(gzip.compress(BODIES[3]))  # not ours
    assert [b for _, b in await read(str(tmp_path))] == BODIES[:3]


@given(st.lists(st.sampled_from(BODIES), max_size=6), st.sampled_from([b"", b"  ", b"\n"]))
def test_a_json_array_is_a_list_of_bodies_kept_byte_for_byte(
    bodies: list[bytes], space: bytes
) -> None:
    text = space + b"[" + (b"," + space).join(bodies) + b"]" + space
    source = FileSource(["-"], stdin=io.BytesIO(text.replace(b"\n", b" ") + b"\n"))
    got = [(m.id, m.body) for m in source._take()] if bodies else []
    assert got == [(f"stdin:1[{i}]", b) for i, b in enumerate(bodies)]


async def test_an_array_file_and_an_array_line(tmp_path: Path) -> None:
    (tmp_path / "export.json").write_bytes(b"[\n  " + b",\n  ".join(BODIES) + b"\n]\n")
    (tmp_path / "mixed.jsonl").write_bytes(jsonl([b"[" + b",".join(BODIES[:2]) + b"]", BODIES[2]]))
    got = await read(str(tmp_path / "export.json"), str(tmp_path / "mixed.jsonl"))
    assert [i for i, _ in got] == [
        *(f"{tmp_path / 'export.json'}[{i}]" for i in range(5)),
        f"{tmp_path / 'mixed.jsonl'}:1[0]",
        f"{tmp_path / 'mixed.jsonl'}:1[1]",
        f"{tmp_path / 'mixed.jsonl'}:2",
    ]
    assert [b for _, b in got] == [*BODIES, *BODIES[:3]]


async def test_what_is_not_json_stays_a_body_for_the_quarantine(tmp_path: Path) -> None:
    # A broken array, a line of garbage: bodies like any other (quarantined with raw bytes).
    (tmp_path / "broken.json").write_bytes(b"[" + BODIES[0])
    (tmp_path / "lines.jsonl").write_bytes(jsonl([b"{not json", BODIES[1]]))
    got = await read(str(tmp_path / "broken.json"), str(tmp_path / "lines.jsonl"))
    assert [b for _, b in got] == [b"[" + BODIES[0], b"{not json", BODIES[1]]


def pretty(bodies: list[bytes]) -> bytes:
    return b"\n".join(json.dumps(json.loads(b), indent=2).encode() for b in bodies)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("p.jsonl", pretty(BODIES), "pretty-printed JSON"),
        ("p.ndjson.gz", gzip.compress(pretty(BODIES[:1])), "pretty-printed JSON"),
        ("a.jsonl", b"[\n" + b",\n".join(BODIES) + b"\n]", "pretty-printed JSON"),
        ("jq.json", pretty(BODIES), "several pretty-printed JSON values"),
        ("jq.json.gz", gzip.compress(pretty(BODIES[:2])), "several pretty-printed JSON values"),
        ("d.jsonl.bz2", bz2.compress(jsonl(BODIES)), "bzip2-compressed"),
        ("d.jsonl.xz", lzma.compress(jsonl(BODIES)), "xz-compressed"),
        ("d.jsonl", b"\x28\xb5\x2f\xfd" + b"\0" * 10, "zstd-compressed"),
        ("d.zip", b"PK\x03\x04" + b"\0" * 30, "zip archive"),
    ],
)
async def test_what_cannot_be_bodies_is_refused_before_anything_is_read(
    tmp_path: Path, name: str, data: bytes, reason: str
) -> None:
    (tmp_path / "first.jsonl").write_bytes(jsonl(BODIES))
    (tmp_path / name).write_bytes(data)
    with pytest.raises(InputError, match=reason) as info:
        FileSource([str(tmp_path / "first.jsonl"), str(tmp_path / name)])
    assert info.value.path == str(tmp_path / name)


async def test_one_pretty_printed_body_or_array_is_fine(tmp_path: Path) -> None:
    (tmp_path / "one.json").write_bytes(pretty(BODIES[:1]))
    (tmp_path / "many.json").write_bytes(b"[\n" + b",\n".join(BODIES) + b"\n]\n")
    got = await read(str(tmp_path / "one.json"), str(tmp_path / "many.json"))
    assert len(got) == 1 + len(BODIES)
    assert got[0] == (str(tmp_path / "one.json"), pretty(BODIES[:1]))


async def test_pretty_printed_stdin_is_refused_at_its_first_line() -> None:
    with pytest.raises(InputError, match="pretty-printed JSON") as info:
        await read("-", stdin=pretty(BODIES))
    assert info.value.path == "stdin"


@pytest.mark.parametrize("data", [b"", b"\n \n", gzip.compress(b"")])
async def test_nothing_to_read_is_an_error(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "empty.jsonl").write_bytes(data)
    with pytest.raises(InputError, match="no webhook body"):
        await read(str(tmp_path / "empty.jsonl"))
    with pytest.raises(InputError, match="no webhook body"):
        await read("-", stdin=data)
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match=r"no \.json, \.jsonl or \.ndjson file"):
        await read(str(tmp_path / "d"))


async def test_damaged_gzip_says_so(tmp_path: Path) -> None:
    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(jsonl(BODIES))[:-12])
    with pytest.raises(InputError, match="damaged gzip"):
        await read(str(tmp_path / "cut.jsonl.gz"))

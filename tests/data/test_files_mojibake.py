"""Double-encoded text (UTF-8 once read as cp1252 or latin-1 and saved again: `CafÃ©`): noted
with a count and an example, never changed, and real accented text is not mistaken for it."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from byo_files import write

from pipeline.core.config import FilesSource, ItemColumns
from pipeline.data.files import load_files
from pipeline.data.mojibake import double_encoded, undo

EVENTS = "user_id,item_id,rating,timestamp\nu1,1,4,978300760\nu1,2,3,978300761\n"


def double(text: str, reading: str) -> str:
    """`text` as it reads after its UTF-8 bytes were once read as `reading`; `web-1252` is cp1252
    as browsers read it, with the five bytes cp1252 leaves undefined (`0x9D` of `”`) as C1."""
    if reading != "web-1252":
        return text.encode("utf-8").decode(reading)
    return "".join(
        bytes([byte]).decode("cp1252", errors="ignore") or chr(byte)
        for byte in text.encode("utf-8")
    )


@pytest.mark.parametrize(
    ("text", "reading"),
    [
        ("Café Noir", "cp1252"),
        ("It’s a Wonderful Life", "cp1252"),
        ("It’s a Wonderful Life", "latin-1"),  # `â\x80\x99`: C1 controls, not `â€™`
        ("São Paulo – ‘Cidade’", "cp1252"),
        ("São Paulo – “Cidade”", "web-1252"),
        ("Ça tourne à Manhattan", "latin-1"),
        ("Crème brûlée € 5", "cp1252"),
        ("Amélie", "cp1252"),
        ("Москва", "latin-1"),
        ("東京物語", "latin-1"),
    ],
)
def test_double_encoded_text_is_undone(text: str, reading: str) -> None:
    assert undo(double(text, reading)) == text


@pytest.mark.parametrize(
    "text",
    [
        "Heat (1995)",
        "São Paulo",
        "SÃO PAULO",
        "CORAÇÃO",
        "Ça tourne à Manhattan",
        "Crème brûlée",
        "Straße",
        "Ærø, Ñandú, Œuvre, Ångström, Þór",
        "“Quoted” – Film … €5",
        "ÀÁÂÃÄÅ",
        "Москва",
        "東京物語",
        "Ã",
        "",
    ],
)
def test_real_text_is_not_taken_for_double_encoded(text: str) -> None:
    assert undo(text) is None
    assert double_encoded(pl.Series([text])).to_list() == [False]


def test_double_encoded_titles_and_descriptions_are_noted_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    titles = [
        "Heat (1995)",
        double("Café Noir (1999)", "cp1252"),
        "São Paulo (2001)",
        double("It’s a Wonderful Life (1946)", "cp1252"),
    ]
    descriptions = ["", "", "", double("Jimmy Stewart’s angel", "latin-1")]
    rows = "".join(
        f'{number},"{title}",Drama,"{text}"\n'
        for number, (title, text) in enumerate(zip(titles, descriptions, strict=True), 1)
    )
    cfg = FilesSource(
        interactions=write(tmp_path / "events.csv", EVENTS),
        items=write(tmp_path / "items.csv", "item_id,title,genres,plot\n" + rows),
        item_columns=ItemColumns(description="plot"),
    )
    raw = load_files(cfg)
    assert raw.items["title"].to_list() == titles  # nothing changed
    assert raw.items["description"].to_list()[3] == descriptions[3]
    notes = capsys.readouterr().err.splitlines()
    assert notes == [
        f"data: {cfg.items}: 2 titles and 1 description look double-encoded (UTF-8 once read as "
        "Windows-1252 or latin-1 and saved again), e.g. line 3's 'CafÃ© Noir (1999)', meant as "
        "'Café Noir (1999)': kept unchanged; re-export the file as plain UTF-8"
    ]


def test_a_double_encoded_tag_is_noted_with_a_shortened_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = double("a très, très long tag that goes on and on past forty characters", "cp1252")
    cfg = FilesSource(
        interactions=write(tmp_path / "events.csv", EVENTS),
        items=write(tmp_path / "items.csv", "item_id,title,genres\n1,Heat,Crime\n2,Up,\n"),
        tags=write(tmp_path / "tags.csv", f'item_id,tag\n1,noir\n2,"{tag}"\n'),
    )
    raw = load_files(cfg)
    assert raw.items["tags"].to_list()[1] == [tag.lower()]
    assert capsys.readouterr().err.splitlines() == [
        f"data: {cfg.tags}: 1 tag looks double-encoded (UTF-8 once read as Windows-1252 or "
        "latin-1 and saved again), e.g. line 3's 'a trÃ¨s, trÃ¨s long tag that goes on an…', "
        "meant as 'a très, très long tag that goes on and …': kept unchanged; re-export the "
        "file as plain UTF-8"
    ]


def test_real_accented_titles_give_no_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = FilesSource(
        interactions=write(tmp_path / "events.csv", EVENTS),
        items=write(
            tmp_path / "items.csv",
            "item_id,title,genres\n1,São Paulo (2001),\n2,CORAÇÃO (1990),\n"
            "3,“Léon” – Ærø (1994),\n",
        ),
    )
    load_files(cfg)
    assert capsys.readouterr().err == ""

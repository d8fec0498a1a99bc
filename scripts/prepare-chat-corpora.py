#!/usr/bin/env python3
"""Fetches and cleans the broader text the chat-data instructions are made from.

The corpora vendored in tests/fixtures/corpus are children's stories, Shakespeare and Python
source; a drafter trained only on answers about them drafts badly for news, encyclopedic
questions and translation. This writes three plain-text files (paragraphs separated by blank
lines) into OUT_DIR (default target/drafter-data/corpora), from packages on the registries:

- news.txt: the Lee corpus (300 ABC news articles), in gensim's wheel on PyPI (LGPL-2.1);
- wiki.txt: the leading paragraphs of about 200 English Wikipedia articles, the shortened
  dump in the same wheel (CC BY-SA 3.0), with the wiki markup stripped;
- german.txt: German quotations from Debian's fortunes-de package (GPL-2+), to translate
  into English.

None of it is committed: it is only read by `ahead train chat-data` (never Spec-Bench's
questions). Usage: scripts/prepare-chat-corpora.py [OUT_DIR]
"""

import bz2
import html
import pathlib
import re
import subprocess
import sys
import tempfile
import zipfile

GENSIM = "gensim==4.4.0"
LEE = "gensim/test/test_data/lee_background.cor"
WIKI = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def fetch_gensim(tmp: pathlib.Path) -> zipfile.ZipFile:
    subprocess.run(
        ["pip", "download", GENSIM, "--no-deps", "--only-binary=:all:", "-q", "-d", str(tmp)],
        check=True,
    )
    wheels = sorted(tmp.glob("gensim-*.whl"))
    if not wheels:
        sys.exit("pip downloaded no gensim wheel")
    return zipfile.ZipFile(wheels[0])


def news(wheel: zipfile.ZipFile) -> list[str]:
    lines = wheel.read(LEE).decode("utf-8", "replace").splitlines()
    return [line.strip() for line in lines if len(line.strip()) > 200]


def strip_wiki(text: str) -> str:
    text = html.unescape(text)
    text = re.sub(r"<ref[^>]*/>", "", text)
    text = re.sub(r"<ref[^>]*>.*?</ref>", "", text, flags=re.S)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    for _ in range(4):  # templates nest
        text = re.sub(r"\{\{[^{}]*\}\}", "", text)
    text = re.sub(r"\{\|.*?\|\}", "", text, flags=re.S)  # tables
    text = re.sub(r"\[\[(?:File|Image|Category):[^\]]*(?:\[\[[^\]]*\]\][^\]]*)*\]\]", "", text)
    text = re.sub(r"\[\[(?:[^\]|]*\|)?([^\]]*)\]\]", r"\1", text)
    text = re.sub(r"\[https?://\S+ ([^\]]*)\]", r"\1", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"<[^>]+>", "", text)
    return text


def wiki(wheel: zipfile.ZipFile) -> list[str]:
    dump = bz2.decompress(wheel.read(WIKI)).decode("utf-8", "replace")
    paragraphs = []
    for page in re.findall(r"<text[^>]*>(.*?)</text>", dump, flags=re.S):
        if page.lstrip().upper().startswith("#REDIRECT"):
            continue
        body = strip_wiki(page).split("\n==")[0:4]  # the lead and the first sections
        for block in "\n".join(body).split("\n"):
            block = block.strip()
            if block.startswith(("=", "*", "#", "|", ":", ";")):
                continue
            if len(block) > 300 and block.count(" ") > 40:
                paragraphs.append(re.sub(r"\s+", " ", block))
    return paragraphs


def german(tmp: pathlib.Path) -> list[str]:
    subprocess.run(["apt-get", "download", "fortunes-de"], check=True, cwd=tmp,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    debs = sorted(tmp.glob("fortunes-de_*.deb"))
    if not debs:
        sys.exit("apt-get downloaded no fortunes-de package")
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tmp / "x")], check=True)
    quotes = (tmp / "x/usr/share/games/fortunes/de/zitate").read_text("utf-8", "replace")
    out = []
    for quote in quotes.split("\n%\n"):
        text = quote.split("\t\t--")[0].split("\n\t--")[0]
        text = re.sub(r"\s+", " ", text).strip()
        if 80 <= len(text) <= 600:
            out.append(text)
    return out


def main() -> None:
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/drafter-data/corpora")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        wheel = fetch_gensim(tmp)
        files = {"news.txt": news(wheel), "wiki.txt": wiki(wheel), "german.txt": german(tmp)}
    for name, paragraphs in files.items():
        (out / name).write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
        print(f"{out / name}: {len(paragraphs)} paragraphs")


if __name__ == "__main__":
    main()

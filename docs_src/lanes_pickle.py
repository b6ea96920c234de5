from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from fastapi_offload import NotOffloadable, Offload, cpu_bound


@dataclass
class Document:
    text: str
    db: sqlite3.Connection  # a connection (or lock, open file, client) cannot be pickled


@cpu_bound
def count_words(text: str) -> int:
    return len(text.split())


@cpu_bound
def count_words_in(document: Document) -> int:
    return len(document.text.split())


def long_word_counter(min_length: int) -> Callable[[str], int]:
    def count(text: str) -> int:  # defined inside a function: no import path
        return sum(len(word) >= min_length for word in text.split())

    return count


async def main() -> list[str]:
    document = Document("plain data travels", sqlite3.connect(":memory:"))
    errors: list[str] = []
    async with Offload() as offload:  # `submit`: offload work outside a request
        await offload.submit(count_words, document.text)  # a str travels: OK
        try:
            await offload.submit(count_words_in, document)
        except NotOffloadable as exc:
            errors.append(str(exc))
        try:
            await offload.options(lane="process").submit(long_word_counter(8), document.text)
        except NotOffloadable as exc:
            errors.append(str(exc))
        await offload.join()
    document.db.close()
    return errors


if __name__ == "__main__":
    for error in anyio.run(main):
        print(error, end="\n\n")

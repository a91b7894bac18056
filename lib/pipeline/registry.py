"""The chapter registry (chapters.yml): names, titles, parts, papers, notebooks in order.

Every tool reads chapters through this module, so an unknown name fails the same way everywhere:
one line that lists the valid names.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from .. import repo_root
from ..errors import BookError

PROFILES = ("ci", "gpu", "paper")  # cheapest first; replay prefers the last that exists


@dataclass(frozen=True)
class Chapter:
    name: str  # folder name everywhere: notebooks/<name>/, data/results/<name>/
    title: str  # shown in the table of contents and on the scoreboard
    part: str  # background | papers | appendix
    paper: str | None  # "Title (arXiv:id)", None for background and appendix chapters
    notebooks: tuple[str, ...]  # notebook stems in reading order

    @property
    def folder(self) -> Path:
        return repo_root() / "notebooks" / self.name

    def notebook_path(self, stem: str) -> Path:
        return self.folder / f"{stem}.ipynb"


@lru_cache(maxsize=1)
def chapters() -> tuple[Chapter, ...]:
    raw = yaml.safe_load((repo_root() / "chapters.yml").read_text())
    return tuple(
        Chapter(
            name=c["name"], title=c["title"], part=c["part"], paper=c.get("paper"),
            notebooks=tuple(c.get("notebooks") or ()),
        )
        for c in raw["chapters"]
    )


def chapter(name: str) -> Chapter:
    for c in chapters():
        if c.name == name:
            return c
    valid = ", ".join(c.name for c in chapters())
    raise BookError(f"unknown chapter {name!r}; valid chapters: {valid}")


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise BookError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    return profile

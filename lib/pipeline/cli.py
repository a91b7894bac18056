"""Command line behind the Makefile: `python -m msrbook.pipeline.cli reproduce|replay|list|device`.

A user error (unknown chapter, profile, parameter...) prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from .. import repo_root
from .params import parse_overrides, profile_names
from . import layout
from .registry import chapter as get_chapter, chapters
from .runner import replay, reproduce
from ..errors import exit_code


def _committed_results() -> set[str]:
    """Every committed path under data/results/ (one git call for all chapters)."""
    out = subprocess.run(["git", "ls-files", "data/results"], cwd=repo_root(), capture_output=True, text=True)
    return set(out.stdout.split()) if out.returncode == 0 else set()


def committed_sets(chapter: str, committed: set[str]) -> str:
    """'ci; gpu: h100-80gb-hbm3, h200' -- each profile and device whose provenance.json is committed."""
    root = repo_root() / "data" / "results"
    have: dict[str, list[str]] = {}
    for rs in reversed(layout.result_sets(chapter, root)):  # cheapest profile first
        if (rs.path / "provenance.json").relative_to(repo_root()).as_posix() in committed:
            have.setdefault(rs.profile, []).append(rs.key or "")
    return "; ".join(f"{p}: {', '.join(sorted(keys))}" if any(keys) else p for p, keys in have.items()) or "none"


def cmd_list(_args) -> None:
    committed = _committed_results()
    for ch in chapters():
        profiles = profile_names(ch.name)
        print(f"{ch.name:18s} {ch.title}")
        print(f"{'':18s} notebooks: {', '.join(ch.notebooks) or '(none yet)'}")
        print(f"{'':18s} profiles:  {', '.join(profiles) or '(none yet)'}")
        print(f"{'':18s} committed results: {committed_sets(ch.name, committed)}")


def cmd_device(_args) -> None:
    print(layout.probe())


def cmd_reproduce(args) -> None:
    get_chapter(args.chapter)  # fail fast on a bad name, before importing papermill
    only = [s for s in (args.only or "").replace(",", " ").split() if s]
    target = reproduce(args.chapter, args.profile or None, parse_overrides(args.set or ""), only=only or None,
                       force=args.force)
    print(f"results swapped into {target.relative_to(repo_root()) if target.is_relative_to(repo_root()) else target}")


def cmd_replay(args) -> None:
    get_chapter(args.chapter)
    out = replay(args.chapter, args.profile or None, device=args.device or None)
    print(f"replayed into {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="msrbook")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="chapters, notebooks, profiles and committed results")
    r = sub.add_parser("reproduce", help="run a chapter's notebooks in compute mode")
    r.add_argument("chapter")
    r.add_argument("--profile", default="")
    r.add_argument("--set", default="", help="parameter overrides: 'name=value name2=value2'")
    r.add_argument("--only", default="", help="rerun just these notebooks (stems, comma- or space-separated) "
                                               "and keep the others' results")
    r.add_argument("--force", action="store_true", help="run even where this machine lacks the memory the "
                                                        "profile declares under `requires` in profiles.yml")
    rp = sub.add_parser("replay", help="run a chapter's notebooks against saved results")
    rp.add_argument("chapter")
    rp.add_argument("--profile", default="")
    rp.add_argument("--device", default="", help="the device folder of a gpu or paper profile (default: the "
                                                 "one measured most recently)")
    sub.add_parser("device", help="this machine's device folder name (where a gpu or paper run here writes)")
    args = ap.parse_args(argv)
    return exit_code({"list": cmd_list, "reproduce": cmd_reproduce, "replay": cmd_replay,
                      "device": cmd_device}[args.cmd], args)


if __name__ == "__main__":
    sys.exit(main())

"""The generated parts of the book, as text: the table of contents, the scoreboard table, each
chapter's status block and the MyST substitutions. `bookbuild` writes them into the stage.

Everything here reads the registry (chapters.yml), the committed results (claims.json,
provenance.json per chapter, profile and device: `layout`) and data/paper/<chapter>.yml; nothing is
typed twice. Every device's results get their own rows; the notebooks replay one set.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from ..errors import BookError
from . import claims as claims_mod
from . import needs
from .layout import replay_set, result_sets
from .provenance import device_label
from .registry import PROFILES, Chapter, chapters
from .stale import combine, stale

PARTS = (("background", "Background"), ("papers", "The papers"), ("appendix", "Appendix"))
TOC_HEADER = ("# Generated from chapters.yml by `python -m msrbook.pipeline.bookbuild --toc-only`; do not edit by hand.\n"
              "# tests/test_toc.py fails when it is out of sync with the registry.\n")


# -- table of contents ---------------------------------------------------------------------------
def toc(skip_notebooks: frozenset[str] = frozenset()) -> dict:
    """The jb-book toc: intro, then reproduce and scoreboard, then one part per registry part.
    Chapters named in `skip_notebooks` get their landing page only (notebooks not written yet)."""
    parts = [{"chapters": [{"file": "book/reproduce"}, {"file": "book/scoreboard"}]}]
    for key, caption in PARTS:
        entries = []
        for ch in (c for c in chapters() if c.part == key):
            entry = {"file": f"book/chapters/{ch.name}"}
            if ch.notebooks and ch.name not in skip_notebooks:
                entry["sections"] = [{"file": f"notebooks/{ch.name}/{stem}"} for stem in ch.notebooks]
            entries.append(entry)
        if entries:
            parts.append({"caption": caption, "chapters": entries})
    unknown = {c.part for c in chapters()} - {k for k, _ in PARTS}
    if unknown:
        raise BookError(f"chapters.yml: unknown part(s) {', '.join(sorted(unknown))}; valid: {', '.join(k for k, _ in PARTS)}")
    return {"format": "jb-book", "root": "book/intro", "parts": parts}


def toc_text(skip_notebooks: frozenset[str] = frozenset()) -> str:
    return TOC_HEADER + yaml.safe_dump(toc(skip_notebooks), sort_keys=False)


# -- committed results -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SetResults:
    """One result set of a chapter: a profile, and for gpu and paper one device (`layout`)."""
    chapter: Chapter
    profile: str
    key: str | None  # the device folder; None for the flat ci profile
    provenance: dict  # notebook stem -> provenance record
    claims: list  # entries of claims.json
    stale: str  # yes | no | unknown
    last_end: datetime  # the replay rule's "most recent" (layout.ResultSet.last_end)

    def device(self, notebook: str | None = None) -> str:
        """The device of one notebook's record, or of all records ("; "-joined when they differ)."""
        recs = [self.provenance[notebook]] if notebook in self.provenance else list(self.provenance.values())
        labels = dict.fromkeys(device_label(r.get("device")) for r in recs)
        return "; ".join(labels) or "unknown device"

    @property
    def folder(self) -> str:
        return f"{self.profile}/{self.key}" if self.key else self.profile

    @property
    def measured(self) -> str:
        """The latest end time among the records, in UTC to the minute."""
        never = self.last_end == datetime.min.replace(tzinfo=timezone.utc)
        return "unfinished" if never else self.last_end.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")

    @property
    def commits(self) -> str:
        out = dict.fromkeys(f"{(r.get('commit') or 'unknown')[:10]}{' (dirty)' if r.get('dirty') else ''}"
                            for r in self.provenance.values())
        return ", ".join(out)


def load_results(ch: Chapter, root: Path, repo: Path | None = None) -> list[SetResults]:
    """Every committed result set of a chapter: best profile first (paper, gpu, ci), each profile's
    devices by name."""
    out = []
    for rs in result_sets(ch.name, root):
        d = rs.path
        prov = json.loads((d / "provenance.json").read_text())
        claims = json.loads((d / "claims.json").read_text()) if (d / "claims.json").exists() else []
        st = combine([stale(r.get("commit"), ch.name, nb, repo, rs.profile) for nb, r in prov.items()])
        out.append(SetResults(ch, rs.profile, rs.key, prov, claims, st, rs.last_end()))
    return out


# -- formatting -------------------------------------------------------------------------------------
def fmt_value(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, list):
        return "[" + ", ".join(fmt_value(v) for v in value) + "]"
    v = float(value)
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"


def fmt_with_unit(value, unit: str | None) -> str:
    return "–" if value is None else f"{fmt_value(value)} {unit or ''}".rstrip()


def cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def paper_cell(ch: Chapter, c: dict) -> str:
    if c.get("paper_value") is None:
        return "–"
    spec = claims_mod.paper_specs(ch.name).get(c["id"])
    source = f" ({spec.source})" if spec and spec.source else ""
    return fmt_with_unit(c["paper_value"], c.get("unit")) + source


def status_cell(c: dict, results: "SetResults | None" = None) -> str:
    """The claim's status with the notebook's note and the rule's. Given the results it came from,
    the status is recomputed under the current rule in data/paper, on the device of its notebook's
    provenance, so a changed rule shows without a rerun; without them, the committed status."""
    st, rule_note = c["status"], c.get("rule_note", "")
    if results is not None:
        device = (results.provenance.get(c.get("notebook")) or {}).get("device") or {}
        st, rule_note = claims_mod.recompute(results.chapter.name, c, bool(device.get("gpu")))
    note = "; ".join(x for x in (c.get("note"), rule_note) if x)
    return st + (f" ({note})" if note else "")


def nb_link(ch: Chapter, stem: str, from_dir: str) -> str:
    return f"[{stem}]({from_dir}notebooks/{ch.name}/{stem}.ipynb)"


# -- scoreboard ---------------------------------------------------------------------------------------
SCORE_HEAD = ("| chapter | claim | paper | ours | profile | device | status | notebook | stale |\n"
              "|---|---|---|---|---|---|---|---|---|\n")


def scoreboard(root: Path, repo: Path | None = None) -> str:
    """The generated part of book/scoreboard.md: one row per claim, chapter, committed profile and device."""
    rows, unmeasured = [], []
    for ch in chapters():
        found = load_results(ch, root, repo)
        if not found:
            unmeasured.append(ch)
        for pr in found:
            for c in pr.claims:
                ours = fmt_with_unit(c["value"], c.get("unit"))
                rows.append("| " + " | ".join(cell(x) for x in (
                    f"[{ch.name}](chapters/{ch.name}.md)", f"`{c['id']}`", paper_cell(ch, c), ours,
                    pr.profile, pr.device(c.get("notebook")), status_cell(c, pr),
                    nb_link(ch, c["notebook"], "../"), pr.stale)) + " |")
    parts = ["\n## Claims\n"]
    parts.append(SCORE_HEAD + "\n".join(rows) + "\n" if rows else
                 "No chapter has committed results yet, so there are no claims to show.\n")
    if unmeasured:
        names = ", ".join(f"[{c.name}](chapters/{c.name}.md)" for c in unmeasured)
        parts.append(f"\n## Not yet measured\n\nThese chapters have no committed results in any profile: {names}.\n")
    return "\n".join(parts)


# -- chapter landing pages ------------------------------------------------------------------------------
def not_measured_admonition(ch: Chapter, what: str) -> str:
    return (f"```{{admonition}} Not yet measured\n:class: warning\n\n{what} To produce results on your own "
            f"machine, run `make reproduce CHAPTER={ch.name}` (profile `gpu` on a CUDA GPU, else `ci`), "
            f"commit `data/results/{ch.name}/`, and rebuild with `make book`.\n```\n")


def chapter_status(ch: Chapter, root: Path, pending: bool, repo: Path | None = None) -> str:
    """The status block appended to book/chapters/<name>.md in the stage."""
    head = "\n## Status in this build\n\n"
    if not ch.notebooks or pending:
        return head + ("```{admonition} Not yet measured\n:class: warning\n\nThis chapter's notebooks are not "
                       "written yet, so there is nothing to run and nothing has been measured.\n```\n")
    found = load_results(ch, root, repo)
    head = "\n## Notebooks\n\n```{tableofcontents}\n```\n" + head
    if not found:
        return head + not_measured_admonition(
            ch, "No results for this chapter are committed, so its notebooks are shown without outputs.")
    out = [head, replayed_sentence(ch, root, found),
           "| profile | device | folder | measured at commit | last measured (UTC) | stale |\n|---|---|---|---|---|---|\n"]
    out += [f"| {p.profile} | {cell(p.device())} | `{p.folder}` | `{p.commits}` | {p.measured} | {p.stale} |\n"
            for p in found]
    out.append("\n" + "\n".join(needs.markdown(ch.name, root)) + "\n")
    for p in found:
        out.append(f"\n### Claims, profile `{p.profile}`, {cell(p.device())}\n\n")
        if not p.claims:
            out.append("This result set records no claims.\n")
            continue
        out.append("| claim | ours | paper | status | notebook |\n|---|---|---|---|---|\n")
        for c in p.claims:
            ours = fmt_with_unit(c["value"], c.get("unit"))
            out.append("| " + " | ".join(cell(x) for x in (
                f"`{c['id']}`", ours, paper_cell(ch, c), status_cell(c, p), nb_link(ch, c["notebook"], "../../"))) + " |\n")
    return "".join(out)


def replayed_sentence(ch: Chapter, root: Path, found: list[SetResults]) -> str:
    """Which set the notebooks show, and the rule that chose it (the same call the build replays)."""
    chosen = replay_set(ch.name, root)
    shown = next(p for p in found if (p.profile, p.key) == (chosen.profile, chosen.key))
    return (f"The notebooks replay the `{shown.folder}` results ({shown.device()}), chosen by a fixed rule "
            f"that never looks at the numbers: the best committed profile (order {' > '.join(reversed(PROFILES))}), "
            f"then, among its devices, the one measured most recently. The tables below list every "
            f"device's claims.\n\n")


# -- substitutions -----------------------------------------------------------------------------------------
ARXIV = re.compile(r"^(?P<title>.*?)\s*\(arXiv:(?P<id>[0-9.v]+)\)$")


def papers_table() -> str:
    rows = []
    for ch in chapters():
        if not ch.paper:
            continue
        m = ARXIV.match(ch.paper)
        if not m:
            raise BookError(f"chapters.yml: paper of {ch.name!r} must read 'Title (arXiv:id)', got {ch.paper!r}")
        rows.append(f"| {m['title']} | [arXiv:{m['id']}](https://arxiv.org/abs/{m['id']}) | "
                    f"[{cell(ch.title)}](chapters/{ch.name}.md) |")
    return "| paper | arXiv | chapter |\n|---|---|---|\n" + "\n".join(rows)


def _button(url: str, text: str) -> str:
    return f"```{{button-link}} {url}\n:color: primary\n:outline:\n\n{text}\n```\n"


def substitutions(config: dict, first_notebook: str | None) -> dict:
    """MyST substitutions derived from _config.yml (the one place the repository URL lives)."""
    url = config["repository"]["url"].rstrip("/")
    branch = config["repository"].get("branch", "main")
    if not url.startswith("https://github.com/"):
        raise BookError(f"_config.yml repository.url must be a GitHub URL for Colab and Binder, got {url!r}")
    slug = url.removeprefix("https://github.com/")
    launch = config.get("launch_buttons", {})
    nb = first_notebook or ""
    colab = f"{launch['colab_url'].rstrip('/')}/github/{slug}/blob/{branch}/{nb}"
    binder = f"{launch['binderhub_url'].rstrip('/')}/v2/gh/{slug}/{branch}" + (f"?urlpath=lab/tree/{nb}" if nb else "")
    return {
        "repo_url": url,
        "repo_link": f"[{slug}]({url})",
        "launch_buttons": (f"{_button(colab, 'Open the first notebook in Colab')}" if nb else "")
                          + _button(binder, "Launch the repository on Binder"),
        "papers_table": papers_table(),
    }

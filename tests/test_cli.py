"""Bad input gives one clear line and a non-zero exit, through the same command `make` runs."""

import subprocess
import sys

import pytest


def cli(*args, env_root=None, tmp_path=None):
    import os
    env = dict(os.environ)
    if env_root is not None:
        env["MSRBOOK_RESULTS"] = str(env_root)
    return subprocess.run([sys.executable, "-m", "msrbook.pipeline.cli", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["reproduce", "no-such-chapter"], "unknown chapter 'no-such-chapter'; valid chapters: decode-roofline,"),
    (["reproduce", "decode-roofline", "--profile", "fast"], "unknown profile 'fast'; valid profiles: ci, gpu, paper"),
    (["reproduce", "decode-roofline", "--profile", "ci", "--set", "head_dim=wide"], "parameter 'head_dim' must be int, got str"),
    (["reproduce", "decode-roofline", "--profile", "ci", "--set", "heads=3"], "unknown parameter 'heads'; valid:"),
    (["reproduce", "decode-roofline", "--profile", "ci", "--set", "lengths"], "cannot read override 'lengths'"),
])
def test_bad_input_one_line(args, message):
    out = cli(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr


def test_replay_without_results(tmp_path):
    out = cli("replay", "decode-roofline", env_root=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"error: no results for decode-roofline under {tmp_path}; run `make reproduce CHAPTER=decode-roofline` first"]


def test_make_reproduce_unknown_chapter_exits_nonzero():
    out = subprocess.run(["make", "-s", "reproduce", "CHAPTER=nope"], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "valid chapters:" in out.stderr


def test_list_names_every_chapter():
    out = cli("list")
    assert out.returncode == 0
    from msrbook.pipeline.registry import chapters
    for ch in chapters():
        assert ch.name in out.stdout


def test_list_shows_each_committed_profile_and_device():
    """`make list`: per chapter, every profile and device whose provenance.json is committed."""
    from msrbook import repo_root
    from msrbook.pipeline import layout
    from msrbook.pipeline.registry import chapters
    out = cli("list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    tracked = set(subprocess.run(["git", "ls-files", "data/results"], cwd=repo_root(), capture_output=True,
                                 text=True).stdout.split())
    for ch in chapters():
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{ch.name} "))
        have = next(line for line in lines[at:] if "committed results:" in line).split("committed results:")[1]
        sets = [s for s in layout.result_sets(ch.name, repo_root() / "data" / "results")
                if f"data/results/{ch.name}/{s.folder}/provenance.json" in tracked]
        assert (have.strip() == "none") == (not sets), (ch.name, have)
        for s in sets:
            assert s.profile in have and (s.key is None or s.key in have), (ch.name, s.folder, have)

"""Notebook sources follow the conventions: stripped, python3 kernel, generated Colab cell first,
then the parameters cell; every registry notebook exists and every profile's values type-check."""

import pytest

from msrbook.pipeline import nbtools, params
from msrbook.pipeline.registry import PROFILES, chapters


@pytest.mark.parametrize("path", nbtools.notebooks(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_source_conventions(path):
    assert nbtools.problems(path) == []


def test_registry_notebooks_exist_and_profiles_check():
    for ch in chapters():
        for stem in ch.notebooks:
            assert ch.notebook_path(stem).exists(), f"{ch.name}/{stem}.ipynb is listed but missing"
        if ch.notebooks:
            assert (ch.folder / "profiles.yml").exists(), f"{ch.name} has notebooks but no profiles.yml"
            for profile in PROFILES:
                params.resolve_all(ch.name, profile)  # raises on an unknown key or a wrong type

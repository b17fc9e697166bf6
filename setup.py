"""Packages of the wheel: rkcompile's own, plus `rkcompile.specs` mapped onto the top-level specs/ (one copy of the specs)."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["rkcompile", "rkcompile.*"]), "rkcompile.specs"],
    package_dir={"rkcompile.specs": "specs"},
    package_data={"rkcompile.specs": ["*.yaml"], "rkcompile.render": ["view.html", "view.css", "view.js"]},
)

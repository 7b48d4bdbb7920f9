"""Packages of the soundsift distribution (the metadata is in pyproject.toml).

Two installed packages live elsewhere in the repository than their import name, because its top-level
folders are fixed: ``soundsift`` (the public plugin API) is plugins/soundsift_api/, and ``soundsift.configs``
(the shipped defaults, read by indexer/settings.py from an installed wheel) is configs/.
"""
from setuptools import find_namespace_packages, setup

PACKAGES = find_namespace_packages(include=["indexer*", "search*", "plugins*"], exclude=["plugins.soundsift_api*"])

setup(
    packages=[*PACKAGES, "soundsift", "soundsift.configs"],
    package_dir={"soundsift": "plugins/soundsift_api", "soundsift.configs": "configs"},
    package_data={"soundsift.configs": ["default.toml"]},
)

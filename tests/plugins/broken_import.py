"""Test plugin: fails to import, as a plugin whose dependency is missing would."""

from __future__ import annotations

import soundsift_dependency_that_does_not_exist  # noqa: F401

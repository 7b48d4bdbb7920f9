"""Settings: one pydantic-settings model from configs/default.toml, a user TOML file, SOUNDSIFT_* env, then CLI flags."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

REPO_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def shipped_defaults() -> Path:
    """configs/default.toml: the copy an installed wheel carries (package ``soundsift.configs``), else the checkout's."""
    spec = importlib.util.find_spec("soundsift")
    for location in (spec.submodule_search_locations or []) if spec else []:
        packaged = Path(location) / "configs" / "default.toml"
        if packaged.is_file():
            return packaged
    return REPO_CONFIGS / "default.toml"


DEFAULT_TOML = shipped_defaults()
DEFAULT_MODEL = "laion/clap-htsat-fused"


class Settings(BaseSettings):
    """Everything soundsift can be told; CLI flags override env (SOUNDSIFT_*), which overrides TOML files."""

    model_config = SettingsConfigDict(
        env_prefix="SOUNDSIFT_", env_nested_delimiter="__", extra="ignore", protected_namespaces=()
    )

    index: Path = Path(".soundsift")
    model: str | None = None  # None: the model the index was built with, else DEFAULT_MODEL
    model_revision: str | None = None
    device: Literal["auto", "cpu", "cuda", "mps"] | str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    window_s: float = Field(10.0, gt=0)
    hop_s: float = Field(10.0, gt=0)
    # Extensions to index beyond those the loaded decoders declare (which are always indexed).
    extensions: list[str] = Field(default_factory=list)
    prompt_template: str = "This is a sound of {}."
    batch_size: int = Field(0, ge=0)  # 0 = chosen from the device
    decode_workers: int = Field(0, ge=0)  # 0 = one per core
    decode_timeout_s: float = Field(120.0, gt=0)
    commit_every_files: int = Field(256, gt=0)  # a kill loses at most this many decoded files (or commit_every_s)
    commit_every_s: float = Field(30.0, gt=0)
    max_sample_rate: int = 768_000
    min_sample_rate: int = 4_000
    max_channels: int = 64
    max_duration_s: float = 48 * 3600.0
    classify_chunk: int = Field(65_536, gt=0)
    text_cache_size: int = 4096
    strict_translation: bool = False
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8765
    cors_origins: list[str] = Field(default_factory=list)
    max_upload_mb: float = 200.0
    max_upload_duration_s: float = Field(600.0, gt=0)  # audio per /classify-file request; 413 beyond it
    upload_time_budget_s: float = Field(60.0, gt=0)  # decode + embed of one upload; 413 beyond it
    allow_roots: list[str] = Field(default_factory=list)  # where server jobs may index, besides the index's roots
    allow_hardlinks: bool = False  # server jobs skip files with more than one hard link unless set
    max_queued_jobs: int = Field(16, ge=1)  # server jobs waiting to run; 429 beyond it
    plugin: dict[str, dict[str, Any]] = Field(default_factory=dict)
    delivery_timeout_s: float = Field(10.0, gt=0)  # one webhook POST or command, for alerts
    delivery_drain_s: float = Field(30.0, ge=0)  # how long a CLI run keeps delivering after its last commit
    delivery_backoff_s: float = Field(1.0, gt=0)  # first retry pause of a failing delivery (doubling, up to 5 min)
    follow_settle_s: float = Field(2.0, gt=0)  # --follow: a new file is taken once unchanged this long
    follow_batch_s: float = Field(1.0, gt=0)  # --follow: files settling within this of each other go in one run
    ray: str | None = None  # a Ray cluster ('auto' or an address): indexing decodes and embeds there (soundsift[ray])

    @field_validator("extensions")
    @classmethod
    def _lower_extensions(cls, value: list[str]) -> list[str]:
        return [e.lower().lstrip(".") for e in value]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = [DEFAULT_TOML] if DEFAULT_TOML.exists() else []
        user = os.environ.get("SOUNDSIFT_CONFIG")
        if user:
            files.append(Path(user))
        # Later files win: the user's file overrides the defaults shipped in configs/.
        toml_sources = [TomlConfigSettingsSource(settings_cls, toml_file=f) for f in reversed(files)]
        return (init_settings, env_settings, *toml_sources)

    def plugin_view(self) -> dict[str, Any]:
        """Flat dotted view handed to plugins: ``{"pcm.sample_rate": 16000, ...}`` plus a few globals."""
        view: dict[str, Any] = {"strict_translation": self.strict_translation, "device": self.device}
        for plugin_name, options in self.plugin.items():
            for key, value in options.items():
                view[f"{plugin_name}.{key}"] = value
        return view


def load_settings(**overrides: Any) -> Settings:
    """Settings from files and env, with explicit (CLI) overrides; None values are ignored."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})

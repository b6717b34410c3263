"""The JSON schemas orbit ships: `orbit.schema.json` for `.github/orbit.yml`, made from bot.repo_config."""

"""The orbit GitHub App."""

"""Shared fixtures: the Azure Batch emulator and Azurite (Microsoft's storage emulator)."""

pytest_plugins = ["tests.fixtures.azurite"]

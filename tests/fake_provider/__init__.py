"""A fifth provider, registered only in the tests: what adding a provider takes (README, "Add a provider")."""

from tests.fake_provider.adapter import Fake as PROVIDER

__all__ = ["PROVIDER"]

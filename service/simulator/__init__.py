"""A fake of each provider's real wire API over real HTTP: for tests, the embedded default
provider and `jobhook simulator`. Mount `Simulator.app` and await `start()` / `aclose()`.
"""

from service.simulator.app import SentWebhook, Simulator, create_standalone_app

__all__ = ["SentWebhook", "Simulator", "create_standalone_app"]

"""jobhook: a durable, signed bridge between backends and Midjourney-style generation APIs."""

__version__ = "0.1.0"

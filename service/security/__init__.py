"""Callback tokens, provider signature checks and outbound signing."""

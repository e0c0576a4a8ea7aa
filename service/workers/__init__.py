"""Background loops over leased rows: the poller and the timers (deliveries come later)."""

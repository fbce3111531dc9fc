"""Signed, durable webhook deliveries: target checks, signing, retry schedule, the dispatcher."""

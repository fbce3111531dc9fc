"""Signed, durable webhook deliveries: target checks, signing, schedule, sender, dispatcher."""

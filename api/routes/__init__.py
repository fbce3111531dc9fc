"""HTTP routes: jobs, health, and (when present) moderation admin."""

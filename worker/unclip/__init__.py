"""unclip package."""

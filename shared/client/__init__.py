"""HTTP client of the render service: the `unclip submit|watch|jobs|cancel|fleet` commands."""

"""Object storage behind one interface: local directory or S3-compatible."""

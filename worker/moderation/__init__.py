"""Moderation checks that need torch: the semantic prompt check and the image checker."""

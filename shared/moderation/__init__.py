"""Content moderation without torch: the policy file, text normalisation and term matching."""

"""Small pieces of machinery every part of the platform shares (one home each)."""

"""`labelloop serve`: the champion as a Label Studio model backend (see service.py)."""

"""Runnable examples: resource servers protected by keyturn's guard (see README, "Protecting your API")."""

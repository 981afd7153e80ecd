"""The examples' tests use keyturn.testing exactly as a downstream service would."""

from keyturn.testing import keyturn_tokens

__all__ = ["keyturn_tokens"]

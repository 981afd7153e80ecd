"""Pure cryptographic functions beside the domain: keys, access tokens, opaque secrets, passwords."""

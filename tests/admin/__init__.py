"""The admin API: paging, reading and changing accounts."""

"""Glue between the RTM core and upstream checkouts patched by `rtm-patch`. Importing this package imports nothing
else: each module is imported by the patched upstream code that needs it."""

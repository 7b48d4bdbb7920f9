"""Tiny plugins the tests load by dotted name through SOUNDSIFT_EXTRA_PLUGINS (so decode workers load them too)."""

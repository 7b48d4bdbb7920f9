"""`python -m search.cli`: the soundsift command line."""

from search.cli import run

run()

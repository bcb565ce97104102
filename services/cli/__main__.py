"""`python -m services.cli`: what `portfolio up` runs for each service."""

from services.cli import main

main()

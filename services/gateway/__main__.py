"""`python -m services.gateway`: what `portfolio up` and a container run."""

from services.gateway.app import main

raise SystemExit(main())

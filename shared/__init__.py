"""Platform code every service stands on: log client, projections, settings, logging."""

"""The five services, the `portfolio` CLI and the supervisor behind `portfolio up`."""
